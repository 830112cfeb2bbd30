"""The multi-zone default's move lookahead: the plan's expected costs, and the move they decide."""

from __future__ import annotations

import numpy as np

from orchestrator.core.policy._fitted import MODEL
from orchestrator.core.policy.base import Choice, Situation, SpotHistory
from orchestrator.core.policy.multizone import get_multi_policy
from orchestrator.core.policy.multizone_base import MultiSituation, Zone, ZoneSeen, move_costs
from orchestrator.core.policy.multizone_plan import ValuePlans, solve_values, value_grid, zone_cell
from orchestrator.core.policy.planner import _Solver, grid_for, plan

SHAPE = dict(deadline_h=36.0, work_h=24.0, overhead_h=0.2, price_ratio=3.15)
ZONES = (Zone("us-east4-a", "us-east4"), Zone("us-west1-a", "us-west1"))


def _task(elapsed_h: float, done_h: float) -> Situation:
    return Situation(elapsed_h=elapsed_h, done_h=done_h, current=None, spot_available=True, tick_h=1 / 6,
                     history=SpotHistory(), **SHAPE)  # type: ignore[arg-type]


class _FullValues(_Solver):
    """The exact plan's idle values on `auto`'s own grid (what the lookahead solved before it had a grid
    of its own): the reference the coarse table is checked against."""

    def values(self) -> np.ndarray:
        g, no = self.g, len(self.owed)
        out = np.zeros((g.steps + 1, g.max_slack + 1, len(self.avail)), dtype=np.float32)
        value = np.zeros((1 + 2 * no, g.max_slack + 1, len(self.avail)), dtype=np.float32)
        for n in range(1, g.steps + 1):
            value, _ = self.step(n, value)
            out[n] = value[0]
        return out


def test_the_coarse_value_plan_follows_the_exact_plan() -> None:
    """On its 30-minute grid, the lookahead's costs stay within about a spot-hour of the exact plan's
    (a tenth of what a move must save) and its actions are `auto`'s in nine states of ten."""
    grid = grid_for(SHAPE["deadline_h"], SHAPE["work_h"], SHAPE["overhead_h"], SHAPE["price_ratio"])
    exact, codes = _FullValues(MODEL, grid).values(), plan(MODEL, grid).codes
    values = ValuePlans().for_situation(_task(0.0, 0.0))
    rng = np.random.default_rng(7)
    errors, agree = [], 0
    for _ in range(400):
        elapsed = float(rng.uniform(0.0, 30.0))
        least = max(0.0, SHAPE["work_h"] - (SHAPE["deadline_h"] - elapsed) + 0.5)
        done = float(rng.uniform(least, SHAPE["work_h"] - 0.5))
        s, cell = _task(elapsed, done), int(rng.integers(len(exact[0, 0])))
        left = SHAPE["deadline_h"] - elapsed
        n = min(grid.steps, int(left * 3600 / grid.step_s + 1e-7))
        slack = min(grid.max_slack, int((left - s.remaining_work_h) * 3600 / grid.unit_s + 1e-6))
        action, cost = values.idle(s, cell)
        errors.append(abs(cost - float(exact[n, slack, cell])))
        agree += action is (Choice.WAIT, Choice.ON_DEMAND, Choice.SPOT)[int(codes[n, slack, cell]) % 3]
    assert float(np.median(errors)) < 1.5
    assert agree >= 0.9 * len(errors)


def test_the_value_plan_is_small_and_its_costs_grow_as_slack_shrinks() -> None:
    """A few MB per shape (the exact plan's values were 33-87 MB for the benchmark's shapes), bounded
    for any deadline; expected cost grows as slack shrinks, from idle in the same cell."""
    values = ValuePlans().for_situation(_task(0.0, 0.0))
    assert values.nbytes < 4 * 2**20
    for deadline, work in ((48.0, 24.0), (200.0, 100.0), (1000.0, 10.0)):
        assert solve_values(MODEL, value_grid(deadline, work, 0.05, 3.15)).nbytes < 20 * 2**20
    cell = zone_cell(True, 1 / 6, 0.5)
    roomy = values.idle(_task(0.0, 0.0), cell)[1]
    tight = values.idle(_task(2.0, 0.0), cell)[1]
    assert 0 < roomy < tight


def _outage(elapsed_h: float, done_h: float, out_since_h: float) -> MultiSituation:
    """Idle, the checkpoint in us-east4, no spot there since `out_since_h`; us-west1-a open, unwatched."""
    home = ZoneSeen(now=False, seen_h=elapsed_h, up_h=out_since_h, last_seen_h=elapsed_h - 1 / 6,
                    last_up_h=out_since_h)
    return MultiSituation(_task(elapsed_h, done_h), ZONES, (home, ZoneSeen()), zone=None, home=0,
                          moves=move_costs(ZONES))


def test_an_outage_of_one_probe_is_waited_out_and_one_of_an_hour_is_not() -> None:
    """Same task, same slack: the plan expects a fresh outage to end soon (not worth 1 USD of egress
    and the margin), an hour-old one to last (its slack, spent waiting, is paid later on on-demand)."""
    auto = get_multi_policy("auto")
    assert auto(_outage(1.0, 0.8, 1.0 - 1 / 6)).choice is Choice.WAIT
    moved = auto(_outage(1.0, 0.8, 0.0))
    assert moved.choice is Choice.SPOT and moved.zone == 1
