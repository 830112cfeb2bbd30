"""`orch`: a thin command line over the library. Parse, call, print; exit 2 on bad input.

Start-up is kept short (`orch --help` under 0.3 s, bench/cli_startup.py): this module imports
nothing heavy at its top. The store (SQLAlchemy), the policies (numpy), the simulator and the cloud
SDKs are imported inside the commands that use them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from orchestrator.cli import completion
from orchestrator.cli import dashboard as cli_dashboard
from orchestrator.cli import results as cli_results
from orchestrator.cli import schema as cli_schema
from orchestrator.cli import status as cli_status
from orchestrator.cli.args import OrchParser, VersionAction, bounded_int, finite_float, output_flags
from orchestrator.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError
from orchestrator.cli.submit import cmd_submit, prepare, run_loop
from orchestrator.core.spec import MAX_HOURS, MAX_RESTART_OVERHEAD_HOURS

if TYPE_CHECKING:
    from orchestrator.store import Store

__all__ = ["build_parser", "main", "prepare"]

# Bounds of the number flags: a loop tick below 50 ms only burns CPU, above an hour it stops
# watching; simulated hours within the job file's own bounds (orchestrator.core.spec, light to import).
TICK = finite_float(0.05, 3600.0)
HOURS = finite_float(0.0, MAX_HOURS, low_inclusive=False)
OVERHEAD_HOURS = finite_float(0.0, MAX_RESTART_OVERHEAD_HOURS)
PRICE_RATIO = finite_float(0.0, 1000.0, low_inclusive=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Ctrl-C exits 130, quietly; a reader that went away (`orch events J | head -1`)
    ends the command quietly with 0, as `orch status` does (cli_status), since the reader got what it wanted."""
    try:
        try:
            return _main(list(sys.argv[1:] if argv is None else argv))
        finally:
            # A reader that went away (`orch status | head -1`) shows here, even after `--help`
            # (SystemExit), rather than as a message at interpreter exit.
            sys.stdout.flush()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return 0


def _main(argv: list[str]) -> int:
    if argv[:1] == ["agent"]:
        from orchestrator.job import agent

        return agent.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        known = user_error(exc)
        if known is None:
            raise
        message, code = known
        print(f"orch: {message}", file=sys.stderr)
        return code


def user_error(exc: Exception) -> tuple[str, int] | None:
    """(one-line message, exit status) for an error that is the user's to fix, else None (a bug).

    The error types are imported here, not at the top: each module is already loaded whenever one of
    its errors can have been raised, so this costs nothing, and `orch --help` does not load them.
    """
    from orchestrator.core.spec import SpecError
    from vocab import ProviderError

    if isinstance(exc, SpecError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, ProviderError):
        return str(exc), 1
    from sqlalchemy.exc import DBAPIError

    from orchestrator.store import SchemaError
    from orchestrator.store.repo import AmbiguousJob

    if isinstance(exc, SchemaError | AmbiguousJob):
        return str(exc), 1
    if isinstance(exc, DBAPIError):  # after the store opened: a server gone, a disk full, a lock held
        detail = "; ".join(line.strip() for line in str(exc.orig).splitlines() if line.strip())
        return f"cannot use the database ({database_url_for_humans()}): {detail}", 1
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (a test's capture): nothing will flush it
        pass


def database_url_for_humans() -> str:
    """The store's URL with any password hidden."""
    from sqlalchemy.engine import make_url

    from orchestrator.store import database_url

    return make_url(database_url()).render_as_string(hide_password=True)


def build_parser() -> OrchParser:
    p = OrchParser(prog="orch", description="GPU jobs on spot capacity, on time and on budget.")
    p.add_argument("--version", action=VersionAction, help="print orch's version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", help="the command to run")

    s = sub.add_parser("submit", help="validate and submit a job.toml")
    s.add_argument("file", help="the job file (docs/job-spec.md)")
    s.add_argument("--wait", action="store_true", help="run the loop in this process until the job ends")
    output_flags(s, ("table", "json"))
    s.add_argument("--tick", type=TICK, default=2.0, help="seconds between reconcile ticks with --wait (default 2)")
    s.set_defaults(func=cmd_submit)

    # cli_status types its parsers as plain ArgumentParsers; they are OrchParsers (one-line errors) all the same.
    cli_status.register(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))
    cli_results.register(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))
    cli_dashboard.register(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))
    cli_schema.register(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))

    _cancel_parser(sub)
    _run_parser(sub)

    _controller_parser(sub, s)

    db = sub.add_parser("db", help="database schema")
    dbs = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND", help="what to do")
    up = dbs.add_parser("upgrade", help="migrate the store to the newest schema")
    up.set_defaults(func=cmd_db_upgrade)

    _simulate_parser(sub)

    aws = sub.add_parser("aws", help="AWS set-up")
    awss = aws.add_subparsers(dest="aws_command", required=True, metavar="COMMAND", help="what to set up")
    notices = awss.add_parser("setup-notices", help="create the EventBridge rules and SQS queue for spot notices")
    notices.add_argument("--region", required=True, help="the AWS region whose spot notices to route")
    notices.add_argument("--queue-name", default="orch-ec2-notices", help="SQS queue name (default orch-ec2-notices)")
    notices.set_defaults(func=cmd_aws_setup_notices)

    sub.add_parser("agent", help="run beside a job on its instance: orch agent [options] -- CMD ...")
    completion.register(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub), p)
    return p


