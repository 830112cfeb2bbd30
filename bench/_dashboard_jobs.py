"""Jobs for the dashboard's tests, screenshots and benchmark, made by the real loop on the `sim` provider.

A `SimJob` is one job submitted to a real store and stepped by the real `Reconciler` over a spot
availability trace at simulated time, ending where the caller says: a job that went through
reclamations and a switch to on-demand, with its events, in seconds. Its clock can be started in
the past so that the job's last moments are "now", as the dashboard (which reads the system clock,
as `orch status` does) then shows it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.spec import JobSpec, PlacementSpec, ScheduleSpec
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace
from orchestrator.store import Store
from orchestrator.store.repo import new_id
from providers.sim import SimClock, SimProvider
from vocab import Resources

# Spot for 2 h, reclaimed, back for 1.5 h, reclaimed, then gone for 8 h: a job with a deadline
# rides spot, is reclaimed twice and finishes on on-demand. Ticks of 10 minutes.
RECLAIMED_TWICE = (1,) * 12 + (0,) * 2 + (1,) * 9 + (0,) * 48 + (1,) * 40
GAP_S = 600.0


@dataclass
class SimJob:
    """A job and the loop that runs it. The loop, like any controller, works on every job of the store
    that no other controller holds (each `SimJob` loop holds its own for good once it has ticked), so
    a job that is to stay untouched is submitted after the other loops have run."""

    store: Store
    job_id: str
    clock: SimClock
    provider: SimProvider
    loop: Reconciler

    def run_until(self, until: float) -> bool:
        """Step the loop until simulated time `until` or the job's end; True when it has ended."""
        while True:
            if self.job_id not in self.loop.tick():
                return True
            step = self.provider.next_change()
            if step > until:
                self.clock.advance_to(until)
                return False
            self.clock.advance_to(step)

    def step(self) -> None:
        """One move: the clock to the next change the provider knows of, then a tick."""
        self.clock.advance_to(self.provider.next_change())
        self.loop.tick()


def sim_job(store: Store, *, name: str, start: float, hours: float, deadline_hours: float | None,
            traces: Mapping[str, Sequence[int]] | None = None, budget_usd: float | None = None,
            folder: Path, spot_price: float = 0.9731, on_demand_price: float = 3.06) -> SimJob:
    """A job submitted at `start` (simulated), placed on the sim provider's zones (`traces`: zone ->
    availability per 10-minute tick)."""
    traces = traces or {"us-east-1a": RECLAIMED_TWICE}
    clock = SimClock(start)
    provider = SimProvider(clock, {z: Trace(GAP_S, tuple(d), source=z) for z, d in traces.items()},
                           region="us-east-1", spot_price=spot_price, on_demand_price=on_demand_price,
                           restart_overhead_hours=0.1)
    schedule = ScheduleSpec(estimated_hours=hours, deadline=None if deadline_hours is None
                            else start + deadline_hours * 3600.0, budget_usd=budget_usd, market="auto",
                            restart_overhead_hours=0.1)
    spec = JobSpec(name=name, command=("python", "train.py"), resources=Resources(gpus=("V100",)),
                   schedule=schedule, placement=PlacementSpec(providers=("sim",)))
    job_id = store.submit(spec, source="dashboard demo", now=start, job_id=new_id(),
                          checkpoint_uri=(folder / name).as_uri())
    loop = Reconciler(store, {"sim": provider}, clock, owner=f"demo-{name}", tick_seconds=GAP_S,
                      lease_seconds=1e12)
    return SimJob(store, job_id, clock, provider, loop)


def bulk_jobs(store: Store, n: int, *, now: float) -> list[str]:
    """`n` jobs as a busy store holds them, written through the store's API (as `orch submit` does);
    they are waiting, so `orch status` prices them but asks no provider (no instance yet)."""
    spec = JobSpec(name="sweep", command=("true",), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=1.0, policy="greedy"),
                   placement=PlacementSpec(providers=("sim",)))
    return [store.submit(dataclasses.replace(spec, name=f"sweep-{i:05d}"), source="bench", now=now - n + i,
                         checkpoint_uri="file:///tmp/orch-bench") for i in range(n)]
