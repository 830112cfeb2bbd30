"""The omniscient optimum: the cheapest schedule for a task when the whole trace is known in advance.

The lower bound every benchmark reports against; it never runs in the live loop. The paper solves an
integer program for it (Wu et al., "Can't Be Late", NSDI 2024, section 6; `ideal_ilp_overhead.py` in
the authors' simulator, github.com/Michaelvll/skypilot-spot-strategy). Its overhead constraint is an
aggregate (total billed time >= C + d x number of starts), a slight relaxation of the simulator it is
compared with. This module solves the simulator's own model exactly instead, with a dynamic program,
so that the bound and the policies are measured in one accounting (`orchestrator.research.fastsim`):

- time advances in ticks; each tick is idle, spot (only where the zone reads 1) or on-demand, billed
  whole at 1 or k per hour; a change of market (or of zone) other than to idle starts a new instance,
  which first pays the restart overhead d, then progresses one hour of work per hour;
- the task must be done at a tick no later than the deadline.

The state is (tick, market and zone, overhead still owed, time lost so far), where *time lost* is the
elapsed time not turned into work: idle ticks and overhead. Work done is then `t - lost`, and lost
time never exceeds the slack `D - C`, which keeps the table small (a few hundred cells a state). All
windows are solved at once, vectorised over numpy arrays. Pure: arrays in, arrays out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.research.fastsim import Setup

Floats = npt.NDArray[np.floating]  # the DP tables (single precision)
Vector = npt.NDArray[np.float64]  # results, one value per window
_INF = np.inf
# Single precision halves the memory traffic of the table; costs of a few hundred keep ~1e-5 resolution,
# and on-demand work is a whole number of units, exact in float32.
_DTYPE = np.float32
_BATCH = 256  # windows solved together: large enough to vectorise, small enough to stay in cache


@dataclass(frozen=True, slots=True)
class Optimum:
    """Per window: minimum cost (spot-price hours, paper accounting) and its work split; inf = infeasible."""

    cost: Vector
    od_work_h: Vector
    spot_work_h: Vector

    @property
    def feasible(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.cost)


@dataclass(frozen=True, slots=True)
class _Grid:
    """The model in integer time units `unit_ms` (the gcd of tick and overhead), so sums are exact."""

    unit_ms: int
    gap: int  # tick length in units
    overhead: int
    work: float  # C in units (need not be whole)
    ticks: int  # the task must be done by this tick
    max_lost: int  # slack in units: lost time beyond it cannot finish in time
    owed: tuple[int, ...]  # overhead still owed at a tick boundary: 0 first, then the positive values

    @staticmethod
    def of(setup: Setup) -> _Grid:
        if setup.deadline_h is None:
            raise ValueError("the optimum needs a deadline")
        gap_ms, over_ms = round(setup.gap_s * 1000), round(setup.overhead_h * 3_600_000)
        unit = math.gcd(gap_ms, over_ms) if over_ms else gap_ms
        gap, over = gap_ms // unit, over_ms // unit
        work = setup.task_h * 3_600_000 / unit
        ticks = math.floor(setup.deadline_h * 3_600_000 / gap_ms + 1e-9)
        max_lost = math.floor(ticks * gap - work + 1e-9)
        owed = [0]
        left = over - gap
        while left > 0:
            owed.append(left)
            left -= gap
        return _Grid(unit, gap, over, work, ticks, max_lost, tuple(owed))


def solve(availability: npt.NDArray[np.bool_], setup: Setup) -> Optimum:
    """Exact minimum cost per window. `availability` is `[window, tick]` or `[window, zone, tick]`."""
    avail = np.asarray(availability, dtype=bool)
    if avail.ndim == 2:
        avail = avail[:, None, :]
    grid = _Grid.of(setup)
    windows = avail.shape[0]
    if grid.max_lost < 0:
        nan = np.full(windows, _INF)
        return Optimum(nan, nan.copy(), nan.copy())
    if avail.shape[2] < grid.ticks:
        pad = np.zeros((windows, avail.shape[1], grid.ticks - avail.shape[2]), dtype=bool)
        avail = np.concatenate([avail, pad], axis=2)
    parts = [_Table(grid, setup, avail[i : i + _BATCH]).run() for i in range(0, windows, _BATCH)]
    return Optimum(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("cost", "od_work_h", "spot_work_h")))


class _Table:
    """The DP table for one batch: cost and on-demand work per (window, state, lost time)."""

    def __init__(self, grid: _Grid, setup: Setup, avail: npt.NDArray[np.bool_]) -> None:
        self.grid, self.avail = grid, avail
        windows, zones = avail.shape[0], avail.shape[1]
        self.zones = zones
        # State 0 is idle; then market blocks of len(owed) states: block 0 on-demand, 1+z spot in zone z.
        self.n_owed = len(grid.owed)
        self.states = 1 + (1 + zones) * self.n_owed
        shape = (self.states, windows, grid.max_lost + 1)  # state-major: each state's table is contiguous
        self.cost = np.full(shape, _INF, dtype=_DTYPE)
        self.cost[0, :, 0] = 0.0
        self.od = np.zeros(shape, dtype=_DTYPE)  # on-demand work (units) along the cheapest path to each cell
        gap_h = setup.gap_s / 3600
        self.price = [gap_h * setup.price_ratio] + [gap_h] * zones  # per block, one tick
        self.best = np.full(windows, _INF)
        self.best_od = np.zeros(windows)

    def state(self, block: int, owed_index: int) -> int:
        return 1 + block * self.n_owed + owed_index

    def run(self) -> Optimum:
        g = self.grid
        for tick in range(g.ticks):
            self.step(tick)
            self.harvest(tick + 1)
        od_h = self.best_od * g.unit_ms / 3_600_000
        total_h = g.work * g.unit_ms / 3_600_000
        spot_h = np.where(np.isfinite(self.best), total_h - od_h, _INF)
        return Optimum(self.best, np.where(np.isfinite(self.best), od_h, _INF), spot_h)

    def step(self, tick: int) -> None:
        """One tick: every state moves to idle, continues, or launches an instance."""
        g = self.grid
        cost, od = self.cost, self.od
        new = _Next(cost.shape)
        blocks = 1 + self.zones
        # The cheapest cell of each market block (any overhead owed), then of everything but one block.
        block_min = [_min_pairs([(cost[s], od[s]) for s in self._block(b)]) for b in range(blocks)]
        idle = (cost[0], od[0])
        new.move(0, _min_pairs([idle, *block_min]), g.gap, 0.0, 0)
        for block in range(blocks):
            price = self.price[block]
            work_on_od = block == 0
            # Continue: pay what is still owed, progress the rest of the tick.
            for k, owed in enumerate(g.owed):
                lost = min(g.gap, owed)
                nxt = g.owed.index(owed - g.gap) if owed > g.gap else 0
                gained = (g.gap - lost) if work_on_od else 0
                new.move(self.state(block, nxt), (cost[self.state(block, k)], od[self.state(block, k)]),
                         lost, price, gained)
            # Launch: from idle or any other block, paying a fresh overhead.
            source = _min_pairs([idle] + [m for b, m in enumerate(block_min) if b != block])
            lost = min(g.gap, g.overhead)
            gained = (g.gap - lost) if work_on_od else 0
            new.move(self.state(block, g.owed.index(max(g.overhead - g.gap, 0))), source, lost, price, gained)
            if block > 0:  # spot in a zone that has no capacity this tick: none of it happened
                gone = ~self.avail[:, block - 1, tick]
                for s in self._block(block):
                    new.cost[s][gone] = _INF
        self.cost, self.od = new.finish()

    def _block(self, block: int) -> range:
        first = self.state(block, 0)
        return range(first, first + self.n_owed)

    def harvest(self, tick: int) -> None:
        """Cells whose work reached C at this tick are finished: keep the cheapest, drop them all."""
        g = self.grid
        limit = math.floor(tick * g.gap - g.work + 1e-9)
        if limit < 0:
            return
        limit = min(limit, g.max_lost)
        lost = np.arange(limit + 1)
        excess = tick * g.gap - lost - g.work  # work done past C in the last tick (billed, unused)
        for s in range(1, self.states):
            c = self.cost[s, :, : limit + 1]
            o = self.od[s, :, : limit + 1]
            if s <= self.n_owed:  # an on-demand state finished on on-demand: the excess was not work
                o = o - excess
            j = np.argmin(c, axis=1)
            rows = np.arange(c.shape[0])
            cj = c[rows, j]
            better = cj < self.best
            self.best = np.where(better, cj, self.best)
            self.best_od = np.where(better, o[rows, j], self.best_od)
        self.cost[:, :, : limit + 1] = _INF


Pair = tuple[Floats, Floats]


class _Next:
    """The table of the next tick, filled by moves; a state's first move writes, later ones relax."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.cost = np.empty(shape, dtype=_DTYPE)
        self.od = np.empty(shape, dtype=_DTYPE)
        self.touched = [False] * shape[0]

    def move(self, dst: int, source: Pair, lost: int, price: float, gained: int) -> None:
        """Cells of `source` arrive at `dst` having lost `lost` units more, paid `price`, done `gained` on OD."""
        width = self.cost.shape[2]
        dc, do = self.cost[dst], self.od[dst]
        if not self.touched[dst]:
            self.touched[dst] = True
            dc[:, : min(lost, width)] = _INF
            do[:, : min(lost, width)] = 0.0
            if lost < width:
                np.add(source[0][:, : width - lost], price, out=dc[:, lost:])
                np.add(source[1][:, : width - lost], gained, out=do[:, lost:])
            return
        if lost >= width:
            return
        cand = source[0][:, : width - lost] + price
        better = cand < dc[:, lost:]
        np.copyto(dc[:, lost:], cand, where=better)
        np.copyto(do[:, lost:], source[1][:, : width - lost] + gained, where=better)

    def finish(self) -> Pair:
        for s, done in enumerate(self.touched):
            if not done:
                self.cost[s] = _INF
                self.od[s] = 0.0
        return self.cost, self.od


def _min_pairs(pairs: list[Pair]) -> Pair:
    """Cell-wise cheapest of several (cost, on-demand work) tables, carrying the work along."""
    c, o = pairs[0]
    for pc, po in pairs[1:]:
        better = pc < c
        c = np.minimum(c, pc)
        o = np.where(better, po, o)
    return c, o