def _cancel_parser(sub: argparse._SubParsersAction[OrchParser]) -> None:
    c = sub.add_parser("cancel", help="cancel jobs: their processes or instances are stopped",
                       description="Cancel one job, several, or every unfinished one (--all). More than one asks "
                                   "for a confirmation first, unless --yes.")
    c.add_argument("job", nargs="*", metavar="JOB", help="job ids, or any unique prefixes of them")
    c.add_argument("--all", action="store_true", help="every unfinished job")
    c.add_argument("--yes", "-y", action="store_true", help="do not ask for a confirmation")
    c.set_defaults(func=cmd_cancel)


def _run_parser(sub: argparse._SubParsersAction[OrchParser]) -> None:
    r = sub.add_parser("run", help="run a job in this terminal until it ends: a submitted JOB, or a job FILE",
                       description="The reconcile loop in this process, for one job, printing its events, then "
                                   "its status (exit 0 if it succeeded, else 1). With a job file, it is submitted "
                                   "first: `orch run job.toml` is `orch submit job.toml --wait`.")
    r.add_argument("job", metavar="JOB|FILE", help="a submitted job's id (or a unique prefix), or a job.toml to submit")
    r.add_argument("--tick", type=TICK, default=2.0, help="seconds between reconcile ticks (default 2)")
    output_flags(r, ("table", "json"))
    r.set_defaults(func=cmd_run)


def _controller_parser(sub: argparse._SubParsersAction[OrchParser], submit: OrchParser) -> None:
    ctl = sub.add_parser("controller", help="run the reconcile loop as a long-running process")
    ctl.add_argument("--tick", type=TICK, default=5.0, help="seconds between reconcile ticks (default 5)")
    providers = ctl.add_argument("--providers", default="local", help="comma-separated providers to manage")
    ctl.lazy_help(providers, _providers_help)
    ctl.add_argument("--once", action="store_true", help="one tick, then exit")
    ctl.add_argument("--json-logs", action="store_true", help="log one JSON object per line (default: text lines)")
    ctl.add_argument("--workers", type=bounded_int(0, 256), default=8,
                     help="jobs worked on at once, each provider call bounded by --call-timeout (0: one at a "
                          "time, in order; default 8)")
    ctl.add_argument("--call-timeout", type=finite_float(1.0, 3600.0), default=60.0,
                     help="seconds to wait for one provider call before the tick moves on (default 60)")
    ctl.set_defaults(func=cmd_controller)
    ctl.add_argument("--kubernetes", action="store_true",
                     help="run as the GpuJob controller (leader-elected; pods through the kubernetes provider)")
    ctl.add_argument("--namespace", default=None, help="watch GpuJobs in this namespace only")
    ctl.add_argument("--lease-name", default=None, help="name of the leader-election Lease (with --kubernetes)")
    ctl.add_argument("--health-port", type=bounded_int(1, 65535), default=None,
                     help="serve /healthz and /readyz on this port (with --kubernetes)")
    submit.add_argument("--kubernetes", action="store_true", help="create a GpuJob resource instead")
    submit.add_argument("--namespace", default=None,
                        help="namespace of the GpuJob (with --kubernetes; default $POD_NAMESPACE or default)")


def _providers_help() -> str:
    from orchestrator.cli.wiring import known_providers

    return f"comma-separated providers to manage (default local; known: {', '.join(known_providers())})"


