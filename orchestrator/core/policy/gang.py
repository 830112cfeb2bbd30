"""The market decision for a gang: N nodes that run together or not at all, by a deadline.

A gang is one decision, not N task decisions: once per gang per tick, `decide(GangFacts) ->
GangDecision` says whether to wait, to launch or keep a spot gang of k nodes in one zone, or to run
all N nodes on on-demand. Mixed gangs (some nodes spot, some on-demand) are never chosen.

The model (the same as `orchestrator.research.gang_sim` and the exact optimum of
`orchestrator.research.gang_optimum`, Wu et al.'s "Can't Be Late" model with nodes):

- `work_h` is hours of work of the *whole* gang. A gang of k nodes (elastic, `min_nodes <= k <= N`)
  progresses at k/N of the full gang's rate, and costs k node prices; a rigid gang always has k = N.
  So per unit of work an elastic run costs the same as a full one: fewer nodes cost only time.
- Every launch (spot or on-demand, and every change of a spot gang's size, which needs a new
  rendezvous from rank 0's checkpoint) costs the restart overhead d before it progresses.
- A spot gang of k nodes in zone z lives while z can hold k nodes (`free[z] >= k`); when it can not,
  the gang has lost nodes and stops (rigid: all of it; elastic: it can go on with fewer after a new
  rendezvous, which is a new launch). On-demand always holds N nodes.

`free[z]` counts the nodes the job could hold in zone z now *including those it holds*: a whole gang
of k in z reads `free[z] >= k`; a gang that lost a node reads less. This is what a count trace gives
(`data[i]` = how many nodes could be had) and what the live loop sees (nodes it holds + capacity left).

Three policies share the types: `decide` (orch's default), `relaunch_on_any_preemption` (SkyPilot's
managed jobs) and `gang_uniform_progress` (Wu et al.'s Uniform Progress for a gang). Pure: no I/O,
no clock, deterministic (ties between zones broken by name).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.core.policy.base import EPS_H

# Tick-rounded comparisons must not flip on float noise (as `simple._TICK_EPS`).
_TICK_EPS = 1e-7

# The share of the slack R0 - C0 the default may spend waiting before it follows the Uniform Progress
# line: its line starts at t = WAIT_SHARE * (R0 - C0) and reaches C0 at the deadline (0 is Uniform
# Progress's line, 1 the point of no return). Chosen leave-one-dataset-out (docs/policy.md, "Gangs").
WAIT_SHARE = 0.5


class GangMode(StrEnum):
    WAITING = "waiting"
    SPOT = "spot"
    ON_DEMAND = "on-demand"


@dataclass(frozen=True, slots=True)
class GangState:
    """What the gang runs now. `nodes`: spot nodes held (N for a rigid gang); `zone`: spot only.

    `overhead_left_h`: restart overhead the running gang still owes (0 once productive). A rigid gang
    that lost a node has stopped: the caller reports it as WAITING. An elastic one may be reported as
    SPOT with its nodes; `free[zone] < nodes` then says it lost some.
    """

    mode: GangMode = GangMode.WAITING
    zone: str | None = None
    nodes: int = 0
    overhead_left_h: float = 0.0

    @property
    def productive(self) -> bool:
        return self.mode is not GangMode.WAITING and self.overhead_left_h <= 1e-3 / 3600.0


WAITING = GangState()


@dataclass(frozen=True, slots=True)
class GangFacts:
    """One gang at one moment; hours since submission (Wu et al.'s letters in brackets)."""

    nodes: int  # N
    min_nodes: int  # N for a rigid gang; min_nodes..N for an elastic one
    work_h: float  # C0: hours of whole-gang work
    done_h: float  # work done and safe (rank 0's checkpoint)
    elapsed_h: float  # t
    deadline_h: float | None  # R0: submission to deadline; None = no deadline
    overhead_h: float  # d
    free: Mapping[str, int]  # zone -> spot nodes the job could hold there now (see the module doc)
    spot_price: float  # per node-hour
    on_demand_price: float  # per node-hour
    state: GangState = WAITING
    tick_h: float = 0.0  # decision period; > 0: deadline arithmetic in whole ticks

    def __post_init__(self) -> None:
        if not 1 <= self.min_nodes <= self.nodes:
            raise ValueError(f"min_nodes must be between 1 and nodes ({self.nodes}), got {self.min_nodes}")

    @property
    def work_left_h(self) -> float:  # C(t)
        return max(0.0, self.work_h - self.done_h)

    @property
    def time_left_h(self) -> float | None:  # R(t)
        return None if self.deadline_h is None else self.deadline_h - self.elapsed_h

    @property
    def finished(self) -> bool:
        return self.work_left_h <= EPS_H


class GangAction(StrEnum):
    WAIT = "wait"
    SPOT = "spot"
    ON_DEMAND = "on-demand"


@dataclass(frozen=True, slots=True)
class GangDecision:
    """Wait, run a spot gang of `nodes` in `zone`, or run all N on on-demand (`nodes` = N)."""

    action: GangAction
    zone: str | None = None
    nodes: int = 0
    reason: str = field(default="", compare=False)

    def launches(self, state: GangState, free: Mapping[str, int]) -> bool:
        """Does carrying this out start a new gang (and pay d), rather than keep the one running?"""
        if self.action is GangAction.WAIT:
            return False
        if self.action is GangAction.ON_DEMAND:
            return state.mode is not GangMode.ON_DEMAND
        return not _intact(state, free) or (state.zone, state.nodes) != (self.zone, self.nodes)


GangPolicy = Callable[[GangFacts], GangDecision]


def _wait(reason: str) -> GangDecision:
    return GangDecision(GangAction.WAIT, reason=reason)


def _on_demand(f: GangFacts, reason: str) -> GangDecision:
    return GangDecision(GangAction.ON_DEMAND, nodes=f.nodes, reason=reason)


def _intact(state: GangState, free: Mapping[str, int]) -> bool:
    """A spot gang that still holds all its nodes."""
    return state.mode is GangMode.SPOT and state.zone is not None and free.get(state.zone, 0) >= state.nodes > 0


def _keep(state: GangState, reason: str) -> GangDecision:
    return GangDecision(GangAction.SPOT, state.zone, state.nodes, reason)


def best_spot(f: GangFacts, min_nodes: int | None = None) -> GangDecision | None:
    """The spot gang to launch now: the zone with the most free nodes (headroom against the next
    reclamation; ties: the current zone, then by name), with min(N, free) nodes; None if no zone
    can hold `min_nodes` (default: the facts' own)."""
    need = f.min_nodes if min_nodes is None else min_nodes
    zones = [z for z, n in f.free.items() if n >= need]
    if not zones:
        return None
    zone = min(zones, key=lambda z: (-f.free[z], z != f.state.zone, z))
    return GangDecision(GangAction.SPOT, zone, min(f.nodes, f.free[zone]), "spot")


def past_point_of_no_return(f: GangFacts, overheads: int = 1) -> bool:
    """Once the work left plus `overheads` launches no longer fits strictly in the time left (whole
    ticks when `tick_h` > 0: need rounded up, time left rounded down): `simple.past_point_of_no_return`
    for a gang, whose on-demand run does the whole gang's work at the full rate."""
    left = f.time_left_h
    if left is None:
        return False
    need = f.work_left_h + overheads * f.overhead_h
    if f.tick_h > 0:
        return math.ceil(need / f.tick_h - _TICK_EPS) >= math.floor(left / f.tick_h + _TICK_EPS)
    return need >= left - EPS_H


def safety_net(f: GangFacts) -> GangDecision | None:
    """The net every deadline-aware gang policy shares (Wu et al. section 4, per gang).

    Past the point of no return: on-demand, except that a productive, whole spot gang of all N nodes
    is kept (if it is lost now, an on-demand launch still has exactly the time it needs; a smaller
    elastic gang is too slow to be kept). Not on spot and with no room left for one more lost spot
    attempt (C + 2d): on-demand too.
    """
    if past_point_of_no_return(f, 1):
        s = f.state
        if _intact(s, f.free) and s.productive and s.nodes == f.nodes:
            return _keep(s, "point of no return: keeping a productive whole gang")
        return _on_demand(f, "point of no return")
    if not _intact(f.state, f.free) and past_point_of_no_return(f, 2):
        return _on_demand(f, "no room for another lost spot attempt")
    return None


def _line(f: GangFacts, at_h: float, wait_share: float) -> float:
    """Work due at `at_h` on a line from (wait_share * slack, 0) to (R0, C0); wait_share 0: Uniform
    Progress's line C0 * t / R0."""
    assert f.deadline_h is not None
    start = wait_share * max(0.0, f.deadline_h - f.work_h)
    span = f.deadline_h - start
    if span <= EPS_H:
        return f.work_h
    return f.work_h * min(1.0, max(0.0, at_h - start) / span)


def _progress_rule(f: GangFacts, wait_share: float, min_nodes: int, grow: bool = False) -> GangDecision:
    """Uniform Progress's rules on a line (the authors' `rc_cr_threshold`), for a gang: spot whenever
    a gang can be had; a whole spot gang is kept until it loses a node; idle and behind the line,
    on-demand; on on-demand, stay while no spot gang can be had or the work done is not ahead of the
    line at t + 2d (hysteresis)."""
    if f.deadline_h is None:
        return _spot_only(f, min_nodes)
    if f.spot_price >= f.on_demand_price:
        return _on_demand(f, "spot is not cheaper than on-demand")
    net = safety_net(f)
    if net is not None:
        return net
    spot = best_spot(f, min_nodes)
    if _intact(f.state, f.free):
        behind = f.done_h < _line(f, f.elapsed_h, wait_share) - EPS_H
        if grow and behind and spot is not None and spot.nodes > f.state.nodes:
            return GangDecision(GangAction.SPOT, spot.zone, spot.nodes, "growing the gang: behind the line")
        return _keep(f.state, "keeping the spot gang")
    if f.state.mode is GangMode.ON_DEMAND:
        ahead = f.done_h > _line(f, f.elapsed_h + 2 * f.overhead_h, wait_share) + EPS_H
        if spot is not None and ahead:
            return spot
        return _on_demand(f, "on-demand until spot returns and the work is ahead of the line")
    if spot is not None:
        return spot
    if f.done_h < _line(f, f.elapsed_h, wait_share) - EPS_H:
        return _on_demand(f, "behind the line with no spot gang")
    return _wait("no spot gang; ahead of the line")


def _spot_only(f: GangFacts, min_nodes: int) -> GangDecision:
    if f.finished:
        return _wait("finished")
    if _intact(f.state, f.free):
        return _keep(f.state, "keeping the spot gang")
    spot = best_spot(f, min_nodes)
    return spot if spot is not None else _wait("no spot gang")


def decide(f: GangFacts, *, wait_share: float = WAIT_SHARE, grow: bool = True) -> GangDecision:
    """orch's default gang decision.

    Uniform Progress's rules (and the safety net), on a line that lets the gang spend the first
    `wait_share` of its slack waiting for spot before it must keep pace: a gang's spot comes back
    whole only after long outages, and Uniform Progress's line sends it to on-demand in the first
    outage, and keeps it there until it is ahead again. Elastic gangs (`min_nodes < N`) run on as
    many nodes as a zone holds, from `min_nodes` up; a running gang is kept while the work is ahead
    of the line, and grown (relaunched on more nodes) once it falls behind: growing costs d on every
    node and saves only time, which matters only when time is short. `grow=False` never grows.
    """
    if f.finished:
        return _wait("finished")
    return _progress_rule(f, wait_share, f.min_nodes, grow)


def gang_uniform_progress(f: GangFacts) -> GangDecision:
    """Gang Uniform Progress: Wu et al.'s Uniform Progress (NSDI'24 section 5.2, `rc_cr_threshold`)
    where "spot available" means a zone holds a gang (N nodes, or min_nodes for an elastic job)."""
    if f.finished:
        return _wait("finished")
    return _progress_rule(f, 0.0, f.min_nodes)


def relaunch_on_any_preemption(f: GangFacts) -> GangDecision:
    """SkyPilot's managed jobs (`sky jobs launch --use-spot` with `num_nodes = N`): always spot, all N
    nodes; any lost node relaunches the whole cluster, waiting while no zone can hold N. No deadline
    and no on-demand fallback: SkyPilot's managed jobs have none (SkyServe's
    `dynamic_ondemand_fallback` is for serving replicas), so the deadline can be missed."""
    return _spot_only(f, f.nodes) if not f.finished else _wait("finished")


def relaunch_with_deadline_net(f: GangFacts) -> GangDecision:
    """Relaunch-on-any-preemption under the deadline: SkyPilot's rule, with the safety net above it
    (on-demand from the point of no return, as Wu et al.'s greedy). Not SkyPilot's own behaviour: a
    baseline that meets deadlines, to compare costs with."""
    if f.finished:
        return _wait("finished")
    if f.deadline_h is not None:
        net = safety_net(f)
        if net is not None:
            return net
        if f.state.mode is GangMode.ON_DEMAND:
            return _on_demand(f, "on-demand once the point of no return is passed")
    return _spot_only(f, f.nodes)


GANG_POLICIES: dict[str, GangPolicy] = {
    "gang": decide,
    "relaunch-on-any-preemption": relaunch_on_any_preemption,
    "relaunch-with-deadline-net": relaunch_with_deadline_net,
    "gang-uniform-progress": gang_uniform_progress,
}
