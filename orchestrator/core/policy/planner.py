"""Plans for orch's default policy: a Markov decision process over deadline, slack and spot's mood.

The state of a task is (steps to the deadline, slack, availability feature cell, market and overhead
still owed), where slack = time left - work left is what waiting and restarts consume and running
does not. The availability cell moves by `MarketModel.transitions()`; each step costs nothing idle,
1 on spot and k on on-demand (per hour, as in Wu et al., "Can't Be Late", NSDI 2024); a launch pays
the restart overhead d before any progress; the safety net of `orchestrator.core.policy.simple` is part
of the model, so a plan never counts on a schedule the net would forbid. Backward induction over
the steps gives, for every state, the action of least expected cost; the table of those actions is
the plan, and a policy only looks it up.

Solving takes up to about a second (`python bench/plan.py`), so plans are cached by their grid:
every task with the same deadline,
slack, overhead and price ratio (all the windows of a benchmark setup, every tick of a live task)
shares one. Pure: numpy only, no clock, no I/O.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.core.policy.base import Choice, Situation
from orchestrator.core.policy.market_model import N_FEATURES, STEP_H, MarketModel, available_cells, feature_of
from vocab import Market

_BIG = np.float32(1e6)  # the value of missing the deadline: never chosen while anything else exists
_MAX_SLACK_UNITS = 1000  # table size bound: slack beyond it plans as if it were this much
_ACTIONS = (Choice.WAIT, Choice.ON_DEMAND, Choice.SPOT)


@dataclass(frozen=True, slots=True)
class Grid:
    """The discretisation of one task shape: planning step and slack unit in seconds, and sizes."""

    step_s: int
    unit_s: int
    overhead: int  # d, in slack units
    steps: int  # horizon, in planning steps
    max_slack: int  # in slack units
    price_ratio: float

    @property
    def gap(self) -> int:
        return self.step_s // self.unit_s

    @property
    def owed(self) -> tuple[int, ...]:
        """Overhead still owed at a step boundary after a launch: 0 first, then what is left."""
        out, left = [0], self.overhead - self.gap
        while left > 0:
            out.append(left)
            left -= self.gap
        return tuple(out)


@functools.lru_cache(maxsize=64)
def grid_for(deadline_h: float, work_h: float, overhead_h: float, price_ratio: float) -> Grid:
    """The grid for a task: 10-minute steps (longer for deadlines past 80 h, keeping ~480 steps),
    slack counted in the largest unit that divides both the step and d (at least a tenth of a step)."""
    step = 600 * max(1, math.ceil(deadline_h / 80.0))
    d60 = round(overhead_h * 3600 / 60) * 60
    unit = math.gcd(step, d60) if d60 > 0 else step // 5
    unit = max(unit, step // 10)
    slack_s = max(0.0, (deadline_h - work_h) * 3600)
    for divisor in (10, 5, 4, 3, 2, 1):
        candidate = step // divisor
        if step % divisor == 0 and candidate >= unit and math.ceil(slack_s / candidate) <= _MAX_SLACK_UNITS:
            unit = candidate
            break
    else:
        unit = step
    return Grid(step_s=step, unit_s=unit, overhead=round(overhead_h * 3600 / unit),
                steps=math.ceil(deadline_h * 3600 / step - 1e-9),
                max_slack=min(_MAX_SLACK_UNITS, math.ceil(slack_s / unit - 1e-9)),
                price_ratio=float(f"{price_ratio:.3g}"))


@dataclass(frozen=True, slots=True)
class Plan:
    """Per (steps left, slack, feature cell): the action when idle and when on productive on-demand.

    `codes = idle + 3 * on_demand`, with 0 wait, 1 on-demand, 2 spot. A live spot instance is always
    kept (while it is available, nothing is cheaper), and an on-demand one still paying its overhead
    is kept too (leaving would waste what was paid).
    """

    grid: Grid
    codes: npt.NDArray[np.int8]

    def choice(self, s: Situation) -> Choice:
        g = self.grid
        left = s.time_left_h
        assert left is not None
        n = min(g.steps, max(0, math.floor(left * 3600 / g.step_s + 1e-7)))
        slack = math.floor((left - s.remaining_work_h) * 3600 / g.unit_s + 1e-6)
        slack = min(g.max_slack, max(0, slack))
        code = int(self.codes[n, slack, feature_of(s.spot_available, s.history)])
        if s.current is None:
            return _ACTIONS[code % 3]
        if s.current is Market.ON_DEMAND:
            return _ACTIONS[code // 3] if s.productive else Choice.ON_DEMAND
        return Choice.SPOT if s.spot_available else _ACTIONS[code % 3]


def plan(model: MarketModel, grid: Grid) -> Plan:
    """Solve the decision process for `grid` under `model` (up to about a second; callers cache plans)."""
    return Plan(grid, _Solver(model, grid).run())


class _Solver:
    def __init__(self, model: MarketModel, grid: Grid) -> None:
        self.g = grid
        # The model moves in steps of STEP_H; a longer planning step is several of them.
        per_step = self._power(model.transitions(), round(grid.step_s / (STEP_H * 3600)))
        self.pt = per_step.T.astype(np.float32)
        self.avail = available_cells()
        self.owed = grid.owed
        self.slack = np.arange(grid.max_slack + 1)
        step_h = grid.step_s / 3600
        self.price = (np.float32(0.0), np.float32(grid.price_ratio * step_h), np.float32(step_h))

    @staticmethod
    def _power(p: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
        return np.linalg.matrix_power(p, k)

    def run(self) -> npt.NDArray[np.int8]:
        g, no = self.g, len(self.owed)
        codes = np.zeros((g.steps + 1, g.max_slack + 1, N_FEATURES), dtype=np.int8)
        codes[0] = 1 + 3 * 1  # no time left: on-demand (the net says so anyway)
        value = np.zeros((1 + 2 * no, g.max_slack + 1, N_FEATURES), dtype=np.float32)
        for n in range(1, g.steps + 1):
            value, codes[n] = self.step(n, value)
        return codes

    def _expected(self, value: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Per market state: expected value after one step of the availability process.

        A spot instance whose next cell has no capacity is reclaimed: its state becomes idle."""
        no = len(self.owed)
        out = [value[0] @ self.pt]
        out += [value[1 + j] @ self.pt for j in range(no)]
        out += [np.where(self.avail, value[1 + no + j], value[0]) @ self.pt for j in range(no)]
        return out

    def _shift(self, table: npt.NDArray[np.float32], n: int, lost: int, price: np.float32) -> npt.NDArray[np.float32]:
        """Value of a step that loses `lost` units of slack and costs `price`, from state table `table`."""
        g = self.g
        out = np.full_like(table, _BIG)
        if lost < len(out):
            out[lost:] = table[: len(out) - lost]
        after = self.slack - lost
        done = ((n - 1) * g.gap - after <= 0) & (after >= 0)  # the work is finished by the next step
        out[done] = 0.0
        return out + price

    def step(self, n: int, value: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
        g, owed, no = self.g, self.owed, len(self.owed)
        ev = self._expected(value)
        launch_lost, launch_to = min(g.gap, g.overhead), owed.index(max(g.overhead - g.gap, 0))
        work = n * g.gap - self.slack  # work left, in units
        need1 = (np.ceil((work + g.overhead) / g.gap - 1e-9) >= n)[:, None]
        need2 = (np.ceil((work + 2 * g.overhead) / g.gap - 1e-9) >= n)[:, None]
        wait = self._shift(ev[0], n, g.gap, self.price[0])
        new = np.empty_like(value)
        codes = np.zeros(value.shape[1:], dtype=np.int8)
        for m in range(1 + 2 * no):
            market, j = (0, 0) if m == 0 else ((1, m - 1) if m <= no else (2, m - 1 - no))
            if market == 1:
                od = self._continue(ev, n, 1, j)
            else:
                od = self._shift(ev[1 + launch_to], n, launch_lost, self.price[1])
            if market == 2:
                spot = self._continue(ev, n, 2, j)
            else:
                spot = self._shift(ev[1 + no + launch_to], n, launch_lost, self.price[2])
            spot[:, ~self.avail] = np.inf
            best = np.minimum(np.minimum(wait, od), spot)
            act = np.where(wait <= best, 0, np.where(od <= best, 1, 2)).astype(np.int8)
            if market == 2 and owed[j] == 0:  # productive spot is kept past the net, while it lasts
                best = np.where(need1, np.where(self.avail, spot, od), best)
                act = np.where(need1, np.where(self.avail, 2, 1), act).astype(np.int8)
            else:
                best, act = np.where(need1, od, best), np.where(need1, 1, act).astype(np.int8)
            if market != 2:
                best, act = np.where(need2, od, best), np.where(need2, 1, act).astype(np.int8)
            best[work <= 0] = 0.0
            new[m] = best
            if m == 0:
                codes += act
            elif m == 1:
                codes += 3 * act
        return new, codes

    def _continue(self, ev: list[npt.NDArray[np.float32]], n: int, market: int, j: int) -> npt.NDArray[np.float32]:
        """Stay on the market: pay what is still owed of the overhead, progress the rest."""
        g, owed, no = self.g, self.owed, len(self.owed)
        left = owed[j]
        nxt = owed.index(left - g.gap) if left > g.gap else 0
        table = ev[1 + nxt] if market == 1 else ev[1 + no + nxt]
        return self._shift(table, n, min(g.gap, left), self.price[market])
