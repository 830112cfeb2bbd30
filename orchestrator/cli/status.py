"""`orch status`, `orch logs` and `orch events`: the read-only views of the store.

Module imports stay light (no SQLAlchemy, no SDK): `orch --help` imports this module to build its
parser, and must start fast. The store and the providers are imported inside the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.cli import jobs as cli_jobs
from orchestrator.cli import logs as cli_logs
from orchestrator.cli import render
from orchestrator.cli.args import bounded_int, finite_float, output_flags, utc_flag
from orchestrator.cli.errors import EXIT_USAGE, CliError
from orchestrator.core.job_states import FINISHED_STATES, JOB_STATES

if TYPE_CHECKING:
    from orchestrator.core.campaign import CampaignStatus
    from orchestrator.core.status import JobStatus
    from orchestrator.store import Store
    from orchestrator.store.views import EventView, JobView
    from vocab import Offer

DEFAULT_LIMIT = 50
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.5, 3600.0
# A NaN, negative or tiny interval would crash time.sleep or poll the store in a busy loop.
interval = finite_float(MIN_INTERVAL_S, MAX_INTERVAL_S)
positive_int = bounded_int(1, 10**9)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser("status", aliases=["ls"], help="jobs with state, progress and live cost",
                        description="Without JOB: the newest jobs as a table (newest first). With JOB: that job "
                                    "in detail, with its attempts.")
    st.add_argument("job", nargs="?", metavar="JOB", help="a job id, or any unique prefix of one")
    st.add_argument("--watch", "-w", action="store_true",
                    help="refresh in place; with JOB, stop when the job ends (exit 0 if it succeeded, else 1)")
    st.add_argument("--interval", type=interval, default=2.0, metavar="S",
                    help=f"seconds between refreshes with --watch ({MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g}; "
                         "default 2)")
    output_flags(st)
    utc_flag(st)
    pages = st.add_mutually_exclusive_group()
    pages.add_argument("--limit", type=positive_int, metavar="N",
                       help=f"list at most N jobs (default {DEFAULT_LIMIT}); a cut list is said on stderr")
    pages.add_argument("--all", "-A", action="store_true", help="list every job")
    st.add_argument("--state", type=states, action="extend", metavar="STATE[,STATE]",
                    help=f"list only jobs in these states (repeatable): {', '.join(JOB_STATES)}")
    st.add_argument("--name", metavar="PATTERN",
                    help="list only jobs whose name matches PATTERN (`*` any text, `?` one character; "
                         "case-insensitive)")
    st.set_defaults(func=cmd_status)

    cli_logs.register(sub)

    ev = sub.add_parser("events", help="a job's event history")
    ev.add_argument("job", metavar="JOB", help="a job id, or any unique prefix of one")
    ev.add_argument("-f", "--follow", action="store_true",
                    help="keep printing new events until the job ends (exit 0 if it succeeded, else 1) or Ctrl-C")
    output_flags(ev, ("table", "json"))
    utc_flag(ev)
    ev.set_defaults(func=cmd_events)


# --- argument types: one clear line from argparse for a bad value ----------------------------------


def states(text: str) -> list[str]:
    """A comma list of job states, each checked against the states a job can be in."""
    names = [s.strip().lower().replace("-", "_") for s in text.split(",") if s.strip()]
    wrong = [n for n in names if n not in JOB_STATES]
    if wrong or not names:
        raise argparse.ArgumentTypeError(f"unknown state {(wrong or [text])[0]!r}; states: {', '.join(JOB_STATES)}")
    return names


# --- output ---------------------------------------------------------------------------------------


def terminal_width() -> int | None:
    """Columns to fit, when a person is looking (a terminal, or COLUMNS set); None for a pipe."""
    if "COLUMNS" in os.environ or sys.stdout.isatty():
        return max(20, shutil.get_terminal_size().columns)
    return None


# --- status ---------------------------------------------------------------------------------------


def _offers(job: JobView, cache: dict[str, list[Offer]]) -> list[Offer]:
    """Current offers for an unfinished job's resources, asked once per distinct placement."""
    from orchestrator.cli.wiring import build_providers
    from vocab import ProviderError

    spec = job.spec
    key = json.dumps([spec.placement.providers, spec.placement.regions, spec.placement.options,
                      repr(spec.resources)], sort_keys=True, default=str)
    if key not in cache:
        offers: list[Offer] = []
        try:
            for name, provider in build_providers(spec.placement.providers).items():
                offers.extend(provider.offers(spec.resources, spec.placement.regions, job_id=job.id,
                                              options=spec.placement.options.get(name)))
        except ProviderError:
            offers = []
        cache[key] = offers
    return cache[key]


