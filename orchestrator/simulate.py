"""`orch simulate`: one job through the real loop (store, reconciler, policy) on the `sim` provider.

Time is simulated: the clock jumps from one trace tick to the next, so days of spot history run in
a second, and every decision is made by the same code, from the same kind of observations, as in a
live run. The store is a throwaway SQLite file. The benchmarks compare this path against the fast
policy-only simulator (`orchestrator.research.fastsim`) to show that the two agree.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from orchestrator.core.model import AttemptState
from orchestrator.core.policy.multizone_base import region_of
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import job_status
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.fastsim import PAPER_PRICE_RATIO
from orchestrator.research.traces import Trace, TraceError, load_trace
from orchestrator.store import Store
from orchestrator.store.engine import upgrade
from orchestrator.store.repo import new_id
from providers.sim import DEFAULT_SPOT_PRICE, SimClock, SimProvider

SIM_EPOCH = 1_700_000_000.0


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What a simulated job did. JSON keys are documented in docs/cli.md (`orch simulate`)."""

    policy: str
    state: str
    task_hours: float
    deadline_hours: float | None
    restart_overhead_hours: float
    price_ratio: float
    cost_usd: float
    on_demand_only_usd: float
    normalized_cost: float
    on_demand_hours: float
    spot_hours: float
    idle_hours: float
    preemptions: int
    launches: int
    finish_hours: float | None
    deadline_met: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def prepare_sim_spec(spec: JobSpec, *, now: float, policy: str | None, task_hours: float | None,
                     deadline_hours: float | None, overhead_hours: float | None) -> JobSpec:
    """The job as the simulation runs it: one task on `sim`, with the command-line overrides applied.

    The deadline is given in hours from submission (`deadline_hours`; None: no deadline), because the
    file's own deadline was resolved against the real clock.
    """
    sched = spec.schedule
    deadline = None if deadline_hours is None else now + deadline_hours * 3600.0
    schedule = dataclasses.replace(
        sched, estimated_hours=task_hours if task_hours is not None else sched.estimated_hours,
        deadline=deadline, restart_overhead_hours=overhead_hours if overhead_hours is not None
        else sched.restart_overhead_hours,
        market="auto" if policy else sched.market, policy=policy or sched.policy)
    placement = dataclasses.replace(spec.placement, providers=("sim",), regions=(), options={})
    return dataclasses.replace(spec, schedule=schedule, placement=placement, array=None)


def zone_traces(folder: str | os.PathLike[str]) -> dict[str, Trace]:
    """One trace per zone from a folder of aligned traces (`orch simulate JOB --traces DIR`).

    Every `*.json` in `folder` is one zone, named by its file name up to the first `_`
    (`us-east4-a_h100_1.json` -> `us-east4-a`, the multi-region data's naming). The traces must be
    aligned, tick i being the same interval in every zone: same tick length and length, else a
    `TraceError` names the first file that differs.
    """
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise TraceError(str(folder), "holds no .json trace files")
    out: dict[str, Trace] = {}
    for path in files:
        trace = load_trace(path)
        zone = path.stem.split("_")[0]
        if zone in out:
            raise TraceError(str(path), f"a second trace for zone {zone!r}")
        first = next(iter(out.values()), trace)
        if (trace.gap_seconds, len(trace)) != (first.gap_seconds, len(first)):
            raise TraceError(str(path), f"not aligned with the folder's first trace ({len(trace)} ticks of "
                             f"{trace.gap_seconds:g} s, not {len(first)} of {first.gap_seconds:g} s)")
        out[zone] = trace
    return out


def zone_regions(zones: Iterable[str]) -> dict[str, str]:
    """The region of each zone, from its name (GCP `us-central1-a`, AWS `us-east-1f`)."""
    return {z: region_of(z) for z in zones}


