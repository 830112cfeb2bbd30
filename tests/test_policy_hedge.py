"""The default goes back to spot whenever Uniform Progress would (`auto.hedge`), single- and multi-zone.

The issue's failure: in spot-scarce V100 windows the multi-zone default ran 19.7 h on on-demand while
Uniform Progress kept returning to spot. A model of a flickering zone makes the plan ride on-demand
here; the hedge takes spot anyway once the work is ahead of Uniform Progress's line at t + 2d.
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.core.policy import auto as auto_module
from orchestrator.core.policy.auto import ModelPolicy, hedge
from orchestrator.core.policy.base import Choice, Situation, SpotHistory
from orchestrator.core.policy.market_model import N_AGES, N_RECENT, MarketModel
from orchestrator.core.policy.multizone import _home_history, get_multi_policy, make_zone_auto
from orchestrator.core.policy.multizone_base import MultiSituation, Zone, ZoneSeen, move_costs
from orchestrator.core.policy.multizone_plan import ValuePlans
from orchestrator.core.policy.planner import grid_for
from orchestrator.core.policy.simple import uniform_progress
from vocab import Market

TICK = 1 / 6
ZONES = (Zone("us-east-1f", "us-east-1"), Zone("us-east-1c", "us-east-1"))


def _task(**kw: object) -> Situation:
    base = Situation(elapsed_h=12.0, deadline_h=36.0, work_h=24.0, done_h=10.0, overhead_h=0.2, price_ratio=3.15,
                     current=Market.ON_DEMAND, spot_available=True, tick_h=TICK,
                     history=SpotHistory(observed_h=12.0, available_h=2.0, current_run_h=TICK, in_available_run=True,
                                         recent_available=0.1))
    return replace(base, **kw)  # type: ignore[arg-type]


# A model of a zone where spot runs end after a step nine times in ten: its plan rides on-demand
# through spot it expects to lose at once, the bet the hedge bounds.
FLICKER = MarketModel(
    hazard=tuple(tuple(tuple(h for _ in range(N_RECENT)) for _ in range(N_AGES)) for h in (0.1, 0.9)),
    recent_moves=tuple(tuple(tuple(1.0 if j == (0 if up == 0 else i) else 0.0 for j in range(N_RECENT))
                             for i in range(N_RECENT)) for up in (0, 1)))
# Late in the window, a little ahead of the line, spot back for one tick after a scarce stretch.
LATE = {"elapsed_h": 28.0, "done_h": 24.0 * 28.0 / 36.0 + 0.3,
        "history": SpotHistory(observed_h=28.0, available_h=1.0, current_run_h=TICK, in_available_run=True,
                               recent_available=0.05)}


def test_on_demand_ahead_of_the_line_goes_back_to_spot_whatever_the_plan_says() -> None:
    s = _task(**LATE)
    policy = ModelPolicy(FLICKER)
    assert policy.plan_for(grid_for(36.0, 24.0, 0.2, 3.15)).choice(s) is Choice.ON_DEMAND
    assert uniform_progress(s) is Choice.SPOT
    assert hedge(s, Choice.ON_DEMAND) is Choice.SPOT
    assert policy(s) is Choice.SPOT
    assert auto_module.auto(s) is Choice.SPOT  # the shipped model
    behind = _task(done_h=7.0)  # behind the line at t + 2d: Uniform Progress stays too
    assert hedge(behind, Choice.ON_DEMAND) is Choice.ON_DEMAND


def test_the_multi_zone_default_returns_to_spot_when_ahead_in_a_spot_scarce_region() -> None:
    """On on-demand, ahead of the line, spot back in one home zone after a long outage (the issue's
    V100 windows): the default launches spot there, as multi-zone Uniform Progress does."""
    task = _task(**LATE)
    seen = (ZoneSeen(now=True, seen_h=28.0, up_h=1.0, up_run_h=0.0, last_seen_h=28.0 - TICK, last_up_h=3.0),
            ZoneSeen(now=False, seen_h=28.0, up_h=0.5, last_seen_h=28.0 - TICK, last_up_h=2.0))
    m = MultiSituation(task, ZONES, seen, zone=0, home=0, moves=move_costs(ZONES))
    assert get_multi_policy("uniform-progress")(m).choice is Choice.SPOT
    home = replace(task, history=_home_history(m, [0]))
    market = ModelPolicy(FLICKER)
    assert market.plan_for(grid_for(36.0, 24.0, 0.2, 3.15)).choice(home) is Choice.ON_DEMAND
    for policy in (make_zone_auto(market, ValuePlans(FLICKER)), get_multi_policy("auto")):
        placed = policy(m)
        assert placed.choice is Choice.SPOT and placed.zone == 0


def test_idle_it_does_not_launch_on_demand_that_it_would_leave_at_the_next_tick() -> None:
    """Idle after a reclamation, ahead of the line with spot up: the plan's on-demand would be left
    again at once by the rule above (a launch and a switch every tick in issue 25's campaign bench),
    so the default takes spot, as Uniform Progress does; behind the line, the plan's call stands."""
    s = _task(current=None, elapsed_h=24.0, done_h=24.0 * 24.4 / 36.0 + 0.3,
              history=SpotHistory(observed_h=24.0, available_h=1.0, current_run_h=TICK, in_available_run=True,
                                  recent_available=0.05))
    policy = ModelPolicy(FLICKER)
    assert policy.plan_for(grid_for(36.0, 24.0, 0.2, 3.15)).choice(s) is Choice.ON_DEMAND
    assert hedge(s, Choice.ON_DEMAND) is Choice.SPOT
    assert policy(s) is Choice.SPOT
    assert hedge(replace(s, done_h=7.0), Choice.ON_DEMAND) is Choice.ON_DEMAND
    assert hedge(replace(s, spot_available=False), Choice.ON_DEMAND) is Choice.ON_DEMAND
