"""`orch`: a thin command line over the library. Parse, call, print; exit 2 on bad input."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from orchestrator import cli_render as render
from orchestrator import cli_status
from orchestrator.cli_errors import EXIT_USAGE, CliError
from orchestrator.model import job_state
from orchestrator.placement import check_placeable
from orchestrator.policy import has_policy
from orchestrator.spec import JobSpec, SpecError, load_spec
from orchestrator.store import SchemaError, Store, orch_home
from orchestrator.store.repo import AmbiguousJob, new_id
from orchestrator.wiring import build_providers, known_providers, open_store
from providers.base import ChecksOptions, Offer, PermanentError, ProviderError, SystemClock
from providers.catalog import load_catalog

if TYPE_CHECKING:
    from orchestrator.reconciler import Reconciler

def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:
        from orchestrator import agent

        rest = argv[1:]
        return agent.main(rest)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as exc:
        print(f"orch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CliError, SchemaError, ProviderError, AmbiguousJob) as exc:
        print(f"orch: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else 1
    except OperationalError as exc:
        print(f"orch: cannot use the database ({database_url_for_humans()}): {exc.orig}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def database_url_for_humans() -> str:
    """The store's URL with any password hidden."""
    from sqlalchemy.engine import make_url

    from orchestrator.store import database_url

    return make_url(database_url()).render_as_string(hide_password=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orch", description="GPU jobs on spot capacity, on time and on budget.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", help="validate and submit a job.toml")
    s.add_argument("file")
    s.add_argument("--wait", action="store_true", help="run the loop in this process until the job ends")
    s.add_argument("--json", action="store_true")
    s.add_argument("--tick", type=float, default=2.0, help="seconds between reconcile ticks with --wait")
    s.set_defaults(func=cmd_submit)

    cli_status.register(sub)

    c = sub.add_parser("cancel", help="cancel a job: its processes or instances are stopped")
    c.add_argument("job")
    c.set_defaults(func=cmd_cancel)

    ctl = sub.add_parser("controller", help="run the reconcile loop as a long-running process")
    ctl.add_argument("--tick", type=float, default=5.0)
    ctl.add_argument("--providers", default=",".join(["local"]),
                     help=f"comma-separated providers to manage (known: {', '.join(known_providers())})")
    ctl.add_argument("--once", action="store_true", help="one tick, then exit")
    ctl.set_defaults(func=cmd_controller)
    _kubernetes_arguments(ctl, s)

    db = sub.add_parser("db", help="database schema")
    dbs = db.add_subparsers(dest="db_command", required=True)
    up = dbs.add_parser("upgrade", help="migrate the store to the newest schema")
    up.set_defaults(func=cmd_db_upgrade)

    sim = sub.add_parser("simulate", help="run a job through the real loop on spot traces, at simulated time")
    sim.add_argument("file")
    sim.add_argument("--trace", action="append", required=True, metavar="FILE",
                     help="an availability trace (one per zone; repeat for several zones)")
    sim.add_argument("--policy", help="override the job's policy")
    sim.add_argument("--start-tick", type=int, default=0)
    sim.add_argument("--task-hours", type=float, help="C: hours of work")
    sim.add_argument("--deadline-hours", type=float, help="D: hours from submission to the deadline")
    sim.add_argument("--restart-overhead-hours", type=float, help="d: hours lost at each launch")
    sim.add_argument("--price-ratio", type=float, help="k: on-demand price / spot price")
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(func=cmd_simulate)

    aws = sub.add_parser("aws", help="AWS set-up")
    awss = aws.add_subparsers(dest="aws_command", required=True)
    notices = awss.add_parser("setup-notices", help="create the EventBridge rules and SQS queue for spot notices")
    notices.add_argument("--region", required=True)
    notices.add_argument("--queue-name", default="orch-ec2-notices")
    notices.set_defaults(func=cmd_aws_setup_notices)

    sub.add_parser("agent", help="run beside a job on its instance: orch agent [options] -- CMD ...")
    return p


# --- submit ----------------------------------------------------------------------------------------


def prepare(path: str, now: float) -> tuple[JobSpec, list[Offer]]:
    """Validate a job file completely, against the providers' offers too; store nothing."""
    spec = load_spec(path, submitted_at=now, policies=has_policy)
    unknown = [p for p in spec.placement.providers if p not in known_providers()]
    if unknown:
        raise SpecError(path, "placement.providers",
                        f"unknown provider {unknown[0]!r} (known: {', '.join(known_providers())})")
    if "local" in spec.placement.providers:
        # A local job runs here: its workdir is relative to the job file. On a cloud instance or in
        # a pod the workdir means a path there, so it is passed on as written.
        base = Path(path).resolve().parent
        spec = dataclasses.replace(spec, workdir=str((base / (spec.workdir or ".")).resolve()))
    providers = build_providers(spec.placement.providers)
    offers: list[Offer] = []
    for name, provider in providers.items():
        if isinstance(provider, ChecksOptions):
            try:
                provider.check_options(spec.placement.options.get(name, {}), spec.workdir)
            except PermanentError as exc:
                where, _, problem = str(exc).partition(": ")
                if not where.startswith(f"placement.options.{name}"):
                    where, problem = f"placement.options.{name}", str(exc)
                raise SpecError(path, where, problem) from None
        offers.extend(provider.offers(spec.resources, spec.placement.regions))
    check_placeable(spec, offers, source=path, known_gpus=load_catalog().gpu_models())
    return spec, offers


def _kubernetes_arguments(controller: argparse.ArgumentParser, submit: argparse.ArgumentParser) -> None:
    controller.add_argument("--kubernetes", action="store_true",
                            help="run as the GpuJob controller (leader-elected; pods through the kubernetes provider)")
    controller.add_argument("--namespace", default=None, help="watch GpuJobs in this namespace only")
    controller.add_argument("--lease-name", default=None)
    controller.add_argument("--health-port", type=int, default=None)
    submit.add_argument("--kubernetes", action="store_true", help="create a GpuJob resource instead")
    submit.add_argument("--namespace", default=None)


def cmd_submit(args: argparse.Namespace) -> int:
    if args.kubernetes:
        from orchestrator.cli_k8s import submit_gpujob

        return submit_gpujob(args.file, args.namespace)
    now = time.time()
    spec, offers = prepare(args.file, now)
    store = open_store()
    job_id = new_id()
    # Without a checkpoint URI each job gets its own folder; a URI given in the file is used as is,
    # so resubmitting the same job resumes from its checkpoints.
    default_uri = (orch_home() / "checkpoints" / job_id).as_uri()
    store.submit(spec, source=str(Path(args.file).resolve()), now=now, job_id=job_id,
                 checkpoint_uri=spec.checkpoint.uri or default_uri)
    if args.json:
        print(json.dumps({"job_id": job_id, "estimate": _estimate_dict(spec, offers)}))
    else:
        print(f"submitted job {job_id} ({spec.name}), policy {spec.policy_name}")
        print(render.estimate(offers, spec.schedule.estimated_hours, spec.schedule.restart_overhead_hours))
    if not args.wait:
        return 0
    return _wait(store, job_id, spec, tick=args.tick, quiet=args.json)


def _estimate_dict(spec: JobSpec, offers: list[Offer]) -> dict[str, Any]:
    hours = spec.schedule.estimated_hours + spec.schedule.restart_overhead_hours
    out: dict[str, Any] = {}
    for market in ("on-demand", "spot"):
        best = min((o for o in offers if str(o.market) == market), key=lambda o: o.price_per_hour, default=None)
        if best:
            out[market] = {"instance_type": best.instance_type, "price_per_hour": best.price_per_hour,
                           "hours": hours, "cost_usd": round(best.price_per_hour * hours, 4)}
    return out


def _run_loop(r: Reconciler, **run: Any) -> bool:
    """Run the loop in this process until it returns or SIGTERM/Ctrl-C; then give up the leases.

    Returns False when interrupted. The jobs keep their state: another controller carries on.
    """
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    try:
        r.run(should_stop=lambda: stop["flag"], **run)
    except KeyboardInterrupt:
        return False
    finally:
        r.store.release_jobs(r.owner)
    return not stop["flag"]


def _wait(store: Store, job_id: str, spec: JobSpec, *, tick: float, quiet: bool) -> int:
    from orchestrator.reconciler import Reconciler

    clock = SystemClock()
    r = Reconciler(store, build_providers(spec.placement.providers, clock=clock), clock, tick_seconds=tick)
    seen = 0

    def print_events() -> None:
        nonlocal seen
        for e in store.events(job_id, after_id=seen):
            seen = e.id
            if not quiet:
                print(f"{render.when(e.at)}  {e.kind:<16} {e.message}", flush=True)

    if not _run_loop(r, job_id=job_id, on_tick=print_events):
        print(f"\nstopped watching; job {job_id} keeps its state. `orch controller` carries on with it.",
              file=sys.stderr)
        return 130
    status = cli_status.job_status_now(store, job_id)
    print(json.dumps(status.to_dict()) if quiet else render.status_detail(status))
    return 0 if status.state == "succeeded" else 1


# --- cancel ----------------------------------------------------------------------------------------


def cmd_cancel(args: argparse.Namespace) -> int:
    store = open_store()
    job = store.job(args.job)
    if job is None:
        raise CliError(f"no job {args.job!r}")
    if job.finished_at is not None:
        print(f"job {job.id} has already finished")
        return 0
    store.request_cancel(job.id, time.time())
    # Act now rather than at the controller's next tick: stop what runs, then settle the rows. Only
    # this job, and only if no running controller holds it (that one will act on its next tick).
    from orchestrator.reconciler import Reconciler

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
    return 0


def cmd_controller(args: argparse.Namespace) -> int:
    if args.kubernetes:
        from orchestrator.cli_k8s import run_kubernetes_controller

        return run_kubernetes_controller(args)
    from orchestrator.reconciler import Reconciler

    store = open_store()
    clock = SystemClock()
    names = [n.strip() for n in args.providers.split(",") if n.strip()]
    r = Reconciler(store, build_providers(names, clock=clock), clock, tick_seconds=args.tick)
    print(f"controller {r.owner}: providers {', '.join(names)}, tick {args.tick:g}s", file=sys.stderr)
    _run_loop(r, max_ticks=1 if args.once else None)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from orchestrator.store import database_url, make_engine
    from orchestrator.store.engine import current_revision, upgrade

    engine = make_engine(database_url())
    upgrade(engine)
    print(f"database at revision {current_revision(engine)}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from orchestrator.simulate import simulate_job
    from orchestrator.traces import TraceError, load_trace

    now = time.time()
    spec = load_spec(args.file, submitted_at=now, policies=has_policy)
    if args.policy is not None and not has_policy(args.policy):
        raise CliError(f"no policy named {args.policy!r}", EXIT_USAGE)
    for flag in ("task_hours", "deadline_hours", "restart_overhead_hours", "price_ratio"):
        value = getattr(args, flag)
        if value is not None and not value > 0 and not (flag == "restart_overhead_hours" and value == 0):
            raise CliError(f"--{flag.replace('_', '-')} must be greater than 0", EXIT_USAGE)
    traces = {}
    try:
        for i, path in enumerate(args.trace):
            zone = Path(path).stem if Path(path).stem not in traces else f"{Path(path).stem}-{i}"
            traces[zone] = load_trace(path)
    except TraceError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    deadline_h = args.deadline_hours
    if deadline_h is None and spec.schedule.deadline is not None:
        deadline_h = (spec.schedule.deadline - now) / 3600.0
    if args.start_tick < 0 or any(args.start_tick >= len(t) for t in traces.values()):
        raise CliError(f"--start-tick {args.start_tick} is outside the trace", EXIT_USAGE)
    result = simulate_job(spec, traces, policy=args.policy, start_tick=args.start_tick, task_hours=args.task_hours,
                          deadline_hours=deadline_h, overhead_hours=args.restart_overhead_hours,
                          price_ratio=args.price_ratio)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(render.simulation(result))
    return 0


def cmd_aws_setup_notices(args: argparse.Namespace) -> int:
    from providers.aws_notices import ensure_notice_queue

    queue = ensure_notice_queue(args.region, queue_name=args.queue_name)
    print(f"queue {queue.queue_url}\nrules {', '.join(queue.rule_arns)}")
    print(f"add to the [region.{args.region}] table of the AWS settings: notice_queue_url = \"{queue.queue_url}\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
