"""A gang's plan on plain values: the rules G1-G5 of `core.plan.gang`, on top of the task's rules.

The gang here has three nodes: the head (rank 0, `i-1`) and ranks 1 and 2 (`i-2`, `i-3`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.core.live import LISTING_GRACE_S
from orchestrator.core.model import AttemptView, NodeSpan, Outcome
from orchestrator.core.plan.actions import (
    EndAttempt,
    EndNodes,
    ForwardNotice,
    LaunchAgain,
    MarkStarted,
    Note,
    RecordInstance,
    RecordNodes,
    ReleaseGang,
    Replan,
    StopInstance,
)
from orchestrator.core.plan.facts import LiveFacts
from orchestrator.core.plan.launch import launched
from orchestrator.core.plan.task import plan_task
from tests.test_decide import ctx, situation
from tests.test_decide import live as running
from tests.test_plan import NOW, POD_LIKE, facts, instance, launching, live_facts
from vocab import EndReason, Instance, InstanceState, Market, Notice, NoticeKind

SPANS = tuple(NodeSpan(rank, f"i-{rank + 1}", "us-east-1a", Market.SPOT, 0.918, 5.0) for rank in range(3))


def gang_attempt(**kw: Any) -> AttemptView:
    return replace(running(), nodes=3, node_spans=SPANS, **kw)


def node(rank: int, state: InstanceState = InstanceState.RUNNING, **kw: Any) -> Instance:
    return instance(state, instance_id=f"i-{rank + 1}", node_rank=rank, **kw)


def gang(a: AttemptView | None = None, head: Instance | None = None,
         members: tuple[Instance, ...] | None = None, **kw: Any) -> LiveFacts:
    return live_facts(a or gang_attempt(), head if head is not None else node(0),
                      members=members if members is not None else (node(1), node(2)), **kw)


def ended(rank: int, reason: EndReason, exit_code: int | None = None) -> Instance:
    return node(rank, InstanceState.TERMINATED, reason=reason, exit_code=exit_code, ended_at=NOW - 3.0)


# --- G1: launching -------------------------------------------------------------------------------


def test_a_launch_records_every_node_and_the_head_stands_for_the_gang() -> None:
    a = replace(launching(), nodes=3)
    nodes = [node(1), node(0), node(2)]
    record, start = launched(a, nodes, False, 0.918)
    assert record == RecordNodes(a, tuple(nodes), 0.918)
    assert isinstance(start, MarkStarted) and start.instance_id == "i-1"
    pods = [node(0), node(1, InstanceState.PENDING), node(2)]
    assert launched(a, pods, True, 0.918)[1] == RecordInstance(a, "i-1")  # billed once all are bound


def test_a_pod_gang_starts_when_every_node_has_and_is_stopped_whole_if_cancelled_before() -> None:
    a = replace(launching(), nodes=3, node_spans=SPANS)
    waiting = gang(a, members=(node(1), node(2, InstanceState.PENDING)), abilities=POD_LIKE)
    assert plan_task(facts(waiting)) == ()
    *stops, end = plan_task(facts(waiting, cancel=True))[:4]
    assert {s.instance.instance_id for s in stops if isinstance(s, StopInstance)} == {"i-1", "i-2", "i-3"}
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.CANCELLED and end.unbilled
    record, started, again = plan_task(facts(gang(a, abilities=POD_LIKE)))
    assert record == RecordNodes(a, (node(0), node(1), node(2)), a.price_per_hour)
    assert isinstance(started, MarkStarted) and started.instance_id == "i-1" and again == Replan()


def test_a_gang_whose_launch_answer_was_lost_is_launched_again_until_whole_then_recorded() -> None:
    """The launch made the gang but its answer never came (no spans yet): the listing shows the head and
    only some nodes, so the same token is sent again (it returns the gang made); listed whole, every node
    is recorded from the listing as the gang starts. The simulation harness found the gap (seed 696)."""
    from tests.test_decide import SPOT_A

    a = replace(launching(), nodes=3)
    part = gang(a, members=(node(1),), relaunch_offer=SPOT_A)
    assert plan_task(facts(part)) == (LaunchAgain(a, SPOT_A),)
    record, started, _ = plan_task(facts(gang(a)))
    assert record == RecordNodes(a, (node(0), node(1), node(2)), a.price_per_hour)
    assert isinstance(started, MarkStarted) and started.instance_id == "i-1"


# --- G2, G3: one node lost ------------------------------------------------------------------------


def test_one_reclaimed_node_stops_every_other_node_first_and_the_gang_is_preempted() -> None:
    plan = plan_task(facts(gang(members=(node(1), ended(2, EndReason.PREEMPTED)))))
    stops = plan[:2]
    assert stops == (StopInstance(node(0)), StopInstance(node(1)))  # asked first, each must succeed
    end = plan[2]
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.PREEMPTED and not end.guessed
    assert end.ended_at == NOW - 3.0  # the reclaimed node's end
    # Each node billed to its own end: the reclaimed one to the cloud's, the two stopped now to now.
    assert plan[3] == EndNodes(end.attempt, (("i-1", NOW), ("i-2", NOW), ("i-3", NOW - 3.0)))
    assert plan[4:] == (ReleaseGang(end.attempt), Replan())


def test_ranks_that_fail_because_a_peer_was_reclaimed_do_not_make_the_gang_a_failure() -> None:
    members = (ended(1, EndReason.EXITED, 1), ended(2, EndReason.PREEMPTED))
    end = next(x for x in plan_task(facts(gang(members=members))) if isinstance(x, EndAttempt))
    assert end.outcome is Outcome.PREEMPTED
    # Alone, a rank that exits 1 is the job's failure (retried under max_failures).
    end = next(x for x in plan_task(facts(gang(members=(node(1), ended(2, EndReason.EXITED, 1)))))
               if isinstance(x, EndAttempt))
    assert end.outcome is Outcome.FAILED and end.exit_code == 1
    # After a notice, ranks that exit 143 were interrupted, not broken.
    notice = Notice("local", "i-3", "a", NoticeKind.INTERRUPTION, NOW - 10.0, NOW + 20.0)
    end = next(x for x in plan_task(facts(gang(members=(node(1), ended(2, EndReason.EXITED, 143)), notice=notice,
                                               notice_recorded=True)))
               if isinstance(x, EndAttempt))
    assert end.outcome is Outcome.PREEMPTED


def test_a_rank_that_finished_waits_for_the_head_which_decides() -> None:
    assert plan_task(facts(gang(members=(ended(1, EndReason.EXITED, 0), node(2))))) == ()
    done = plan_task(facts(gang(head=ended(0, EndReason.EXITED, 0), members=(ended(1, EndReason.EXITED, 0), node(2)))))
    end = done[0]
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.SUCCEEDED
    # The rank still running is stopped after the record (a failed stop leaves it to the reaper), and billed
    # to now; those that ended, to their own ends.
    assert done[1] == EndNodes(end.attempt, (("i-1", NOW - 3.0), ("i-2", NOW - 3.0), ("i-3", NOW)))
    assert done[2:] == (StopInstance(node(0, InstanceState.TERMINATED, reason=EndReason.EXITED, exit_code=0,
                                          ended_at=NOW - 3.0), must=False),
                        StopInstance(node(2), must=False), ReleaseGang(end.attempt), Replan())


def test_a_node_missing_from_the_listing_past_the_grace_is_stopped_by_id_and_the_gang_lost() -> None:
    within = gang(members=(node(1),), seen_since=NOW - LISTING_GRACE_S / 2)
    assert plan_task(facts(within)) == ()
    past = gang(members=(node(1),), seen_since=NOW - LISTING_GRACE_S - 1)
    plan = plan_task(facts(past))
    ghost, head, other = plan[:3]
    assert isinstance(ghost, StopInstance) and ghost.instance.instance_id == "i-3" and ghost.must
    assert (head, other) == (StopInstance(node(0)), StopInstance(node(1)))
    end = plan[3]
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.LOST and end.guessed


# --- G4: notices -----------------------------------------------------------------------------------


def test_a_notice_for_one_node_is_forwarded_to_every_rank_before_it_is_recorded() -> None:
    notice = Notice("local", "i-3", "a", NoticeKind.INTERRUPTION, NOW, NOW + 30.0)
    plan = plan_task(facts(gang(notice=notice)))
    assert isinstance(plan[0], ForwardNotice) and plan[0].notice == notice
    assert isinstance(plan[1], Note) and plan[1].kind == "notice"
    assert plan_task(facts(gang(notice=notice, notice_recorded=True))) == ()  # once


# --- rule 6 on a gang: every node stops ------------------------------------------------------------


def test_a_policy_stop_stops_every_node_and_releases_the_gang() -> None:
    at_risk = ctx(sit=situation(deadline_h=10.0, spot_available=False, current=Market.SPOT), now=NOW)
    plan = plan_task(facts(gang(), context=at_risk))
    stops = [x.instance.instance_id for x in plan if isinstance(x, StopInstance)]
    assert stops == ["i-1", "i-2", "i-3"]
    end = next(x for x in plan if isinstance(x, EndAttempt))
    assert end.outcome is Outcome.SWITCHED
    assert ReleaseGang(end.attempt) in plan


# --- the budget counts every node ------------------------------------------------------------------


def test_the_budget_prices_every_node_of_a_gang() -> None:
    from orchestrator.core.decide import Launch as LaunchChoice
    from orchestrator.core.decide import OverBudget, Stop, choose
    from orchestrator.core.spec import GangSpec
    from tests.test_decide import spec

    # 10 h of work + 0.1 h overhead at $0.9/h is $9.09 for one node, $36.36 for four.
    one, four = spec(budget=20.0), replace(spec(budget=20.0), gang=GangSpec(nodes=4, min_nodes=4))
    assert isinstance(choose(ctx(one, now=NOW)), LaunchChoice)
    assert isinstance(choose(ctx(four, now=NOW)), OverBudget)
    # A running gang is stopped before the next tick's cost of all its nodes would cross the budget.
    live, sit = gang_attempt(), situation(tick_h=0.1)
    spent = 20.0 - 2 * 0.918 * 0.1  # one node's next tick fits, three nodes' do not
    assert isinstance(choose(ctx(four, sit, live=live, spent_usd=spent, now=NOW)), Stop)
    single = replace(live, nodes=1, node_spans=())
    assert not isinstance(choose(ctx(one, sit, live=single, spent_usd=spent, now=NOW)), Stop)


def test_an_elastic_gang_is_tried_at_a_few_sizes_largest_first() -> None:
    from orchestrator.core.plan.launch import gang_sizes
    from orchestrator.core.spec import GangSpec
    from tests.test_decide import spec

    def sizes(nodes: int, low: int) -> tuple[int, ...]:
        return gang_sizes(replace(spec(), gang=GangSpec(nodes=nodes, min_nodes=low)))

    assert sizes(4, 4) == (4,) and sizes(1, 1) == (1,)
    assert sizes(4, 2) == (4, 3, 2)
    assert sizes(128, 64) == (128, 96, 64)  # not 65 launches a tick
    assert sizes(8, 1) == (8, 6, 4, 1)