def statuses_now(store: Store, jobs: Sequence[JobView]) -> list[JobStatus]:
    """The status of each job, from three queries for the whole page (not three per job)."""
    from orchestrator.core.status import job_status

    ids = [j.id for j in jobs]
    tasks, attempts = store.tasks_of(ids), store.attempts_of(ids)
    cache: dict[str, list[Offer]] = {}
    now = time.time()
    return [job_status(job_id=j.id, name=j.name, spec=j.spec, created_at=j.created_at, deadline_at=j.deadline_at,
                       tasks=tasks[j.id], attempts=attempts[j.id],
                       offers=_offers(j, cache) if j.finished_at is None else [], now=now) for j in jobs]


def job_status_now(store: Store, job_ref: str) -> JobStatus:
    return statuses_now(store, [cli_jobs.resolve(store, job_ref)])[0]


def items_transport(store: Store, job_id: str) -> str:
    """How the campaign's workers reach their items, from the providers' settings (campaign_items.py)."""
    from orchestrator.cli.campaign_items import transport_line

    job = store.job(job_id)
    return "" if job is None else transport_line(job.spec.placement.providers, job.checkpoint_uri)


def campaign_now(store: Store, status: JobStatus, *, listed: int = 20) -> CampaignStatus | None:
    """The campaign part of a job's status (None for a job without items): counts, rate, ETA, $ per item."""
    from orchestrator.core.campaign import RATE_WINDOW_S, campaign_status
    from orchestrator.store.items import ItemStore

    job = store.job(status.job_id)
    if job is None or job.spec.array is None or not job.spec.array.is_campaign:
        return None
    items = ItemStore(store.engine)
    now = time.time()
    window = max(min(RATE_WINDOW_S, now - job.created_at), 1.0)
    return campaign_status(status, items.counts(job.id), done_in_window=items.done_since(job.id, now - window),
                           window_s=window, quarantined=items.quarantined(job.id, limit=listed), now=now)


def _show(text: str, *, clear: bool) -> None:
    if clear:
        sys.stdout.write("\x1b[H\x1b[2J")
    print(text, flush=True)


def cmd_status(args: argparse.Namespace) -> int:
    """One job (`--watch`: until it ends) or a page of the job list (`--watch`: until Ctrl-C)."""
    from orchestrator.cli.wiring import open_store

    listing = args.state or args.name is not None or args.limit is not None or args.all
    if args.job and listing:
        raise CliError("--state, --name, --limit and --all choose jobs for the list; not with a JOB",
                       code=EXIT_USAGE)
    store = open_store()
    as_json = args.output == "json"
    clear = args.watch and not as_json and sys.stdout.isatty()
    while True:
        if args.job:
            status = job_status_now(store, args.job)
            _show(_one(store, status, args), clear=clear)
            if args.watch and status.state in FINISHED_STATES:
                return 0 if status.state == "succeeded" else 1
        else:
            _show_list(store, args, clear=clear)
        if not args.watch:
            return 0
        time.sleep(args.interval)


def job_json(store: Store, status: JobStatus, now: float) -> dict[str, Any]:
    """`orch status JOB --json`: the status, `controller` (the owner of its live lease, or null) and, for a
    campaign, `campaign`. The dashboard shows this same object."""
    campaign = campaign_now(store, status)
    unfinished = status.state not in FINISHED_STATES
    owner = store.job_leases([status.job_id], now).get(status.job_id) if unfinished else None
    return {**status.to_dict(), "controller": owner, **({"campaign": campaign.to_dict()} if campaign else {})}