def _simulate_parser(sub: argparse._SubParsersAction[OrchParser]) -> None:
    sim = sub.add_parser("simulate", help="run a job through the real loop on spot traces, at simulated time")
    sim.add_argument("file", help="the job file")
    traces = sim.add_mutually_exclusive_group(required=True)
    traces.add_argument("--trace", action="append", metavar="FILE",
                        help="an availability trace (one per zone; repeat for several zones)")
    traces.add_argument("--traces", metavar="DIR",
                        help="a folder of aligned per-zone traces (zone = file name up to the first '_'), each "
                             "zone placed in its own region (../shared/data/multi-region)")
    policy = sim.add_argument("--policy", help="override the job's policy")
    sim.lazy_help(policy, _policy_help)
    sim.add_argument("--start-tick", type=bounded_int(0, 10**9), default=0,
                     help="start this many ticks into the traces (default 0)")
    sim.add_argument("--task-hours", type=HOURS, help="C: hours of work")
    sim.add_argument("--deadline-hours", type=HOURS, help="D: hours from submission to the deadline")
    sim.add_argument("--restart-overhead-hours", type=OVERHEAD_HOURS, help="d: hours lost at each launch")
    sim.add_argument("--price-ratio", type=PRICE_RATIO, help="k: on-demand price / spot price")
    sim.add_argument("--json", action="store_true", help="print the result as one JSON object")
    sim.set_defaults(func=cmd_simulate)


def _policy_help() -> str:
    from orchestrator.core.policy import policy_names

    return f"override the job's policy: {', '.join(policy_names())}"


