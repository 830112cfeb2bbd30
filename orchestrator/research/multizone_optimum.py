"""The exact multi-zone optimum: the cheapest schedule over several zones when every trace is known.

The lower bound of `bench/policy.py --multi`; it never runs in the live loop. The model is that of
`orchestrator.research.multizone_sim` (and of `orchestrator.research.fastsim` with one zone):

- time advances in ticks; each tick the task is idle, on on-demand (in the region that holds its
  checkpoint), or on spot in a zone that reads 1 for that tick, billed whole at k or 1 per hour;
- any change other than to idle starts an instance, which first pays the restart overhead d, plus,
  when it starts in another region than the checkpoint's, the copy's transfer time and its egress fee
  (`MoveCosts`); the checkpoint is then in the new region. The first launch pays d only;
- the work must be done at a tick no later than the deadline.

As in `orchestrator.research.optimum`, the state is (tick, where the task is and what overhead it
still owes, time lost so far) with lost = elapsed time not turned into work, bounded by the slack.
"Where" is idle with the checkpoint in region r, on-demand in region r, or spot in zone z. Launch
moves are grouped by the checkpoint's region, so a tick costs O(regions x zones) array operations,
each vectorised over windows and lost time. Relaunching where the task already runs is allowed and
never better than staying (same price, more overhead), so it does not change the optimum.
Pure: arrays in, arrays out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce

import numpy as np
import numpy.typing as npt

from orchestrator.core.policy.multizone_base import MoveCosts, Zone
from orchestrator.research.fastsim import Setup

Table = npt.NDArray[np.float32]
_BATCH = 64


@dataclass(frozen=True, slots=True)
class _Grid:
    unit_s: int
    gap: int
    overhead: int
    work: float
    ticks: int
    max_lost: int
    owed: tuple[int, ...]  # overhead still owed at a tick boundary: 0 first


def _grid(setup: Setup, extra_s: Sequence[int]) -> _Grid:
    if setup.deadline_h is None:
        raise ValueError("the optimum needs a deadline")
    gap_s, over_s = round(setup.gap_s), round(setup.overhead_h * 3600)
    unit = reduce(math.gcd, [gap_s, over_s, *(over_s + e for e in extra_s)])
    gap, over = gap_s // unit, over_s // unit
    work = setup.task_h * 3600 / unit
    ticks = math.floor(setup.deadline_h * 3600 / gap_s + 1e-9)
    owed = {0}
    for o in {over, *((over_s + e) // unit for e in extra_s)}:
        left = o - gap
        while left > 0:
            owed.add(left)
            left -= gap
    return _Grid(unit, gap, over, work, ticks, math.floor(ticks * gap - work + 1e-9), tuple(sorted(owed)))


def solve(availability: npt.NDArray[np.bool_], setup: Setup, zones: Sequence[Zone], moves: MoveCosts) -> npt.NDArray[
        np.float64]:
    """Minimum cost per window (spot-price hours; inf = infeasible). `availability` is `[window, zone, tick]`."""
    avail = np.asarray(availability, dtype=bool)
    regions = sorted({z.region for z in zones})
    rep = [next(i for i, z in enumerate(zones) if z.region == r) for r in regions]
    transfer_s = [[round(moves.transfer_h[a][b] * 3600) for b in rep] for a in rep]
    grid = _grid(setup, sorted({t for row in transfer_s for t in row}))
    windows = avail.shape[0]
    if grid.max_lost < 0:
        return np.full(windows, np.inf)
    if avail.shape[2] < grid.ticks:
        pad = np.zeros((windows, avail.shape[1], grid.ticks - avail.shape[2]), dtype=bool)
        avail = np.concatenate([avail, pad], axis=2)
    egress = [[moves.egress[a][b] for b in rep] for a in rep]
    zone_region = [regions.index(z.region) for z in zones]
    out = [_Table(grid, setup, avail[i : i + _BATCH], zone_region, transfer_s, egress).run()
           for i in range(0, windows, _BATCH)]
    return np.concatenate(out)


class _Table:
    """Cost per (state, window, lost units) for one batch of windows, advanced tick by tick."""

    def __init__(self, grid: _Grid, setup: Setup, avail: npt.NDArray[np.bool_], zone_region: list[int],
                 transfer_s: list[list[int]], egress: list[list[float]]) -> None:
        self.g, self.avail, self.zone_region = grid, avail, zone_region
        self.n_regions, self.n_zones, self.n_owed = len(transfer_s), avail.shape[1], len(grid.owed)
        # Idle states: one per region holding the checkpoint, and the last one before any launch.
        self.idle = list(range(self.n_regions + 1))
        base = self.n_regions + 1
        self.od = [[base + r * self.n_owed + j for j in range(self.n_owed)] for r in range(self.n_regions)]
        base += self.n_regions * self.n_owed
        self.spot = [[base + z * self.n_owed + j for j in range(self.n_owed)] for z in range(self.n_zones)]
        self.states = base + self.n_zones * self.n_owed
        self.cost = np.full((self.states, avail.shape[0], grid.max_lost + 1), np.inf, dtype=np.float32)
        self.cost[self.n_regions, :, 0] = 0.0  # idle, nothing launched yet
        gap_h = setup.gap_s / 3600
        self.spot_price, self.od_price = np.float32(gap_h), np.float32(gap_h * setup.price_ratio)
        # Launch overhead in units, from each checkpoint region (the last: no checkpoint) to each region.
        unit = grid.unit_s
        self.launch = [[grid.overhead + transfer_s[a][b] // unit for b in range(self.n_regions)]
                       for a in range(self.n_regions)] + [[grid.overhead] * self.n_regions]
        self.fee = [[float(x) for x in row] for row in egress] + [[0.0] * self.n_regions]
        self.best = np.full(avail.shape[0], np.inf)

    def run(self) -> npt.NDArray[np.float64]:
        for tick in range(self.g.ticks):
            self.step(tick)
            self.harvest(tick + 1)
        return self.best

    def _after(self, overhead: int) -> tuple[int, int]:
        """Units lost in the launch tick, and the owed-state index after it."""
        g = self.g
        return min(g.gap, overhead), g.owed.index(max(overhead - g.gap, 0))

    def step(self, tick: int) -> None:
        g, cost = self.g, self.cost
        new = np.full_like(cost, np.inf)
        src = [self._region_min(r) for r in range(self.n_regions)] + [cost[self.n_regions]]
        for r in range(self.n_regions + 1):  # idle: the checkpoint stays where it is
            _relax(new[self.idle[r]], src[r], g.gap, np.float32(0.0))
        for r in range(self.n_regions):
            for j, owed in enumerate(g.owed):  # on-demand goes on
                lost = min(g.gap, owed)
                nxt = g.owed.index(owed - g.gap) if owed > g.gap else 0
                _relax(new[self.od[r][nxt]], cost[self.od[r][j]], lost, self.od_price)
            lost, nxt = self._after(g.overhead)  # on-demand starts where the checkpoint is, or anywhere
            _relax(new[self.od[r][nxt]], np.minimum(src[r], src[self.n_regions]), lost, self.od_price)
        for z in range(self.n_zones):
            for j, owed in enumerate(g.owed):  # spot goes on
                lost = min(g.gap, owed)
                nxt = g.owed.index(owed - g.gap) if owed > g.gap else 0
                _relax(new[self.spot[z][nxt]], cost[self.spot[z][j]], lost, self.spot_price)
        for r in range(self.n_regions):  # spot starts in region r, from wherever the checkpoint is
            by_overhead: dict[int, list[int]] = {}
            for a in range(self.n_regions + 1):
                by_overhead.setdefault(self.launch[a][r], []).append(a)
            for overhead, sources in by_overhead.items():
                arriving = reduce(np.minimum, [src[a] + np.float32(self.fee[a][r]) for a in sources])
                lost, nxt = self._after(overhead)
                for z in range(self.n_zones):
                    if self.zone_region[z] == r:
                        _relax(new[self.spot[z][nxt]], arriving, lost, self.spot_price)
        for z in range(self.n_zones):  # no capacity this tick: none of it happened
            gone = ~self.avail[:, z, tick]
            for s in self.spot[z]:
                new[s][gone] = np.inf
        self.cost = new

    def _region_min(self, r: int) -> Table:
        """Cheapest cell over every state whose checkpoint is in region r."""
        states = [self.idle[r], *self.od[r]]
        states += [s for z in range(self.n_zones) if self.zone_region[z] == r for s in self.spot[z]]
        return np.asarray(self.cost[states].min(axis=0))

    def harvest(self, tick: int) -> None:
        """Cells whose work reached C by this tick are done: keep the cheapest, then drop them."""
        g = self.g
        limit = math.floor(tick * g.gap - g.work + 1e-9)
        if limit < 0:
            return
        limit = min(limit, g.max_lost)
        done = self.cost[:, :, : limit + 1]
        self.best = np.minimum(self.best, done.min(axis=(0, 2)).astype(np.float64))
        done[...] = np.inf


def _relax(dst: Table, source: Table, lost: int, price: np.float32) -> None:
    """Cells of `source` arrive in `dst` having lost `lost` more units and paid `price`: keep the cheaper."""
    width = dst.shape[1]
    if lost >= width:
        return
    np.minimum(dst[:, lost:], source[:, : width - lost] + price, out=dst[:, lost:])
