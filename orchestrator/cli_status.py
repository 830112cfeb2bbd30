"""`orch status`, `orch logs` and `orch events`: the read-only views of the store."""

from __future__ import annotations

import argparse
import json
import sys
import time

from orchestrator import cli_render as render
from orchestrator.cli_errors import CliError
from orchestrator.status import JobStatus, job_status
from orchestrator.store import Store
from orchestrator.wiring import build_providers, open_store
from providers.base import Offer, ProviderError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser("status", help="jobs with state, progress and live cost")
    st.add_argument("job", nargs="?")
    st.add_argument("--watch", action="store_true", help="refresh in place until interrupted")
    st.add_argument("--interval", type=float, default=2.0)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    lg = sub.add_parser("logs", help="output of a job's attempts")
    lg.add_argument("job")
    lg.set_defaults(func=cmd_logs)

    ev = sub.add_parser("events", help="a job's event history")
    ev.add_argument("job")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_events)




def job_status_now(store: Store, job_ref: str) -> JobStatus:
    job = store.job(job_ref)
    if job is None:
        raise CliError(f"no job {job_ref!r}")
    offers: list[Offer] = []
    if job.finished_at is None:
        try:
            for provider in build_providers(job.spec.placement.providers).values():
                offers.extend(provider.offers(job.spec.resources, job.spec.placement.regions))
        except ProviderError:
            offers = []
    return job_status(job_id=job.id, name=job.name, spec=job.spec, created_at=job.created_at,
                      deadline_at=job.deadline_at, tasks=store.tasks(job.id), attempts=store.attempts(job.id),
                      offers=offers, now=time.time())


def cmd_status(args: argparse.Namespace) -> int:
    store = open_store()
    while True:
        if args.job:
            status = job_status_now(store, args.job)
            text = json.dumps(status.to_dict()) if args.json else render.status_detail(status)
        else:
            statuses = [job_status_now(store, j.id) for j in store.jobs()]
            text = (json.dumps([s.to_dict() for s in statuses]) if args.json
                    else render.status_rows(statuses) if statuses else "no jobs")
        if args.watch and not args.json and sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        print(text, flush=True)
        if not args.watch:
            return 0
        time.sleep(args.interval)


def cmd_logs(args: argparse.Namespace) -> int:
    from providers.base import Instance, InstanceState, LogSource, Market

    store = open_store()
    job = store.job(args.job)
    if job is None:
        raise CliError(f"no job {args.job!r}")
    providers = build_providers(job.spec.placement.providers)
    for a in store.attempts(job.id):
        provider = providers.get(a.provider)
        print(f"==> attempt {a.number} ({a.market} {a.instance_type}, {a.outcome or a.state}) <==")
        if a.instance_id is None or not isinstance(provider, LogSource):
            print("(no log kept by this provider)")
            continue
        inst = Instance(a.provider, a.region, a.zone, a.instance_id, a.instance_type, Market(a.market),
                        InstanceState.TERMINATED, a.id, job.id, a.task_id)
        print(provider.read_log(inst), end="")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    store = open_store()
    job = store.job(args.job)
    if job is None:
        raise CliError(f"no job {args.job!r}")
    events = store.events(job.id)
    if args.json:
        print(json.dumps([{"id": e.id, "at": e.at, "kind": e.kind, "message": e.message, "task_id": e.task_id,
                           "attempt_id": e.attempt_id} for e in events]))
    else:
        for e in events:
            print(f"{render.when(e.at)}  {e.kind:<18} {e.message}")
    return 0