# --- cancel, controller, db, simulate, aws ---------------------------------------------------------


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel the named jobs (or every unfinished one): each is checked before any is cancelled, and more
    than one needs a yes (at a terminal) or --yes."""
    from orchestrator.cli.jobs import resolve_many
    from orchestrator.cli.wiring import open_store
    from orchestrator.store.job_list import JobFilter

    if bool(args.job) == bool(args.all):
        raise CliError("name the jobs to cancel, or --all (not both)", EXIT_USAGE)
    store = open_store()
    if args.all:
        jobs = store.jobs(JobFilter(states=("pending", "running", "preempted")))
        if not jobs:
            print("no unfinished jobs")
            return 0
    else:
        jobs = resolve_many(store, args.job)
    if len(jobs) > 1 and not args.yes and not confirm(f"cancel {len(jobs)} jobs ({_some(j.id[:8] for j in jobs)})?"):
        print("nothing cancelled", file=sys.stderr)
        return 1
    for job in jobs:
        cancel_one(store, job.id)
    return 0


def _some(ids: Iterable[str], n: int = 5) -> str:
    shown = list(ids)
    return ", ".join(shown[:n]) + (f" and {len(shown) - n} more" if len(shown) > n else "")


def confirm(question: str) -> bool:
    """Ask at a terminal; refuse where nobody can answer (a script must say --yes)."""
    if not sys.stdin.isatty():
        raise CliError(f"{question.rstrip('?')}: add --yes to confirm (stdin is not a terminal)", EXIT_USAGE)
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def cancel_one(store: Store, job_id: str) -> None:
    from orchestrator.cli.wiring import build_providers
    from orchestrator.core.model import job_state
    from orchestrator.loop.reconciler import Reconciler
    from vocab import SystemClock

    job = store.job(job_id)
    assert job is not None  # resolved by the caller; jobs are never deleted
    if job.finished_at is not None:
        print(f"job {job.id} has already finished")
        return
    store.request_cancel(job.id, time.time())
    # Act now rather than at the controller's next tick: stop what runs, then settle the rows. Only
    # this job, and only if no running controller holds it (that one will act on its next tick).
    clock = SystemClock()
    r = Reconciler(store, build_providers(job.spec.placement.providers, clock=clock), clock,
                   owner=f"cancel-{os.getpid()}", lease_seconds=30.0)
    try:
        r.tick(job_ids=[job.id], reap=False)
    finally:
        store.release_jobs(r.owner)
    state = job_state([t.state for t in store.tasks(job.id)])
    if state == "cancelled":
        print(f"cancelled job {job.id}")
    else:
        print(f"cancellation of job {job.id} requested; the controller running it stops it on its next tick")


def cmd_run(args: argparse.Namespace) -> int:
    """`orch run FILE`: submit, then run; `orch run JOB`: run a job already submitted, in this process."""
    from orchestrator.cli.jobs import resolve
    from orchestrator.cli.submit import wait
    from orchestrator.cli.wiring import open_store

    if Path(args.job).is_file():
        ns = argparse.Namespace(file=args.job, wait=True, output=args.output, tick=args.tick, kubernetes=False,
                                namespace=None)
        return cmd_submit(ns)
    store = open_store()
    job = resolve(store, args.job)
    if job.finished_at is not None:
        raise CliError(f"job {job.id[:8]} has already finished (`orch status {job.id[:8]}`)")
    owner = store.job_leases([job.id], time.time()).get(job.id)
    if owner is not None:  # this loop could not claim it: it would stop at once, the job unfinished
        raise CliError(f"controller {owner} is running job {job.id[:8]}; follow it with "
                       f"`orch status {job.id[:8]} --watch` or `orch logs {job.id[:8]} -f`")
    return wait(store, job.id, job.spec, tick=args.tick, quiet=args.output == "json")


def cmd_controller(args: argparse.Namespace) -> int:
    """The loop, logging every event of its jobs and each cost step to stderr (orchestrator.cli.log)."""
    from orchestrator.cli import log as cli_log
    cli_log.configure(json_logs=args.json_logs)
    if args.kubernetes:
        from orchestrator.cli.k8s import run_kubernetes_controller

        return run_kubernetes_controller(args)
    from orchestrator.cli.campaign_items import controller_items
    from orchestrator.cli.wiring import build_providers, controller_executor, open_store
    from orchestrator.loop.reconciler import Reconciler
    from vocab import SystemClock

    store = open_store()
    clock = SystemClock()
    names = [n.strip() for n in args.providers.split(",") if n.strip()]
    providers = build_providers(names, clock=clock)
    with controller_items(store, providers) as item_endpoint:  # campaigns on cloud instances (campaign_items.py)
        r = Reconciler(store, providers, clock, tick_seconds=args.tick, executor=controller_executor(args),
                       item_endpoint=item_endpoint)
        events = cli_log.ControllerLog.starting_now(store, r.owner, clock.now)
        cli_log.log.info("controller %s: providers %s, tick %gs", r.owner, ", ".join(names), args.tick,
                         extra={"kind": "start"})
        outcome = run_loop(r, max_ticks=1 if args.once else None, on_tick=events.after_tick)
    cli_log.log.info("controller %s %s; its jobs are released", r.owner,
                     {"done": "finished", "stopped": "stopped (SIGTERM)", "interrupted": "interrupted"}[outcome],
                     extra={"kind": "stop"})
    return EXIT_INTERRUPTED if outcome == "interrupted" else 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from orchestrator.store import database_url, make_engine
    from orchestrator.store.engine import current_revision, upgrade

    engine = make_engine(database_url())
    upgrade(engine)
    print(f"database at revision {current_revision(engine)}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from orchestrator.cli import render
    from orchestrator.core.policy import has_policy
    from orchestrator.job_files import load_spec
    from orchestrator.research.traces import TraceError, load_trace
    from orchestrator.simulate import simulate_job, zone_regions, zone_traces

    now = time.time()
    spec = load_spec(args.file, submitted_at=now, policies=has_policy)
    if args.policy is not None and not has_policy(args.policy):
        from orchestrator.core.policy import policy_names

        raise CliError(f"no policy named {args.policy!r} (known: {', '.join(policy_names())})", EXIT_USAGE)
    traces = {}
    regions = None
    try:
        if args.traces is not None:
            traces = zone_traces(args.traces)
            regions = zone_regions(traces)
        for i, path in enumerate(args.trace or ()):
            zone = Path(path).stem if Path(path).stem not in traces else f"{Path(path).stem}-{i}"
            traces[zone] = load_trace(path)
    except TraceError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    deadline_h = args.deadline_hours
    if deadline_h is None and spec.schedule.deadline is not None:
        deadline_h = (spec.schedule.deadline - now) / 3600.0
    if any(args.start_tick >= len(t) for t in traces.values()):
        raise CliError(f"--start-tick {args.start_tick} is outside the trace", EXIT_USAGE)
    result = simulate_job(spec, traces, policy=args.policy, start_tick=args.start_tick, task_hours=args.task_hours,
                          deadline_hours=deadline_h, overhead_hours=args.restart_overhead_hours,
                          price_ratio=args.price_ratio, regions=regions)
    # allow_nan=False: `Infinity` is not JSON; a non-finite figure is a bug to see, not to print.
    print(json.dumps(result.to_dict(), allow_nan=False) if args.json else render.simulation(result))
    return 0


def cmd_aws_setup_notices(args: argparse.Namespace) -> int:
    from providers.aws.notices import ensure_notice_queue

    queue = ensure_notice_queue(args.region, queue_name=args.queue_name)
    print(f"queue {queue.queue_url}\nrules {', '.join(queue.rule_arns)}")
    print(f"add to the [region.{args.region}] table of the AWS settings: notice_queue_url = \"{queue.queue_url}\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