def list_json(store: Store, statuses: Sequence[JobStatus], now: float) -> list[dict[str, Any]]:
    """`orch status --json`: each job's status with `controller`, the owner of its live lease (a finished
    job's lease lingers until its controller stops or the lease runs out: not "held"). The dashboard's
    list shows these same objects."""
    owners = store.job_leases([s.job_id for s in statuses if s.state not in FINISHED_STATES], now)
    return [{**s.to_dict(), "controller": owners.get(s.job_id)} for s in statuses]


def _one(store: Store, status: JobStatus, args: argparse.Namespace) -> str:
    """One job as JSON (`job_json`) or as its detail."""
    now = time.time()
    if args.output == "json":
        return json.dumps(job_json(store, status, now), allow_nan=False)
    campaign = campaign_now(store, status)
    unfinished = status.state not in FINISHED_STATES
    width = None if args.output == "wide" else terminal_width()
    text = render.status_detail(status, width, utc=args.utc, colour=render.use_colour(),
                                controller=cli_jobs.controller_line(store, status.job_id, unfinished, now))
    if campaign is not None:
        text += "\n" + render.campaign_detail(campaign, width, utc=args.utc)
        text += "\n" + items_transport(store, status.job_id)
    return text


def _show_list(store: Store, args: argparse.Namespace, *, clear: bool) -> None:
    """A page of jobs, filtered and cut by the store; a cut list says so on stderr (JSON stays valid), and
    so do pending jobs that no controller will run."""
    from orchestrator.store.job_list import JobFilter

    where = JobFilter(states=tuple(args.state or ()), name=args.name)
    limit = None if args.all else (args.limit or DEFAULT_LIMIT)
    jobs = store.jobs(where, limit=None if limit is None else limit + 1)
    cut = limit is not None and len(jobs) > limit
    jobs = jobs[:limit]
    statuses = statuses_now(store, jobs)
    now = time.time()
    if args.output == "json":
        text = json.dumps(list_json(store, statuses, now), allow_nan=False)
    elif statuses:
        text = render.status_rows(statuses, terminal_width(), created={j.id: j.created_at for j in jobs}, now=now,
                                  wide=args.output == "wide", colour=render.use_colour(), utc=args.utc)
    else:
        text = "no jobs match" if where.states or where.name is not None else "no jobs"
    _show(text, clear=clear)
    if cut:
        total = store.count_jobs(where)
        print(f"showing {len(statuses):,} of {total:,} jobs; --all or --limit N for more", file=sys.stderr,
              flush=True)
    if args.output != "json" and not args.watch:  # for a person; a script reads `controller` in the JSON
        hint = cli_jobs.unclaimed_hint(store, [s.job_id for s in statuses if s.state == "pending"], now)
        if hint:
            print(hint, file=sys.stderr, flush=True)


# --- events ---------------------------------------------------------------------------------------


def event_dict(e: EventView) -> dict[str, Any]:
    return {"id": e.id, "at": e.at, "kind": e.kind, "message": e.message, "task_id": e.task_id,
            "attempt_id": e.attempt_id}


def cmd_events(args: argparse.Namespace) -> int:
    """The job's events; with -f, new ones as they are recorded until the job has finished: the loop
    records the `finished` event, then marks the job finished, so reading that mark before the events
    makes the last read hold every event. `-o json` prints one list, or with -f one object per line
    (a followed list would never end)."""
    from orchestrator.cli.wiring import open_store
    from orchestrator.core.model import job_state

    store = open_store()
    job = cli_jobs.resolve(store, args.job)
    if args.output == "json" and not args.follow:
        print(json.dumps([event_dict(e) for e in store.events(job.id)]))
        return 0
    seen = 0
    while True:
        current = store.job(job.id)
        ended = not args.follow or (current is not None and current.finished_at is not None)
        for e in store.events(job.id, after_id=seen):
            seen = e.id
            print(json.dumps(event_dict(e)) if args.output == "json"
                  else f"{render.when(e.at, args.utc)}  {e.kind:<18} {e.message}", flush=args.follow)
        if ended:
            return 0 if not args.follow or job_state([t.state for t in store.tasks(job.id)]) == "succeeded" else 1
        time.sleep(cli_logs.POLL_S)
