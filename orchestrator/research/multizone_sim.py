"""The fast multi-zone simulator: one task, several aligned zone traces, a multi-zone policy.

The single-zone fast path (`orchestrator.research.fastsim`) in the same units and order, with zones:

1. At tick i the interval `[i-1, i)` is realised: a live instance pays what is left of its overhead,
   then works, capped at the work left; the interval is billed whole at its market's price.
2. A spot instance whose zone reads 0 at tick i is reclaimed (the task sees that zone unavailable).
3. The policy decides for `[i, i+1)`, as often as it needs within the tick: a spot launch in a zone
   that reads 0 fails (free, as on AWS and GCE) and the policy is asked again, now knowing that zone
   is unavailable; probes it asks for are made (each billed `probe_cost`), then it is asked again.
   A launch in another region than the checkpoint's adds the copy's transfer time to the overhead d
   and its egress fee to the cost (`MoveCosts`); on-demand runs in the checkpoint's region.

The policy never sees a trace: only what launches, running instances and probes have shown
(`ZoneSeen`), exactly what the live loop can know. Costs are in spot-price hours (the paper's
accounting, `Outcome.cost`), egress and probes included. Pure: arrays in, a record out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.core.policy.base import Choice, Situation, SpotHistory
from orchestrator.core.policy.multizone_base import (
    MoveCosts,
    MultiPolicy,
    MultiSituation,
    Placement,
    Zone,
    ZoneSeen,
    any_history,
)
from orchestrator.research.fastsim import Setup
from vocab import Market

_DONE_EPS_S = 1e-3


@dataclass(frozen=True, slots=True)
class MultiOutcome:
    """One simulated task: cost (spot-price hours, egress and probes included) and how it went."""

    cost: float
    egress: float
    probes: int
    launches: int
    moves: int  # launches in another region than the checkpoint's
    preemptions: int
    od_h: float  # billed on-demand hours
    finish_h: float | None
    deadline_met: bool


class _Task:
    """Mutable state of one run, so that `run` reads as the loop above."""

    def __init__(self, setup: Setup, zones: Sequence[Zone], moves: MoveCosts, probe_cost: float,
                 seen: Sequence[ZoneSeen] | None) -> None:
        self.setup, self.zones, self.moves, self.probe_cost = setup, tuple(zones), moves, probe_cost
        self.gap = setup.gap_s
        self.work_s, self.d_s = setup.task_h * 3600, setup.overhead_h * 3600
        self.done = self.owed = 0.0
        self.market: Market | None = None
        self.zone: int | None = None
        self.home: int | None = None
        self.seen = tuple(seen) if seen is not None else tuple(ZoneSeen() for _ in zones)
        self.history: SpotHistory | None = SpotHistory()
        self.cost = self.egress = 0.0
        self.probes = self.launches = self.moves_made = self.preemptions = 0
        self.od_ticks = 0
        self.finish_s: float | None = None

    def realise(self, tick: int) -> None:
        if self.market is None:
            return
        productive = max(self.gap - self.owed, 0.0)
        paid = self.gap - productive
        self.owed = 0.0 if self.owed - paid < _DONE_EPS_S else self.owed - paid
        productive = min(productive, self.work_s - self.done)
        self.done += productive
        on_demand = self.market is Market.ON_DEMAND
        self.cost += self.gap / 3600 * (self.setup.price_ratio if on_demand else 1.0)
        self.od_ticks += on_demand
        if self.done >= self.work_s and self.finish_s is None:
            self.finish_s = (tick - 1) * self.gap + paid + productive

    def look(self, zone: int, available: bool) -> None:
        self.seen = (*self.seen[:zone], self.seen[zone].look(available), *self.seen[zone + 1 :])

    def reclaim(self, tick: int, now: Sequence[bool]) -> None:
        if self.market is Market.SPOT and self.zone is not None:
            if now[self.zone]:
                self.look(self.zone, True)
            else:
                z = self.zone
                self.seen = (*self.seen[:z], self.seen[z].lost(tick * self.gap / 3600), *self.seen[z + 1 :])
                self.market, self.zone = None, None
                self.preemptions += 1

    def situation(self, tick: int) -> MultiSituation:
        s = self.setup
        task = Situation(
            elapsed_h=tick * self.gap / 3600, deadline_h=s.deadline_h, work_h=s.task_h, done_h=self.done / 3600,
            overhead_h=s.overhead_h, price_ratio=s.price_ratio, current=self.market,
            spot_available=any(z.now is not False for z in self.seen), tick_h=self.gap / 3600,
            overhead_left_h=self.owed / 3600, history=self.history)
        return MultiSituation(task, self.zones, self.seen, self.zone, self.home, self.moves, self.probe_cost)

    def decide(self, tick: int, policy: MultiPolicy, now: Sequence[bool]) -> None:
        probed = False
        for _ in range(len(self.zones) + 3):
            p = policy(self.situation(tick))
            if p.probes and not probed:
                probed = True
                for z in p.probes:
                    self.probes += 1
                    self.cost += self.probe_cost
                    self.look(z, now[z])
                continue
            if p.choice is Choice.SPOT and p.zone is not None and self.seen[p.zone].now is not False \
                    and not now[p.zone]:
                self.look(p.zone, False)  # a failed launch: free, and now known
                continue
            self.act(p)
            return
        self.act(Placement(Choice.WAIT))

    def act(self, p: Placement) -> None:
        if p.choice is Choice.WAIT or (p.choice is Choice.SPOT and (p.zone is None or self.seen[p.zone].now is False)):
            self.market, self.zone = None, None
            return
        if p.choice is Choice.ON_DEMAND:
            if self.market is Market.ON_DEMAND:
                return
            where = self.home if self.home is not None else (p.zone or 0)
            self.start(Market.ON_DEMAND, where, self.d_s)
            return
        assert p.zone is not None
        if self.market is Market.SPOT and self.zone == p.zone:
            return
        extra = self.moves.transfer(self.home, p.zone) * 3600
        fee = self.moves.fee(self.home, p.zone)
        self.moves_made += self.home is not None and self.zones[self.home].region != self.zones[p.zone].region
        self.cost += fee
        self.egress += fee
        self.look(p.zone, True)
        self.start(Market.SPOT, p.zone, self.d_s + extra)

    def start(self, market: Market, zone: int, overhead_s: float) -> None:
        self.market, self.zone, self.home, self.owed = market, zone, zone, overhead_s
        self.launches += 1

    def close_tick(self, tick: int) -> None:
        tick_h = self.gap / 3600
        self.history = any_history(self.history, self.seen, tick_h)
        self.seen = tuple(z.close_tick(tick * tick_h, tick_h) for z in self.seen)

    def outcome(self) -> MultiOutcome:
        finish_h = None if self.finish_s is None else self.finish_s / 3600
        d = self.setup.deadline_h
        return MultiOutcome(
            cost=self.cost, egress=self.egress, probes=self.probes, launches=self.launches, moves=self.moves_made,
            preemptions=self.preemptions, od_h=self.od_ticks * self.gap / 3600, finish_h=finish_h,
            deadline_met=finish_h is not None and (d is None or finish_h <= d + 1e-9))


def run(policy: MultiPolicy, availability: npt.NDArray[np.bool_], setup: Setup, zones: Sequence[Zone],
        moves: MoveCosts, *, probe_cost: float = 1.0 / 60.0, seen: Sequence[ZoneSeen] | None = None) -> MultiOutcome:
    """Simulate one task under `policy`; `availability` is `[zone, tick]`, aligned across zones.

    The task runs until its work is done or the trace ends (past its deadline it keeps going, so a
    miss is seen, not hidden). `probe_cost` is one probe's price (default: a minute of spot). `seen`
    is what was known of the zones at submission (default: nothing), e.g. a controller's memory of
    what other jobs saw (`memory`).
    """
    avail = np.asarray(availability, dtype=bool)
    columns: list[list[bool]] = avail.T.tolist()
    task = _Task(setup, zones, moves, probe_cost, seen)
    ticks = avail.shape[1]
    for tick in range(ticks + 1):
        if tick > 0:
            task.realise(tick)
            if task.finish_s is not None:
                break
        now = columns[tick] if tick < ticks else [False] * len(zones)
        task.reclaim(tick, now)
        if tick == ticks:
            break
        task.decide(tick, policy, now)
        task.close_tick(tick)
    return task.outcome()


def memory(past: npt.NDArray[np.bool_], gap_s: float) -> tuple[ZoneSeen, ...]:
    """What a controller that watched every zone through `past` (`[zone, tick]`, the ticks just
    before submission) knows at submission, with times relative to it (negative)."""
    tick_h = gap_s / 3600
    ticks = past.shape[1]
    out = []
    for row in np.asarray(past, dtype=bool).tolist():
        s = ZoneSeen()
        for i, up in enumerate(row):
            s = s.look(bool(up)).close_tick((i - ticks) * tick_h, tick_h)
        out.append(s)
    return tuple(out)
