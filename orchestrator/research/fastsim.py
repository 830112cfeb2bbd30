"""The fast, policy-only simulator: one task against one or more availability traces, tick by tick.

It calls the same registered policy functions as the live loop, on `Situation`s built the way the
live loop builds them, but with nothing else around them (no store, no provider, no clock), so that
the 2,400 windows of the paper's Table 3 run in seconds. It is the faithful re-implementation of the
authors' simulator (Wu et al., "Can't Be Late", NSDI 2024; `sky_spot/strategies/strategy.py` `step()`
and `sky_spot/env.py` `TraceEnv` of the can't-be-late simulator, vendored in FrontierCS/Frontier-CS
`research/problems/cant_be_late/common/cant-be-late-simulator`), in its units (seconds) and order:

1. At tick i the work of the interval `[i-1, i)` is realised: a live instance first pays what is
   left of its restart overhead, then progresses one second of work per second, capped at the work
   left. The interval is billed in full at its market's price, however little of it was used.
2. A spot instance whose zone reads 0 at tick i is reclaimed (its progress is kept: the model
   checkpoints continuously).
3. The policy chooses for `[i, i+1)`; any change of market that is not "wait" starts a new instance
   and with it a new restart overhead `d`.

Both accountings are returned: the paper's (`cost`, every tick billed whole, spot = 1 per hour and
on-demand = k per hour) and orch's ledger (`ledger_cost`: each attempt billed per second from launch
to end, one minute minimum), which is what the full loop on the `sim` provider reports.
Pure: numpy arrays in, a frozen record out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.core.policy.base import Choice, Policy, Situation, SpotHistory
from providers.sim import DEFAULT_ON_DEMAND_PRICE, DEFAULT_SPOT_PRICE
from vocab import Billing, Market

# p3.2xlarge in us-west-2 as priced in the paper's simulator (`sky_spot/utils.py` COSTS): the sim
# provider's defaults, so the fast path and the full loop price alike by construction.
PAPER_ON_DEMAND_PRICE = DEFAULT_ON_DEMAND_PRICE
PAPER_SPOT_PRICE = DEFAULT_SPOT_PRICE
PAPER_PRICE_RATIO = PAPER_ON_DEMAND_PRICE / PAPER_SPOT_PRICE
_DONE_EPS_S = 1e-3  # the simulator's own tolerance on overhead seconds


@dataclass(frozen=True, slots=True)
class Setup:
    """One task of the paper's model: C, D, d in hours, k, and the trace's tick length."""

    task_h: float
    deadline_h: float | None
    overhead_h: float
    price_ratio: float = PAPER_PRICE_RATIO
    gap_s: float = 600.0

    def on_demand_cost(self) -> float:
        """Cost of on-demand only in the paper's accounting: one launch, whole ticks billed."""
        need_s = self.task_h * 3600 + self.overhead_h * 3600
        ticks = -(-need_s // self.gap_s)
        return float(ticks) * self.gap_s / 3600 * self.price_ratio


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one simulated task cost and how it went. Costs are in spot-price hours (spot = 1/h)."""

    cost: float
    ledger_cost: float
    spot_work_h: float
    od_work_h: float
    spot_billed_h: float
    od_billed_h: float
    idle_h: float
    launches: int
    preemptions: int
    finish_h: float | None  # None: not finished within the trace
    deadline_met: bool


class _Ledger:
    """Per-attempt billing as orch's cost ledger does it: price x billed seconds of each attempt."""

    def __init__(self, price_ratio: float) -> None:
        self.total = 0.0
        self.billing = Billing()
        self.prices = {Market.SPOT: 1.0, Market.ON_DEMAND: price_ratio}
        self.open: tuple[Market, float] | None = None

    def start(self, market: Market, at_s: float) -> None:
        self.stop(at_s)
        self.open = (market, at_s)

    def stop(self, at_s: float) -> None:
        if self.open is not None:
            market, since = self.open
            self.total += self.billing.billed_seconds(at_s - since) / 3600 * self.prices[market]
            self.open = None


class _Run:
    """Mutable state of one simulation; kept in one place so that `run` reads as the paper's loop."""

    def __init__(self, setup: Setup, zones: npt.NDArray[np.bool_], history: SpotHistory | None) -> None:
        self.setup = setup
        # Per tick, per zone, as Python lists: a tick touches one or two zones, and numpy's per-call
        # overhead would dominate the whole simulation.
        self.columns: list[list[bool]] = zones.T.tolist()
        self.n_zones = zones.shape[0]
        self.gap = setup.gap_s
        self.work_s = setup.task_h * 3600
        self.overhead_s = setup.overhead_h * 3600
        self.done = 0.0
        self.overhead_left = 0.0
        self.market: Market | None = None
        self.zone = -1
        self.work = {Market.SPOT: 0.0, Market.ON_DEMAND: 0.0}
        self.billed = {Market.SPOT: 0, Market.ON_DEMAND: 0}
        self.idle_ticks = 0
        self.launches = 0
        self.preemptions = 0
        self.finish_s: float | None = None
        self.ledger = _Ledger(setup.price_ratio)
        self.history = history
        self.run_age = [0] * self.n_zones  # ticks each zone has been available

    def realise(self, tick: int) -> None:
        """Step 1: the interval `[tick-1, tick)` happened."""
        if self.market is None:
            self.idle_ticks += 1
            return
        start = (tick - 1) * self.gap
        productive = max(self.gap - self.overhead_left, 0.0)
        paid = self.gap - productive
        self.overhead_left -= paid
        if self.overhead_left < _DONE_EPS_S:
            self.overhead_left = 0.0
        productive = min(productive, self.work_s - self.done)
        self.done += productive
        self.work[self.market] += productive
        self.billed[self.market] += 1
        if self.done >= self.work_s and self.finish_s is None:
            self.finish_s = start + paid + productive
            self.ledger.stop(self.finish_s)

    def available(self, tick: int) -> list[bool]:
        if tick >= len(self.columns):
            return [False] * self.n_zones
        return self.columns[tick]

    def reclaim(self, tick: int, now: list[bool]) -> None:
        """Step 2: spot instances in zones that read 0 now are taken back."""
        self.run_age = [age + 1 if up else 0 for age, up in zip(self.run_age, now, strict=True)]
        if self.market is Market.SPOT and not now[self.zone]:
            self.ledger.stop(tick * self.gap)
            self.market, self.zone = None, -1
            self.preemptions += 1

    def act(self, tick: int, choice: Choice, now: list[bool]) -> None:
        """Step 3: carry out the policy's choice for `[tick, tick+1)`."""
        at = tick * self.gap
        if choice is Choice.WAIT:
            self.ledger.stop(at)
            self.market, self.zone = None, -1
            return
        target = Market.SPOT if choice is Choice.SPOT else Market.ON_DEMAND
        if target is self.market:
            return
        zone = -1
        if target is Market.SPOT:
            if not any(now):  # the launch would fail for lack of capacity: stay idle
                self.ledger.stop(at)
                self.market, self.zone = None, -1
                return
            # Placement: the zone whose current run of availability is longest (seen so far).
            zone = max(range(self.n_zones), key=lambda z: self.run_age[z] if now[z] else -1)
        self.market, self.zone = target, zone
        self.overhead_left = self.overhead_s
        self.launches += 1
        self.ledger.start(target, at)

    def situation(self, tick: int, spot_now: bool) -> Situation:
        s = self.setup
        return Situation(
            elapsed_h=tick * self.gap / 3600, deadline_h=s.deadline_h, work_h=s.task_h,
            done_h=self.done / 3600, overhead_h=s.overhead_h, price_ratio=s.price_ratio,
            current=self.market, spot_available=spot_now, tick_h=self.gap / 3600,
            overhead_left_h=self.overhead_left / 3600, history=self.history,
        )

    def outcome(self) -> Outcome:
        s = self.setup
        gap_h = self.gap / 3600
        spot_b, od_b = self.billed[Market.SPOT] * gap_h, self.billed[Market.ON_DEMAND] * gap_h
        finish_h = None if self.finish_s is None else self.finish_s / 3600
        met = finish_h is not None and (s.deadline_h is None or finish_h <= s.deadline_h + 1e-9)
        return Outcome(
            cost=spot_b + od_b * s.price_ratio, ledger_cost=self.ledger.total,
            spot_work_h=self.work[Market.SPOT] / 3600, od_work_h=self.work[Market.ON_DEMAND] / 3600,
            spot_billed_h=spot_b, od_billed_h=od_b, idle_h=self.idle_ticks * gap_h,
            launches=self.launches, preemptions=self.preemptions, finish_h=finish_h, deadline_met=met,
        )


def run(policy: Policy, availability: npt.NDArray[np.bool_], setup: Setup, *,
        prior: SpotHistory | None = None, track_history: bool = True) -> Outcome:
    """Simulate one task under `policy`; `availability` is `[tick]` (one zone) or `[zone, tick]`.

    The task runs until its work is done or the trace ends (a task past its deadline keeps going,
    so that what a miss costs is known). `prior` is availability seen before submission, if any;
    `track_history=False` skips building `Situation.history` for policies that do not read it.
    """
    zones = np.atleast_2d(np.asarray(availability, dtype=bool))
    state = _Run(setup, zones, (prior or SpotHistory()) if track_history else None)
    gap_h = setup.gap_s / 3600
    for tick in range(zones.shape[1] + 1):
        if tick > 0:
            state.realise(tick)
            if state.finish_s is not None:
                break
        now = state.available(tick)
        state.reclaim(tick, now)
        if tick == zones.shape[1]:
            state.ledger.stop(tick * setup.gap_s)
            break
        spot_now = any(now)
        if state.history is not None:
            state.history = state.history.observe(spot_now, gap_h)
        state.act(tick, policy(state.situation(tick, spot_now)), now)
    return state.outcome()
