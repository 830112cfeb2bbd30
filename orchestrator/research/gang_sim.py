"""A gang job on count traces: the policy-only simulator behind `orch simulate` for `nodes > 1`.

The model is docs/policy.md's "Gangs" (and `orchestrator.core.policy.gang`'s module doc), in the
accounting of the paper's simulator (`fastsim`): the traces' ticks are the decision period; at tick
i a spot gang of k nodes in zone z survives if `counts[z][i] >= k`, else it has lost nodes (counted
as a preemption); the policy then chooses for [i, i+1); every tick a gang runs is billed whole, k
nodes (N on on-demand) at their price; a new gang first pays the restart overhead d, then works at
k/N of the full gang's rate. The exact optimum (`gang_optimum`) prices the same schedule the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.policy.gang import (
    GANG_POLICIES,
    GangAction,
    GangFacts,
    GangMode,
    GangPolicy,
    GangState,
)
from orchestrator.research.traces import TraceError, load_trace

_WORK_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class CountTraces:
    """Aligned per-zone counts: `counts[z][i]` nodes could be had in zone z during tick i."""

    gap_seconds: float
    counts: Mapping[str, Sequence[int]]

    def __len__(self) -> int:
        return min(len(c) for c in self.counts.values())

    def window(self, start: int, length: int) -> CountTraces:
        return CountTraces(self.gap_seconds, {z: c[start:start + length] for z, c in self.counts.items()})


def load_count_traces(folder: str | os.PathLike[str]) -> CountTraces:
    """Every `*.json` count trace in `folder`, one zone each (zone = file name up to the first `_`).

    The files must share a tick length; files of different lengths are cut to the shortest (the
    16-node V100 folder has one zone recorded for 11.3 days, two for 16.4, from the same start).
    """
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise TraceError(str(folder), "holds no .json trace files")
    counts: dict[str, tuple[int, ...]] = {}
    gap = None
    for path in files:
        trace = load_trace(path)
        zone = path.stem.split("_")[0]
        if zone in counts:
            raise TraceError(str(path), f"a second trace for zone {zone!r}")
        if gap is not None and trace.gap_seconds != gap:
            raise TraceError(str(path), f"ticks of {trace.gap_seconds:g} s, not {gap:g} s as the folder's first")
        gap = trace.gap_seconds
        counts[zone] = trace.data
    assert gap is not None
    return CountTraces(gap, counts)


@dataclass(frozen=True, slots=True)
class GangJob:
    nodes: int
    min_nodes: int
    work_h: float
    deadline_h: float | None
    overhead_h: float
    spot_price: float  # per node-hour
    on_demand_price: float  # per node-hour


@dataclass(frozen=True, slots=True)
class GangRun:
    """What a gang did. Costs in the trace's accounting: whole ticks, every node."""

    cost: float
    on_demand_only: float  # N nodes on on-demand for the work and one overhead
    on_demand_hours: float  # gang-hours (wall hours with the gang on on-demand)
    spot_hours: float
    spot_node_hours: float
    idle_hours: float
    preemptions: int
    launches: int
    finish_h: float | None  # None: not done when the traces ended
    work_left_h: float

    def deadline_met(self, deadline_h: float | None) -> bool:
        return self.finish_h is not None and (deadline_h is None or self.finish_h <= deadline_h + 1e-9)


def simulate(job: GangJob, traces: CountTraces, policy: GangPolicy | str = "gang", *, start: int = 0,
             ticks: int | None = None) -> GangRun:
    """Run `job` from tick `start` for at most `ticks` ticks (default: to the traces' end)."""
    decide = GANG_POLICIES[policy] if isinstance(policy, str) else policy
    g = traces.gap_seconds / 3600.0
    end = len(traces) if ticks is None else min(len(traces), start + ticks)
    state = GangState()
    done = cost = od_h = spot_h = spot_node_h = idle_h = 0.0
    preemptions = launches = 0
    finish: float | None = None
    for i in range(start, end):
        t = (i - start) * g
        free = {z: c[i] for z, c in traces.counts.items()}
        if state.mode is GangMode.SPOT and free.get(state.zone or "", 0) < state.nodes:
            preemptions += 1
            if job.min_nodes == job.nodes:
                state = GangState()
        facts = GangFacts(job.nodes, job.min_nodes, job.work_h, done, t, job.deadline_h, job.overhead_h, free,
                          job.spot_price, job.on_demand_price, state, g)
        dec = decide(facts)
        if dec.action is GangAction.WAIT:
            state = GangState()
            idle_h += g
            continue
        if dec.action is GangAction.SPOT and (dec.zone is None or not job.min_nodes <= dec.nodes
                                              <= min(job.nodes, free.get(dec.zone, 0))):
            raise ValueError(f"tick {i}: the policy chose a spot gang of {dec.nodes} in {dec.zone}, "
                             f"which cannot be had ({free.get(dec.zone or '', 0)} free)")
        if dec.launches(state, free):
            launches += 1
            left = job.overhead_h
        else:
            left = state.overhead_left_h
        paid = min(g, left)
        nodes = dec.nodes
        rate = nodes / job.nodes
        step = min(job.work_h - done, (g - paid) * rate)
        if done + step >= job.work_h - _WORK_EPS and finish is None:
            finish = t + paid + step / rate
        done += step
        if dec.action is GangAction.SPOT:
            cost += nodes * job.spot_price * g
            spot_h += g
            spot_node_h += nodes * g
            state = GangState(GangMode.SPOT, dec.zone, nodes, left - paid)
        else:
            cost += nodes * job.on_demand_price * g
            od_h += g
            state = GangState(GangMode.ON_DEMAND, None, nodes, left - paid)
        if finish is not None:
            break
    return GangRun(cost=cost, on_demand_only=job.nodes * job.on_demand_price * (job.work_h + job.overhead_h),
                   on_demand_hours=od_h, spot_hours=spot_h, spot_node_hours=spot_node_h, idle_hours=idle_h,
                   preemptions=preemptions, launches=launches, finish_h=finish,
                   work_left_h=max(0.0, job.work_h - done))
