"""What is generated from the job file's models stays what they say: docs/job-spec.md's field tables,
docs/job.schema.json (`orch schema job`), and the runtime records the models are turned into."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.cli.schema import render
from orchestrator.core import spec_model
from orchestrator.core.spec import (
    ArraySpec,
    CheckpointSpec,
    GangSpec,
    JobSpec,
    PlacementSpec,
    RetrySpec,
    ScheduleSpec,
)
from orchestrator.core.spec_docs import rewrite, table
from vocab import Resources

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "job-spec.md"
SCHEMA = REPO / "docs" / "job.schema.json"


def test_the_field_tables_are_the_generated_ones() -> None:
    assert PAGE.read_text() == rewrite(PAGE.read_text()), "regenerate: python tools/spec_docs.py"


def test_the_committed_schema_is_orch_schema_job() -> None:
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "schema", "job"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == render("job") == SCHEMA.read_text(), "regenerate: python tools/spec_docs.py"
    assert json.loads(out.stdout)["$schema"].endswith("2020-12/schema")


def test_every_field_of_every_model_has_a_row() -> None:
    shown = {(m, f) for m, fields in re.findall(r"<!-- fields: (\w+)((?: \w+)*) -->", PAGE.read_text())
             for f in (fields.split() or [n for n in vars(spec_model)[m].model_fields])}
    for model in (spec_model.ResourcesFile, spec_model.ScheduleFile, spec_model.CheckpointFile,
                  spec_model.RetryFile, spec_model.PlacementFile, spec_model.ArrayFile):
        for name in model.model_fields:
            assert (model.__name__, name) in shown, f"{model.__name__}.{name} has no row in docs/job-spec.md"
    with pytest.raises(LookupError, match="does not have"):
        table("ArrayFile", ["count", "no_such_field"])


def test_a_changed_model_changes_the_page() -> None:
    """The comparison above can fail: a table edited by hand is rewritten back."""
    page = PAGE.read_text()
    edited = page.replace("| `gpu_count` | integer, 1 \u2013 256 |", "| `gpu_count` | integer |")
    assert edited != page and rewrite(edited) == page


def _json(value: Any) -> Any:
    """A TOML document as JSON, as an editor's schema check sees it (dates as strings)."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def _examples() -> list[tuple[str, dict[str, Any]]]:
    docs = re.search(r"```toml\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert docs is not None
    found = [("docs/job-spec.md", tomllib.loads(docs.group(1)))]
    found += [(str(p.relative_to(REPO)), tomllib.loads(p.read_text())) for p in sorted(REPO.glob("examples/**/*.toml"))]
    return found


@pytest.mark.parametrize(("name", "doc"), _examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_schema_accepts_the_examples_and_refuses_what_submit_refuses(name: str, doc: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator(schema).validate(_json(doc))
    bad = {**doc, "resources": {**doc.get("resources", {}), "gpu_count": 0, "gpu_cont": 1}}
    errors = sorted(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(_json(bad)))
    assert any("gpu_cont" in m for m in errors) and any("minimum of 1" in m for m in errors), errors


def test_the_models_and_the_runtime_records_have_the_same_fields() -> None:
    """JobSpec and its parts are what the models are turned into (orchestrator.core.spec): a field added
    to one and not the other fails here, not at a user's submit."""
    renamed = {("ResourcesFile", "gpu"): "gpus", ("ScheduleFile", "deadline_hours"): "deadline"}
    for model, record in [(spec_model.JobFile, JobSpec), (spec_model.ResourcesFile, Resources),
                          (spec_model.ScheduleFile, ScheduleSpec), (spec_model.CheckpointFile, CheckpointSpec),
                          (spec_model.RetryFile, RetrySpec), (spec_model.PlacementFile, PlacementSpec),
                          (spec_model.ArrayFile, ArraySpec)]:
        keys = {renamed.get((model.__name__, k), k) for k in model.model_fields}
        if model is spec_model.ResourcesFile:  # `[resources]` also holds the gang's keys: `JobSpec.gang`
            assert keys - {f.name for f in dataclasses.fields(record)} == {f.name for f in dataclasses.fields(GangSpec)}
            keys -= {f.name for f in dataclasses.fields(GangSpec)}
        if model is spec_model.JobFile:
            keys.add("gang")
        assert keys == {f.name for f in dataclasses.fields(record)}, model.__name__
