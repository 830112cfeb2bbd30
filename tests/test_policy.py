"""Each reference policy's rules, on hand-made situations and small hand-made traces."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from orchestrator.core.policy import Choice, Situation, get_policy, has_policy, policy_names, register
from orchestrator.core.policy.simple import past_point_of_no_return
from orchestrator.research import fastsim
from vocab import Market

TICK = 1 / 6  # ten minutes, as in the paper's traces


def situation(**kw: object) -> Situation:
    """C0 = 10 h, D = 14 h, d = 0.2 h, idle at t = 0 with spot available, unless told otherwise."""
    base = Situation(elapsed_h=0.0, deadline_h=14.0, work_h=10.0, done_h=0.0, overhead_h=0.2,
                     price_ratio=3.0, current=None, spot_available=True, tick_h=TICK)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_registry() -> None:
    assert {"on-demand", "spot-only", "greedy", "uniform-progress", "auto"} <= set(policy_names())
    assert has_policy("greedy") and not has_policy("nope")
    with pytest.raises(KeyError, match="known: "):
        get_policy("nope")
    with pytest.raises(ValueError, match="already registered"):
        register("greedy")(get_policy("greedy"))


def test_on_demand_and_spot_only() -> None:
    od, so = get_policy("on-demand"), get_policy("spot-only")
    assert od(situation()) is Choice.ON_DEMAND
    assert so(situation()) is Choice.SPOT
    assert so(situation(spot_available=False)) is Choice.WAIT
    # spot-only ignores the deadline, even past it
    assert so(situation(spot_available=False, elapsed_h=13.9)) is Choice.WAIT
    assert od(situation(done_h=10.0)) is Choice.WAIT


def test_point_of_no_return_counts_whole_ticks() -> None:
    # C = 10, d = 0.2: need ceil(10.2 / (1/6)) = 62 ticks; 62 ticks left is the last moment.
    assert not past_point_of_no_return(situation(elapsed_h=14.0 - 63 * TICK))
    assert past_point_of_no_return(situation(elapsed_h=14.0 - 62 * TICK))
    assert not past_point_of_no_return(situation(deadline_h=None))
    # continuous time (tick 0): plain comparison
    assert past_point_of_no_return(situation(tick_h=0.0, elapsed_h=3.8))
    assert not past_point_of_no_return(situation(tick_h=0.0, elapsed_h=3.79))


@pytest.mark.parametrize("name", ["greedy", "uniform-progress", "auto"])
def test_safety_net_at_the_last_possible_tick(name: str) -> None:
    """Idle or waiting at the last tick from which on-demand still finishes: on-demand, whatever else."""
    policy = get_policy(name)
    last = situation(elapsed_h=14.0 - 62 * TICK, spot_available=False)
    assert policy(last) is Choice.ON_DEMAND
    assert policy(dataclasses.replace(last, spot_available=True)) is Choice.ON_DEMAND
    # already on on-demand, still owing overhead: stay
    assert policy(dataclasses.replace(last, current=Market.ON_DEMAND, overhead_left_h=0.1)) is Choice.ON_DEMAND
    # a spot instance still paying its overhead is not worth the risk: switch
    assert policy(dataclasses.replace(last, current=Market.SPOT, spot_available=True,
                                      overhead_left_h=0.05)) is Choice.ON_DEMAND
    # a productive spot instance is kept: if reclaimed now, on-demand still fits exactly
    assert policy(dataclasses.replace(last, current=Market.SPOT, spot_available=True)) is Choice.SPOT


def test_greedy_waits_for_spot_until_the_net() -> None:
    g = get_policy("greedy")
    assert g(situation(spot_available=False, elapsed_h=2.0)) is Choice.WAIT
    assert g(situation(elapsed_h=2.0)) is Choice.SPOT
    assert g(situation(spot_available=False, elapsed_h=14.0 - 63 * TICK)) is Choice.WAIT
    # on on-demand past the net (6.2 h needed, 38 ticks left), it stays even though spot is back
    assert g(situation(current=Market.ON_DEMAND, elapsed_h=14.0 - 38 * TICK, done_h=4.0)) is Choice.ON_DEMAND
    assert g(situation(deadline_h=None, spot_available=False)) is Choice.WAIT


def test_uniform_progress_rules() -> None:
    up = get_policy("uniform-progress")
    # the line: C0 * t / R0 = 10 * 7 / 14 = 5 h at t = 7
    behind = situation(elapsed_h=7.0, done_h=4.9, spot_available=False)
    ahead = situation(elapsed_h=7.0, done_h=5.1, spot_available=False)
    assert up(behind) is Choice.ON_DEMAND  # idle and behind: catch up on on-demand
    assert up(ahead) is Choice.WAIT  # idle and ahead: wait for spot
    assert up(dataclasses.replace(behind, spot_available=True)) is Choice.SPOT  # taking risks
    # hysteresis: leave on-demand only when ahead of the line at t + 2d = 7.4 h, i.e. 5.29 h done
    on_od = situation(elapsed_h=7.0, current=Market.ON_DEMAND, spot_available=True)
    assert up(dataclasses.replace(on_od, done_h=5.2)) is Choice.ON_DEMAND
    assert up(dataclasses.replace(on_od, done_h=5.3)) is Choice.SPOT
    assert up(dataclasses.replace(on_od, done_h=5.3, spot_available=False)) is Choice.ON_DEMAND
    # C + 2d no longer fits: on-demand while idle, but a running spot instance is not the 2d rule's business
    two_d = situation(elapsed_h=14.0 - 63 * TICK, done_h=0.0, spot_available=True)
    assert up(two_d) is Choice.ON_DEMAND
    assert up(dataclasses.replace(two_d, current=Market.SPOT)) is Choice.SPOT
    assert up(situation(deadline_h=None, spot_available=False)) is Choice.WAIT


SETUP = fastsim.Setup(task_h=2.0, deadline_h=3.0, overhead_h=0.2, price_ratio=3.0)
GAPPY = fastsim.Setup(task_h=2.0, deadline_h=4.0, overhead_h=0.2, price_ratio=3.0)


def _trace(*bits: int) -> np.ndarray:
    return np.array(bits, dtype=bool)


def test_greedy_on_a_trace_with_no_spot_uses_on_demand_at_the_last_moment() -> None:
    out = fastsim.run(get_policy("greedy"), _trace(*[0] * 24), SETUP)
    # needs ceil(2.2 h / 10 min) = 14 ticks; 18 ticks to the deadline: waits 4, then on-demand
    assert out.idle_h == pytest.approx(4 * TICK)
    assert out.od_billed_h == pytest.approx(14 * TICK) and out.spot_billed_h == 0
    assert out.deadline_met and out.finish_h == pytest.approx(4 * TICK + 2.2)


def test_uniform_progress_on_a_trace_with_a_gap() -> None:
    # spot for 6 ticks, then 6 ticks without, then spot again
    avail = _trace(*([1] * 6 + [0] * 6 + [1] * 12))
    up = fastsim.run(get_policy("uniform-progress"), avail, GAPPY)
    greedy = fastsim.run(get_policy("greedy"), avail, GAPPY)
    assert up.deadline_met and greedy.deadline_met
    assert greedy.od_billed_h == 0 and greedy.idle_h == pytest.approx(1.0)
    assert greedy.finish_h == pytest.approx(2.0 + 0.2 + 1.2)
    # UP falls behind its line C0 t / R0 = t / 2 at tick 10 (0.8 h done < 0.83 h) and goes on-demand;
    # spot is back at tick 12, but UP stays on on-demand until it is ahead of the line at t + 2d
    # (tick 16: 1.6 h done > 1.53 h), then returns to spot: three launches in all.
    assert up.od_billed_h == pytest.approx(1.0) and up.launches == 3 and up.cost > greedy.cost
