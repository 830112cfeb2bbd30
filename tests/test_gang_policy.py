"""The gang decision (`orchestrator.core.policy.gang`) on plain values: each rule, one case each."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.core.policy.gang import (
    GangAction,
    GangDecision,
    GangFacts,
    GangMode,
    GangState,
    decide,
    gang_uniform_progress,
    past_point_of_no_return,
    relaunch_on_any_preemption,
)

TICK = 1 / 6


def facts(**kw: object) -> GangFacts:
    """An 8-node rigid gang, C0 = 10 h, D = 20 h, d = 0.2 h, idle at t = 0, 8 nodes free in zone a."""
    base = GangFacts(nodes=8, min_nodes=8, work_h=10.0, done_h=0.0, elapsed_h=0.0, deadline_h=20.0, overhead_h=0.2,
                     free={"a": 8, "b": 3}, spot_price=1.0, on_demand_price=3.0, tick_h=TICK)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def spot(zone: str, nodes: int, left: float = 0.0) -> GangState:
    return GangState(GangMode.SPOT, zone, nodes, left)


ON_DEMAND = GangState(GangMode.ON_DEMAND, None, 8)
POLICIES = (decide, gang_uniform_progress, relaunch_on_any_preemption)


def test_min_nodes_is_checked() -> None:
    with pytest.raises(ValueError, match="min_nodes must be between 1 and nodes"):
        facts(min_nodes=9)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_rigid_gang_launches_where_n_nodes_are_free(policy: object) -> None:
    d = policy(facts())  # type: ignore[operator]
    assert (d.action, d.zone, d.nodes) == (GangAction.SPOT, "a", 8)
    assert d.launches(GangState(), {"a": 8})


def test_the_zone_with_most_free_nodes_is_chosen_and_ties_go_to_the_current_zone_then_the_name() -> None:
    assert decide(facts(free={"a": 8, "b": 12})).zone == "b"
    assert decide(facts(free={"b": 8, "a": 8})).zone == "a"
    # a running whole gang stays where it is
    assert decide(facts(free={"a": 9, "b": 9}, state=spot("b", 8, 0.0))).zone == "b"


def test_no_gang_and_ahead_of_the_line_waits_and_behind_it_goes_on_demand() -> None:
    few = {"a": 7, "b": 0}
    assert decide(facts(free=few)).action is GangAction.WAIT
    assert gang_uniform_progress(facts(free=few)).action is GangAction.WAIT
    # t = 4 h, nothing done: behind Uniform Progress's line (2 h due), not the default's
    # (its line starts at half the slack, 5 h)
    late = facts(free=few, elapsed_h=4.0)
    assert gang_uniform_progress(late).action is GangAction.ON_DEMAND
    assert decide(late).action is GangAction.WAIT
    assert decide(late, wait_share=0.0).action is GangAction.ON_DEMAND
    # t = 7 h: 2 h due on the default's line too
    od = decide(facts(free=few, elapsed_h=7.0, done_h=1.0))
    assert (od.action, od.nodes) == (GangAction.ON_DEMAND, 8)


def test_relaunch_never_uses_on_demand_whatever_the_deadline() -> None:
    d = relaunch_on_any_preemption(facts(free={"a": 7}, elapsed_h=19.0))
    assert d.action is GangAction.WAIT
    assert decide(facts(free={"a": 7}, elapsed_h=19.0)).action is GangAction.ON_DEMAND


def test_point_of_no_return_keeps_only_a_productive_whole_gang() -> None:
    # 10 h of work left, 10.2 h to go: one overhead no longer fits strictly in whole ticks
    f = facts(elapsed_h=9.8, state=spot("a", 8))
    assert past_point_of_no_return(f)
    assert decide(f).action is GangAction.SPOT
    assert decide(dataclasses.replace(f, state=spot("a", 8, 0.1))).action is GangAction.ON_DEMAND
    assert decide(dataclasses.replace(f, state=GangState())).action is GangAction.ON_DEMAND
    # an elastic gang of 5 of 8 is too slow to be kept at the point of no return
    el = facts(elapsed_h=9.8, min_nodes=4, free={"a": 5}, state=spot("a", 5))
    assert decide(el).action is GangAction.ON_DEMAND


def test_room_for_one_lost_attempt_is_kept_when_not_on_spot() -> None:
    f = facts(elapsed_h=9.4, free={"a": 8})  # 63 whole ticks left: C + d (62) fits, C + 2d (63) does not
    assert not past_point_of_no_return(f, 1) and past_point_of_no_return(f, 2)
    assert decide(f).action is GangAction.ON_DEMAND
    assert decide(dataclasses.replace(f, state=spot("a", 8))).action is GangAction.SPOT


def test_on_demand_leaves_for_spot_only_ahead_of_the_line_at_t_plus_2d() -> None:
    # t = 10 h: Uniform Progress's line at 10.4 h is 5.2 h; the default's (from 5 h) is 5.4 * 10 / 15 = 3.6 h
    f = facts(elapsed_h=10.0, done_h=5.0, state=ON_DEMAND)
    assert gang_uniform_progress(f).action is GangAction.ON_DEMAND
    assert decide(f).action is GangAction.SPOT
    assert gang_uniform_progress(dataclasses.replace(f, done_h=5.3)).action is GangAction.SPOT
    # no spot gang: stay on on-demand, however far ahead
    assert decide(dataclasses.replace(f, done_h=9.0, free={"a": 7})).action is GangAction.ON_DEMAND


def test_a_whole_spot_gang_is_kept_and_a_gang_that_lost_a_node_is_relaunched() -> None:
    keep = decide(facts(state=spot("a", 8), free={"a": 8, "b": 16}))
    assert keep == GangDecision(GangAction.SPOT, "a", 8)
    assert not keep.launches(spot("a", 8), {"a": 8, "b": 16})
    lost = decide(facts(state=spot("a", 8), free={"a": 7, "b": 9}))
    assert (lost.zone, lost.nodes) == ("b", 8) and lost.launches(spot("a", 8), {"a": 7, "b": 9})


def test_an_elastic_gang_runs_on_what_is_free_and_grows_only_when_behind() -> None:
    el = facts(min_nodes=4, free={"a": 5})
    d = decide(el)
    assert (d.action, d.zone, d.nodes) == (GangAction.SPOT, "a", 5)
    assert relaunch_on_any_preemption(el).action is GangAction.WAIT  # SkyPilot's gangs are rigid
    # running 5, now 8 free: kept at 5 while ahead of the line (growing costs d on every node and
    # saves only time), grown to 8 once behind it (t = 8 h: 2 h due on the default's line, 1 h done)
    assert decide(dataclasses.replace(el, free={"a": 8}, state=spot("a", 5))).nodes == 5
    behind = dataclasses.replace(el, free={"a": 8}, state=spot("a", 5), elapsed_h=8.0, done_h=1.0)
    assert decide(behind).nodes == 8 and decide(behind).launches(spot("a", 5), {"a": 8})
    assert gang_uniform_progress(behind).nodes == 5  # Uniform Progress stays on spot until reclaimed
    # running 5, one lost: relaunched on the 4 left (a new rendezvous is a new launch)
    shrink = decide(dataclasses.replace(el, free={"a": 4}, state=spot("a", 5)))
    assert shrink.nodes == 4 and shrink.launches(spot("a", 5), {"a": 4})
    assert decide(dataclasses.replace(el, free={"a": 3})).action is GangAction.WAIT


def test_no_deadline_is_spot_only_and_spot_not_cheaper_is_on_demand() -> None:
    assert decide(facts(deadline_h=None, free={"a": 7}, elapsed_h=100.0)).action is GangAction.WAIT
    assert decide(facts(spot_price=3.0)).action is GangAction.ON_DEMAND
    assert decide(facts(done_h=10.0)).action is GangAction.WAIT


def test_on_demand_keeps_its_gang_and_launching_it_is_a_launch() -> None:
    d = decide(facts(free={"a": 0}, elapsed_h=15.0, done_h=5.0, state=ON_DEMAND))
    assert d.action is GangAction.ON_DEMAND and not d.launches(ON_DEMAND, {})
    assert d.launches(GangState(), {})
