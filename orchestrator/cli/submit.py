"""`orch submit`: validate a job file against the providers' offers, store it, show its estimate.

With `--wait` the loop runs in this process until the job ends (`run_loop`, shared with `orch
controller`). The estimate is derived once (`estimate`) and is what the table, the JSON and the
budget warning all show.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cli.errors import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from orchestrator.core.spec import JobSpec
    from orchestrator.loop.reconciler import Reconciler
    from orchestrator.store import Store
    from vocab import Offer


def prepare(path: str, now: float) -> tuple[JobSpec, list[Offer]]:
    """Validate a job file completely, against the providers' offers too; store nothing."""
    import dataclasses

    from orchestrator.cli.wiring import build_providers, known_providers
    from orchestrator.core.placement import check_placeable
    from orchestrator.core.policy import has_policy
    from orchestrator.core.spec import SpecError, check_gang_providers
    from orchestrator.job_files import load_spec
    from providers.base import ChecksOptions
    from providers.catalog import load_catalog
    from vocab import PermanentError

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
    check_gang_providers(spec, {n: p.abilities.max_gang_nodes for n, p in providers.items()}, source=path)
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
        offers.extend(provider.offers(spec.resources, spec.placement.regions,
                                      options=spec.placement.options.get(name)))
    check_placeable(spec, offers, source=path, known_gpus=load_catalog().gpu_models())
    return spec, offers


@dataclass(frozen=True, slots=True)
class Estimate:
    """The whole job on one market at its cheapest matching offer: the figure submit shows and warns with."""

    market: str
    instance_type: str
    where: str
    price_per_hour: float
    hours: float

    @property
    def cost_usd(self) -> float:
        return self.price_per_hour * self.hours

    def to_dict(self) -> dict[str, Any]:
        from orchestrator.core.cost import money

        return {"instance_type": self.instance_type, "price_per_hour": self.price_per_hour, "hours": self.hours,
                "cost_usd": money(self.cost_usd)}


def estimate(spec: JobSpec, offers: Sequence[Offer]) -> dict[str, Estimate]:
    """On-demand and spot estimates, by market (a market without offers is left out).

    Hours are the work plus one restart overhead per task (every shard of an array job boots its own
    instance), as the budget check at submit and `on_demand_only_usd` in the status count them.
    """
    from orchestrator.core.placement import cheapest
    from vocab import Market

    shards = spec.array.shards if spec.array else 1
    hours = spec.schedule.estimated_hours + shards * spec.schedule.restart_overhead_hours
    out: dict[str, Estimate] = {}
    for market in (Market.ON_DEMAND, Market.SPOT):
        best = cheapest(offers, market)
        if best is not None:
            out[str(market)] = Estimate(str(market), best.instance_type, best.zone or best.region,
                                        best.price_per_hour, hours)
    return out


def budget_warning(spec: JobSpec, estimates: dict[str, Estimate]) -> str | None:
    """A warning when the budget cannot pay for the work on on-demand, which the deadline may require."""
    from orchestrator.core.placement import markets_allowed
    from vocab import Market

    budget, on_demand = spec.schedule.budget_usd, estimates.get(str(Market.ON_DEMAND))
    if budget is None or on_demand is None or Market.ON_DEMAND not in markets_allowed(spec):
        return None
    if budget >= on_demand.cost_usd:
        return None
    return (f"warning: the budget ${budget:,.2f} is below the on-demand estimate ${on_demand.cost_usd:,.2f}: "
            "if spot runs short and the deadline needs on-demand, the job stops at its budget (budget_exceeded)")


def _estimate_table(estimates: dict[str, Estimate]) -> str:
    from orchestrator.cli import render
    rows = [(e.market, e.instance_type, e.where, f"${e.price_per_hour:.4f}", f"{e.hours:.2f}", render.usd(e.cost_usd))
            for e in estimates.values()]
    return render.table(("MARKET", "TYPE", "WHERE", "$/H", "HOURS", "COST"), rows)


