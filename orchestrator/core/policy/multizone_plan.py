"""What a move is worth: the single-zone plan's expected cost, kept per state, for the multi-zone default.

`auto`'s plan (`orchestrator.core.policy.planner`) stores only the action of least expected cost in
each state (steps left, slack, availability cell). Whether to pay a move to another region needs the
cost itself: waiting for the checkpoint's region spends slack, and slack spent now is paid later, on
on-demand, only when the window turns bad; a move spends its egress fee now. So this module solves
the same decision process (same model, net and 2d rule) and keeps, beside the actions, the expected
cost from an idle task (`ValuePlan.idle`, spot-price hours). A zone is then valued as if the task
stayed there for good (the single-zone continuation), which is what a one-step lookahead over "stay"
needs: a move is made when the fee plus the expected cost of launching there is below the expected
cost of staying idle at home, by a margin (`multizone.MOVE_MARGIN`) that stands in for staying's
option to move later.

**Cheap enough for the live loop's first decision.** The lookahead compares two expected costs with
a margin of spot-hours, so it needs them to a tenth of a spot-hour, not to the planner's resolution.
It solves on its own coarse grid (`value_grid`): 30-minute steps (three model steps per step, the
availability model raised to that power; at most `MAX_VALUE_STEPS` steps, longer for longer
deadlines) and a slack unit that represents d where it can (at most `MAX_VALUE_SLACK` units), and
reads values between grid points by bilinear interpolation in (time left, slack). Values are stored
as float16 (a 48 h deadline's costs are under 100 spot-hours: steps of 0.06 at most) beside int8
actions: at most ~13 MB per shape, 0.01-0.36 s (`python bench/lookahead.py`), where the full
grid took 33-87 MB and seconds. The product with the transition matrix is an `einsum`, not a
BLAS call: on a loaded 2-core machine a multi-threaded BLAS waits for a second core on every call
(the full-grid solve took 4-17 s there, 1 s with one BLAS thread). Pure: numpy only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.core.policy._fitted import MODEL
from orchestrator.core.policy.base import RECENT_PRIOR, Choice, Situation
from orchestrator.core.policy.market_model import STEP_H, MarketModel, feature
from orchestrator.core.policy.planner import Grid, _Solver

VALUE_CACHE_BYTES = 64 * 2**20
VALUE_STEP_S = 1800  # three model steps
MAX_VALUE_STEPS, MAX_VALUE_SLACK = 120, 500
_F16_MAX = 6.0e4  # "missed the deadline" (1e6 in the solver) stored as this
_ACTIONS = (Choice.WAIT, Choice.ON_DEMAND, Choice.SPOT)


@functools.lru_cache(maxsize=64)
def value_grid(deadline_h: float, work_h: float, overhead_h: float, price_ratio: float) -> Grid:
    """The lookahead's grid for a task shape: steps of `VALUE_STEP_S` (a multiple of it past
    `MAX_VALUE_STEPS` steps), slack in the largest divisor of the step that divides d (d rounded to
    the minute) and keeps the slack within `MAX_VALUE_SLACK` units, else the first divisor that does;
    d is then at least one unit (rounded), so a launch is never free."""
    step = VALUE_STEP_S * max(1, math.ceil(deadline_h * 3600 / (VALUE_STEP_S * MAX_VALUE_STEPS) - 1e-9))
    d_s = round(overhead_h * 3600 / 60) * 60
    unit = max(math.gcd(step, d_s) if d_s > 0 else step // 5, step // 10)
    slack_s = max(0.0, (deadline_h - work_h) * 3600)
    unit = next(u for u in range(unit, step + 1)
                if step % u == 0 and (u == step or math.ceil(slack_s / u - 1e-9) <= MAX_VALUE_SLACK))
    return Grid(step_s=step, unit_s=unit, overhead=max(1, round(d_s / unit)) if d_s > 0 else 0,
                steps=math.ceil(deadline_h * 3600 / step - 1e-9),
                max_slack=min(MAX_VALUE_SLACK, math.ceil(slack_s / unit - 1e-9)),
                price_ratio=float(f"{price_ratio:.3g}"))


@dataclass(frozen=True, slots=True)
class ValuePlan:
    """Per (steps left, slack units, cell) of its coarse grid: the idle task's best action and its
    expected cost (spot-price hours)."""

    grid: Grid
    codes: npt.NDArray[np.int8]
    values: npt.NDArray[np.float16]

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.values.nbytes)

    def idle(self, s: Situation, cell: int, slack_lost_h: float = 0.0) -> tuple[Choice, float]:
        """From idle in availability `cell`, with `slack_lost_h` more slack spent first (a copy's
        transfer time): the plan's action and its expected cost to the end, in spot-price hours.

        The cost is interpolated between the four grid points around (time left, slack); the
        action is the one at the grid point below both (less time, less slack: the cautious side)."""
        g = self.grid
        left = s.time_left_h
        assert left is not None
        n_f = min(float(g.steps), max(0.0, left * 3600 / g.step_s))
        slack_f = min(float(g.max_slack), max(0.0, ((left - s.remaining_work_h) - slack_lost_h) * 3600 / g.unit_s))
        n0, s0 = min(int(n_f), g.steps), min(int(slack_f), g.max_slack)
        n1, s1 = min(n0 + 1, g.steps), min(s0 + 1, g.max_slack)
        t, u = n_f - n0, slack_f - s0
        v = self.values
        cost = ((1 - t) * ((1 - u) * float(v[n0, s0, cell]) + u * float(v[n0, s1, cell]))
                + t * ((1 - u) * float(v[n1, s0, cell]) + u * float(v[n1, s1, cell])))
        return _ACTIONS[int(self.codes[n0, s0, cell]) % 3], cost


def zone_cell(available: bool, run_h: float, recent: float | None) -> int:
    """The model's availability cell for a zone: its state, the age of its current run (`run_h`,
    this tick included) and its recent availability (None: the model's prior)."""
    return feature(available, max(run_h, STEP_H) / STEP_H, RECENT_PRIOR if recent is None else recent)


class _ValueSolver(_Solver):
    """The planner's backward induction on the coarse grid, keeping the idle state's values."""

    @staticmethod
    def _power(p: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
        out = p
        for _ in range(k - 1):
            out = np.einsum("ij,jk->ik", out, p)
        return out

    def _expected(self, value: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        # As `_Solver._expected` (a reclaimed spot instance becomes idle), in one product per step,
        # computed by einsum's own loop rather than a (multi-threaded) BLAS call.
        no = len(self.owed)
        spot = np.where(self.avail, value[1 + no:], value[0][None])
        states = np.concatenate([value[: 1 + no], spot])
        flat = np.einsum("ij,jk->ik", states.reshape(-1, states.shape[-1]), self.pt)
        return list(flat.reshape(states.shape))

    def solve(self) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float16]]:
        g, no = self.g, len(self.owed)
        shape = (g.steps + 1, g.max_slack + 1, len(self.avail))
        codes = np.zeros(shape, dtype=np.int8)
        values = np.zeros(shape, dtype=np.float16)
        codes[0] = 1 + 3 * 1
        value = np.zeros((1 + 2 * no, *shape[1:]), dtype=np.float32)
        for n in range(1, g.steps + 1):
            value, codes[n] = self.step(n, value)
            values[n] = np.minimum(value[0], _F16_MAX)
        return codes, values


def solve_values(model: MarketModel, grid: Grid) -> ValuePlan:
    """Solve the lookahead's table for `grid` under `model` (a fraction of a second; callers cache it)."""
    codes, values = _ValueSolver(model, grid).solve()
    return ValuePlan(grid, codes, values)


class ValuePlans:
    """Value plans by grid, least recently used first out, bounded by memory."""

    def __init__(self, model: MarketModel = MODEL, limit_bytes: int = VALUE_CACHE_BYTES) -> None:
        self.model, self.limit = model, limit_bytes
        self._plans: dict[Grid, ValuePlan] = {}

    def for_situation(self, s: Situation) -> ValuePlan:
        assert s.deadline_h is not None
        grid = value_grid(s.deadline_h, s.work_h, s.overhead_h, s.price_ratio)
        found = self._plans.pop(grid, None)
        if found is None:
            found = solve_values(self.model, grid)
            while self._plans and found.nbytes + sum(p.nbytes for p in self._plans.values()) > self.limit:
                self._plans.pop(next(iter(self._plans)))
        self._plans[grid] = found
        return found


VALUES = ValuePlans()
