"""What a move is worth: the single-zone plan's expected cost, kept per state, for the multi-zone default.

`auto`'s plan (`orchestrator.core.policy.planner`) stores only the action of least expected cost in
each state (steps left, slack, availability cell). Whether to pay a move to another region needs the
cost itself: waiting for the checkpoint's region spends slack, and slack spent now is paid later, on
on-demand, only when the window turns bad; a move spends its egress fee now. So this module solves
the same decision process and keeps, beside the actions, the expected cost from an idle task
(`ValuePlan.idle`, spot-price hours). A zone is then valued as if the task stayed there for good
(the single-zone continuation), which is what a one-step lookahead over "stay" needs: a move is made
when the fee plus the expected cost of launching there is below the expected cost of staying idle or
on on-demand at home, by a margin (`multizone.MOVE_MARGIN`) that stands in for staying's option to
move later.

The values are the planner's own (same model, grid, net and 2d rule), so the lookahead agrees with
`auto` wherever it does not move. Memory: a float32 per (step, slack unit, cell), four times the
plan's codes (tens of MB for a 48 h deadline); cached by grid like the plans, bounded by bytes.
Pure: numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.core.policy._fitted import MODEL
from orchestrator.core.policy.base import RECENT_PRIOR, Choice, Situation
from orchestrator.core.policy.market_model import STEP_H, MarketModel, feature
from orchestrator.core.policy.planner import Grid, _Solver, grid_for

VALUE_CACHE_BYTES = 256 * 2**20
_ACTIONS = (Choice.WAIT, Choice.ON_DEMAND, Choice.SPOT)


@dataclass(frozen=True, slots=True)
class ValuePlan:
    """Per (steps left, slack units, cell): the idle task's best action and its expected cost."""

    grid: Grid
    codes: npt.NDArray[np.int8]
    values: npt.NDArray[np.float32]

    def _index(self, s: Situation, slack_lost_h: float) -> tuple[int, int]:
        g = self.grid
        left = s.time_left_h
        assert left is not None
        n = min(g.steps, max(0, math.floor(left * 3600 / g.step_s + 1e-7)))
        lost = math.ceil(slack_lost_h * 3600 / g.unit_s - 1e-6)
        slack = math.floor((left - s.remaining_work_h) * 3600 / g.unit_s + 1e-6) - lost
        return n, min(g.max_slack, max(0, slack))

    def idle(self, s: Situation, cell: int, slack_lost_h: float = 0.0) -> tuple[Choice, float]:
        """From idle in availability `cell`, with `slack_lost_h` more slack spent first (a copy's
        transfer time): the plan's action and its expected cost to the end, in spot-price hours."""
        n, slack = self._index(s, slack_lost_h)
        return _ACTIONS[int(self.codes[n, slack, cell]) % 3], float(self.values[n, slack, cell])


def zone_cell(available: bool, run_h: float, recent: float | None) -> int:
    """The model's availability cell for a zone: its state, the age of its current run (`run_h`,
    this tick included) and its recent availability (None: the model's prior)."""
    return feature(available, max(run_h, STEP_H) / STEP_H, RECENT_PRIOR if recent is None else recent)


class _ValueSolver(_Solver):
    def solve(self) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
        g, no = self.g, len(self.owed)
        _, n_slack, n_cells = (1 + 2 * no, g.max_slack + 1, len(self.avail))
        codes = np.zeros((g.steps + 1, n_slack, n_cells), dtype=np.int8)
        values = np.zeros((g.steps + 1, n_slack, n_cells), dtype=np.float32)
        codes[0] = 1 + 3 * 1
        value = np.zeros((1 + 2 * no, n_slack, n_cells), dtype=np.float32)
        for n in range(1, g.steps + 1):
            value, codes[n] = self.step(n, value)
            values[n] = value[0]
        return codes, values


class ValuePlans:
    """Value plans by grid, least recently used first out, bounded by memory."""

    def __init__(self, model: MarketModel = MODEL, limit_bytes: int = VALUE_CACHE_BYTES) -> None:
        self.model, self.limit = model, limit_bytes
        self._plans: dict[Grid, ValuePlan] = {}

    def for_situation(self, s: Situation) -> ValuePlan:
        assert s.deadline_h is not None
        grid = grid_for(s.deadline_h, s.work_h, s.overhead_h, s.price_ratio)
        found = self._plans.pop(grid, None)
        if found is None:
            codes, values = _ValueSolver(self.model, grid).solve()
            found = ValuePlan(grid, codes, values)
            while self._plans and found.values.nbytes + sum(p.values.nbytes for p in self._plans.values()) \
                    > self.limit:
                self._plans.pop(next(iter(self._plans)))
        self._plans[grid] = found
        return found


VALUES = ValuePlans()
