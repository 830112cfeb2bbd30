"""`orch schema job`: the JSON Schema of `job.toml`, generated from the typed models.

Editors use it for completion and checking (e.g. taplo or Even Better TOML: `#:schema ./job.schema.json`
at the top of a job file, after `orch schema job > job.schema.json`). The schema is the models'
(`orchestrator.core.spec_model.job_schema`), so it accepts what `orch submit` accepts, shape for shape;
rules between fields (a deadline the work cannot meet, a policy beside a fixed market) are `orch
submit`'s alone. docs/job.schema.json is the same text, checked by tests/test_spec_docs.py.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("schema", help="print the JSON Schema of a file orch reads (job: job.toml)",
                       description="The JSON Schema (draft 2020-12) of job.toml, generated from the models that "
                                   "validate it, for editors' completion and checking.")
    s.add_argument("kind", choices=["job"], help="job: job.toml (docs/job-spec.md)")
    s.set_defaults(func=cmd_schema)


def render(kind: str) -> str:
    """The schema as the committed docs/job.schema.json holds it: the models' field order, two-space indent."""
    from orchestrator.core.spec_model import job_schema  # pydantic: only for this command

    assert kind == "job"
    return json.dumps(job_schema(), indent=2, ensure_ascii=False) + "\n"


def cmd_schema(args: argparse.Namespace) -> int:
    print(render(args.kind), end="")
    return 0