def cmd_submit(args: argparse.Namespace) -> int:
    if args.kubernetes:
        from orchestrator.cli.k8s import submit_gpujob

        return submit_gpujob(args.file, args.namespace)
    from orchestrator.cli.wiring import open_store
    from orchestrator.job_files import load_items_of
    from orchestrator.store import orch_home
    from orchestrator.store.repo import new_id

    now = time.time()
    store = open_store()  # first: a store that cannot be used is said before any provider makes folders
    spec, offers = prepare(args.file, now)
    spec, items = load_items_of(spec, args.file)  # a campaign's items, checked whole before anything is stored
    job_id = new_id()
    # Without a checkpoint URI each job gets its own folder; a URI given in the file is used as is,
    # so resubmitting the same job resumes from its checkpoints.
    default_uri = (orch_home() / "checkpoints" / job_id).as_uri()
    store.submit(spec, source=str(Path(args.file).resolve()), now=now, job_id=job_id,
                 checkpoint_uri=spec.checkpoint.uri or default_uri, items=items)
    estimates = estimate(spec, offers)
    campaign = {"items": len(items), "workers": spec.array.workers} if spec.array and spec.array.is_campaign else {}
    if args.output == "json":
        print(json.dumps({"job_id": job_id, "estimate": {m: e.to_dict() for m, e in estimates.items()}, **campaign},
                         allow_nan=False))
    else:
        print(f"submitted job {job_id} ({spec.name}), policy {spec.policy_name}")
        if campaign:
            print(f"campaign: {len(items):,} items, up to {campaign['workers']} worker(s)")
        print(_estimate_table(estimates))
    warning = budget_warning(spec, estimates)
    if warning:
        print(warning, file=sys.stderr)
    if not args.wait:
        # Submitting only records the job: nothing runs it until a controller does. Say whether one runs.
        from orchestrator.cli.jobs import submitted_hint

        print(submitted_hint(store, job_id, time.time()), file=sys.stderr)
        return 0
    return wait(store, job_id, spec, tick=args.tick, quiet=args.output == "json")


def run_loop(r: Reconciler, **run: Any) -> str:
    """Run the loop in this process until it returns, SIGTERM or Ctrl-C; then give up the leases.

    Returns "done", "stopped" (SIGTERM) or "interrupted" (Ctrl-C). The jobs keep their state:
    another controller carries on.
    """
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    try:
        r.run(should_stop=lambda: stop["flag"], **run)
    except KeyboardInterrupt:
        return "interrupted"
    finally:
        r.store.release_jobs(r.owner)
    return "stopped" if stop["flag"] else "done"


def wait(store: Store, job_id: str, spec: JobSpec, *, tick: float, quiet: bool) -> int:
    """Run the loop for one job in this process until it ends (`submit --wait`, `orch run`)."""
    from orchestrator.cli import render
    from orchestrator.cli.campaign_items import controller_items
    from orchestrator.cli.wiring import build_providers
    from orchestrator.loop.reconciler import Reconciler
    from vocab import SystemClock

    clock = SystemClock()
    providers = build_providers(spec.placement.providers, clock=clock)
    seen = 0

    def print_events() -> None:
        nonlocal seen
        for e in store.events(job_id, after_id=seen):
            seen = e.id
            if not quiet:
                print(f"{render.when(e.at)}  {e.kind:<16} {e.message}", flush=True)

    with controller_items(store, providers) as item_endpoint:  # campaigns on cloud instances (campaign_items.py)
        r = Reconciler(store, providers, clock, tick_seconds=tick, item_endpoint=item_endpoint)
        outcome = run_loop(r, job_id=job_id, on_tick=print_events)
    if outcome != "done":
        print(f"\nstopped watching; job {job_id} keeps its state. `orch controller` carries on with it.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    from orchestrator.cli.status import job_status_now

    status = job_status_now(store, job_id)
    print(json.dumps(status.to_dict(), allow_nan=False) if quiet else render.status_detail(status))
    return 0 if status.state == "succeeded" else 1