def simulate_job(spec: JobSpec, traces: Mapping[str, Trace], *, policy: str | None = None, start_tick: int = 0,
                 task_hours: float | None = None, deadline_hours: float | None = None,
                 overhead_hours: float | None = None, price_ratio: float | None = None,
                 spot_price: float = DEFAULT_SPOT_PRICE, regions: Mapping[str, str] | None = None) -> SimulationResult:
    """Run `spec` through the real loop on `traces` (zone -> trace); `regions` (zone -> region, e.g.
    `zone_regions(traces)`) places the zones in their own regions instead of one simulated region."""
    clock = SimClock(SIM_EPOCH)
    now = clock.now()
    sim_spec = prepare_sim_spec(spec, now=now, policy=policy, task_hours=task_hours,
                                deadline_hours=deadline_hours, overhead_hours=overhead_hours)
    ratio = price_ratio if price_ratio is not None else PAPER_PRICE_RATIO
    provider = SimProvider(clock, traces, spot_price=spot_price, on_demand_price=spot_price * ratio,
                           restart_overhead_hours=sim_spec.schedule.restart_overhead_hours, start_tick=start_tick,
                           zone_regions=regions)
    gap = min(t.gap_seconds for t in traces.values())
    horizon = now + max(len(t) - start_tick for t in traces.values()) * gap
    with tempfile.TemporaryDirectory(prefix="orch-sim-") as tmp:
        engine = _memory_engine()
        try:
            upgrade(engine)
            store = Store(engine)
            job_id = store.submit(sim_spec, source="simulation", now=now, job_id=new_id(),
                                  checkpoint_uri=Path(tmp).joinpath("ckpt").as_uri())
            r = Reconciler(store, {"sim": provider}, clock, owner="simulator", tick_seconds=gap,
                           lease_seconds=1e12)
            _run(r, provider, clock, job_id, horizon)
            return _result(store, job_id, sim_spec, ratio, now)
        finally:
            engine.dispose()


def _memory_engine() -> Engine:
    """One in-memory SQLite connection shared by every session: a simulation needs no durability."""
    engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", lambda conn, _rec: conn.execute("PRAGMA foreign_keys=ON"))
    return engine


def _run(r: Reconciler, provider: SimProvider, clock: SimClock, job_id: str, horizon: float) -> None:
    while job_id in r.tick():
        if clock.now() >= horizon:
            # The trace is over and the job is not: stop it where it stands, as a live run would be.
            r.store.request_cancel(job_id, clock.now())
            r.tick()
            return
        clock.advance_to(provider.next_change())


def _result(store: Store, job_id: str, spec: JobSpec, ratio: float, start: float) -> SimulationResult:
    job = store.job(job_id)
    assert job is not None
    attempts = store.attempts(job_id)
    # The work ended when the last attempt did; the loop only notices at its next tick.
    end = max((a.ended_at for a in attempts if a.ended_at is not None), default=job.finished_at or start)
    st = job_status(job_id=job_id, name=job.name, spec=spec, created_at=start, deadline_at=job.deadline_at,
                    tasks=store.tasks(job_id), attempts=attempts, offers=[], now=end)
    cost = st.cost
    sched = spec.schedule
    busy_h = cost.spot_hours + cost.on_demand_hours
    finish_h = (end - start) / 3600.0 if st.state == "succeeded" else None
    deadline_h = None if sched.deadline is None else (sched.deadline - start) / 3600.0
    return SimulationResult(
        policy=spec.policy_name, state=st.state, task_hours=sched.estimated_hours, deadline_hours=deadline_h,
        restart_overhead_hours=sched.restart_overhead_hours, price_ratio=ratio, cost_usd=cost.spent_usd,
        on_demand_only_usd=cost.on_demand_only_usd,
        normalized_cost=cost.spent_usd / cost.on_demand_only_usd if cost.on_demand_only_usd else 0.0,
        on_demand_hours=cost.on_demand_hours, spot_hours=cost.spot_hours,
        idle_hours=max(0.0, (end - start) / 3600.0 - busy_h), preemptions=cost.preemptions,
        launches=sum(1 for a in attempts if not a.unbilled and a.state is AttemptState.ENDED),
        finish_hours=finish_h,
        deadline_met=finish_h is not None and (deadline_h is None or finish_h <= deadline_h + 1e-9),
    )
