"""`orch results JOB [--json]`: a campaign's finished results, in item order, as they stand now.

Read page by page from the store (`ItemStore.results`), so 10,000 results stream out without being
held in memory or in one long transaction. Items not done yet are simply not listed: run it again
later, or after `orch status JOB --watch` says the job ended, for all of them.
"""

from __future__ import annotations

import argparse
import json

from orchestrator.cli.args import output_flags
from orchestrator.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("results", help="a campaign's finished results, in item order",
                       description="The results committed so far by a campaign's workers ([array] items), one "
                                   "per item, in item order.")
    r.add_argument("job", metavar="JOB", help="a job id, or any unique prefix of one")
    output_flags(r, ("table", "json"))
    r.set_defaults(func=cmd_results)


def cmd_results(args: argparse.Namespace) -> int:
    from orchestrator.cli.jobs import resolve
    from orchestrator.cli.wiring import open_store
    from orchestrator.store.items import ItemStore

    store = open_store()
    job = resolve(store, args.job)
    if job.spec.array is None or not job.spec.array.is_campaign:
        raise CliError(f"job {job.id[:8]} is not a campaign ([array] items = ...): it has no per-item results")
    for r in ItemStore(store.engine).results(job.id):
        if args.output == "json":
            print(json.dumps(r.to_record()))
        else:
            shown = r.result if r.result is not None else (r.result_uri or "")
            print(f"{r.index}\t{r.key or ''}\t{shown}")
    return 0
