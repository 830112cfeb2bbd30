"""The multi-zone default's move lookahead: the plan's expected costs, and the move they decide."""

from __future__ import annotations

import numpy as np

from orchestrator.core.policy._fitted import MODEL
from orchestrator.core.policy.base import Choice, Situation, SpotHistory
from orchestrator.core.policy.multizone import get_multi_policy
from orchestrator.core.policy.multizone_base import MultiSituation, Zone, ZoneSeen, move_costs
from orchestrator.core.policy.multizone_plan import ValuePlans, zone_cell
from orchestrator.core.policy.planner import grid_for, plan

SHAPE = dict(deadline_h=36.0, work_h=24.0, overhead_h=0.2, price_ratio=3.15)
ZONES = (Zone("us-east4-a", "us-east4"), Zone("us-west1-a", "us-west1"))


def _task(elapsed_h: float, done_h: float) -> Situation:
    return Situation(elapsed_h=elapsed_h, done_h=done_h, current=None, spot_available=True, tick_h=1 / 6,
                     history=SpotHistory(), **SHAPE)  # type: ignore[arg-type]


def test_the_value_plan_takes_the_plans_actions() -> None:
    """Same model, grid and net: the lookahead's table of actions is `auto`'s plan, values beside it."""
    grid = grid_for(SHAPE["deadline_h"], SHAPE["work_h"], SHAPE["overhead_h"], SHAPE["price_ratio"])
    values = ValuePlans().for_situation(_task(0.0, 0.0))
    assert np.array_equal(values.codes, plan(MODEL, grid).codes)
    # Expected cost grows as slack shrinks, from idle in the same cell.
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
