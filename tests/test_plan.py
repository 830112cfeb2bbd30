"""The loop's plan on plain values: each rule of `core.plan.task` (its docstring numbers them), with no
store, no provider and no clock. What the executor then does with the actions is the loop tests' part."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator.core.campaign_plan import CampaignFacts
from orchestrator.core.decide import Context
from orchestrator.core.live import HEARTBEAT_TIMEOUT_S, LISTING_GRACE_S
from orchestrator.core.model import AttemptState, AttemptView, Outcome, TaskState, Transition
from orchestrator.core.plan.actions import (
    AvoidOffers,
    EndAttempt,
    Launch,
    LaunchAgain,
    MarkStarted,
    MoveTask,
    Note,
    RecordInstance,
    ReleaseItems,
    Replan,
    StopInstance,
)
from orchestrator.core.plan.facts import JobFacts, LiveFacts, TaskFacts
from orchestrator.core.plan.launch import QUOTA_AVOID_S, launch_request, launched, refused
from orchestrator.core.plan.progress import ProgressRead, Seen, observe
from orchestrator.core.plan.task import RECLAIMED_AVOID_S, attempt_key, plan_task
from orchestrator.job.item_records import ItemCounts
from tests.test_cost import task
from tests.test_decide import OD, OFFERS, SPOT_A, SPOT_B, ctx, situation, spec
from tests.test_decide import live as running
from vocab import (
    RESUME_NOT_BEFORE,
    Abilities,
    CapacityError,
    EndReason,
    Instance,
    InstanceState,
    Market,
    Notice,
    NoticeKind,
    PermanentError,
    QuotaError,
)

NOW = 10_000.0
PLAIN, AWS_LIKE, POD_LIKE = Abilities(), Abilities(replaces_on_notice=True), Abilities(bills_from_start=True,
                                                                                      stops_gracefully=True)


def instance(state: InstanceState = InstanceState.RUNNING, **kw: Any) -> Instance:
    base: dict[str, Any] = dict(provider="local", region="us-east-1", zone="us-east-1a", instance_id="i-1",
                                instance_type="p3.2xlarge", market=Market.SPOT, state=state, attempt_id="a",
                                launched_at=5.0)
    base.update(kw)
    return Instance(**base)


def facts(live: LiveFacts | None = None, *, cancel: bool = False, context: Context | None = None,
          state: TaskState | None = None, attempts: tuple[AttemptView, ...] = (), budget: float | None = None,
          campaign: CampaignFacts | None = None, abilities: dict[str, Abilities] | None = None) -> TaskFacts:
    s = spec(budget=budget)
    t = task(state=state or (TaskState.RUNNING if live is not None else TaskState.PENDING), id="t")
    the_context = context or ctx(s, now=NOW)

    def context_of(a: AttemptView | None) -> Context:
        return replace(the_context, live=a)

    return TaskFacts(job=JobFacts("j", s, 0.0, cancel_requested=cancel), task=t, attempts=attempts, live=live,
                     now=NOW, context=context_of, abilities=abilities or {"local": PLAIN}, campaign=campaign)


def live_facts(attempt: AttemptView | None = None, inst: Instance | None = None, **kw: Any) -> LiveFacts:
    base: dict[str, Any] = dict(abilities=PLAIN, listed=True, instance=inst, seen_since=NOW - 10.0,
                                seen=Seen(heartbeat_at=NOW - 5.0))
    base.update(kw)
    return LiveFacts(attempt or running(), **base)


def launching(**kw: Any) -> AttemptView:
    return replace(running(), state=AttemptState.LAUNCHING, started_at=None, instance_id=None, **kw)


# --- rule 1: an unlisted provider ---------------------------------------------------------------


def test_nothing_is_decided_about_an_attempt_whose_provider_could_not_be_listed() -> None:
    assert plan_task(facts(live_facts(listed=False), cancel=True)) == ()


# --- rule 2: a launching attempt -----------------------------------------------------------------


def test_a_launch_left_by_a_dead_controller_is_made_again_with_the_same_token_or_given_up() -> None:
    a = launching()
    assert plan_task(facts(live_facts(a, relaunch_offer=SPOT_A))) == (LaunchAgain(a, SPOT_A),)
    (end,) = plan_task(facts(live_facts(a)))
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.LAUNCH_FAILED and end.unbilled


def test_a_pod_waiting_for_a_node_is_not_billed_and_is_stopped_unbilled_on_cancel() -> None:
    a, pod = launching(), instance(InstanceState.PENDING)
    assert plan_task(facts(live_facts(a, pod, abilities=POD_LIKE))) == ()
    stop, end = plan_task(facts(live_facts(a, pod, abilities=POD_LIKE), cancel=True))
    assert stop == StopInstance(pod)
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.CANCELLED and end.unbilled


def test_a_started_instance_is_billed_from_the_clouds_launch_time_or_from_when_it_is_seen() -> None:
    a = launching()
    assert plan_task(facts(live_facts(a, instance()))) == (MarkStarted(a, "i-1", 5.0), Replan())
    assert plan_task(facts(live_facts(a, instance(), abilities=POD_LIKE))) == (MarkStarted(a, "i-1", None), Replan())


# --- rule 3: gone or ended ------------------------------------------------------------------------


def test_a_missing_instance_waits_out_the_listing_grace_then_is_stopped_by_id_and_given_up() -> None:
    assert plan_task(facts(live_facts(seen_since=NOW - LISTING_GRACE_S + 1))) == ()
    stop, end, again = plan_task(facts(live_facts(seen_since=NOW - LISTING_GRACE_S - 1)))
    assert isinstance(stop, StopInstance) and stop.must and stop.instance.instance_id == "i-1"
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.LOST and end.guessed and end.ended_at == NOW
    assert again == Replan()


def test_a_cancelled_attempt_asked_to_stop_gets_no_listing_grace() -> None:
    planned = plan_task(facts(live_facts(asked_to_stop=True), cancel=True))
    assert [type(a) for a in planned] == [StopInstance, EndAttempt, Replan]


def test_a_reclaimed_instance_ends_the_attempt_at_the_clouds_end_and_releases_what_is_left() -> None:
    gone = instance(InstanceState.TERMINATED, reason=EndReason.PREEMPTED, ended_at=NOW - 30.0)
    end, release, again = plan_task(facts(live_facts(inst=gone)))
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.PREEMPTED and end.ended_at == NOW - 30.0
    assert not end.guessed and release == StopInstance(gone, must=False) and again == Replan()


def test_a_campaign_worker_that_ends_gives_its_items_back() -> None:
    gone = instance(InstanceState.TERMINATED, reason=EndReason.PREEMPTED, ended_at=NOW)
    planned = plan_task(facts(live_facts(inst=gone), campaign=CampaignFacts(ItemCounts(queued=5))))
    assert ReleaseItems(running(), None) in planned


# --- rule 4 ----------------------------------------------------------------------------------------


def test_a_job_that_says_it_is_done_is_recorded_done_then_its_live_instance_stopped() -> None:
    alive = instance()
    end, stop = plan_task(facts(live_facts(inst=alive, seen=Seen(exit_code=0, heartbeat_at=NOW))))
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.SUCCEEDED
    assert stop == StopInstance(alive, must=False)  # the live instance, not a copy marked terminated


# --- rule 5: notices --------------------------------------------------------------------------------


def test_an_interruption_avoids_the_capacity_first_then_hands_the_task_over() -> None:
    notice = Notice(provider="local", instance_id="i-1", attempt_id="a", kind=NoticeKind.INTERRUPTION, at=NOW,
                    deadline=NOW + 120.0)
    lf = live_facts(inst=instance(), notice=notice, abilities=AWS_LIKE)
    first = plan_task(facts(lf, abilities={"local": AWS_LIKE}))
    assert first == (Note("notice", "interruption notice for attempt 0, 120 s to save", "a"),
                     AvoidOffers((attempt_key(running()),), NOW + 120.0 + RECLAIMED_AVOID_S), Replan())
    avoided = replace(lf, notice_recorded=True, reclaim_avoided=True)
    end, launch = plan_task(facts(avoided, abilities={"local": AWS_LIKE},
                                  context=ctx(offers=(SPOT_B, OD), now=NOW)))
    assert isinstance(end, EndAttempt) and end.outcome is Outcome.PREEMPTED and end.ended_at == NOW + 120.0
    assert end.guessed and isinstance(launch, Launch) and launch.offers[0] == SPOT_B


def test_a_provider_that_cannot_hold_a_successor_back_lets_the_attempt_run_out() -> None:
    notice = Notice(provider="local", instance_id="i-1", attempt_id="a", kind=NoticeKind.INTERRUPTION, at=NOW,
                    deadline=NOW + 30.0)
    planned = plan_task(facts(live_facts(inst=instance(), notice=notice, notice_recorded=True)))
    assert planned == ()


# --- rule 6: keep or stop ---------------------------------------------------------------------------


def test_cancel_ends_at_once_where_stops_are_immediate_and_when_seen_gone_where_they_are_graceful() -> None:
    inst = instance()
    stop, end = plan_task(facts(live_facts(inst=inst), cancel=True))
    assert stop == StopInstance(inst) and isinstance(end, EndAttempt) and end.outcome is Outcome.CANCELLED
    asked = plan_task(facts(live_facts(inst=inst, abilities=POD_LIKE), cancel=True))
    assert asked == (StopInstance(inst), Note("stopping", "attempt 0: cancelled by the user; its instance may save "
                                                         "until it stops", "a"))
    assert plan_task(facts(live_facts(inst=inst, abilities=POD_LIKE, asked_to_stop=True), cancel=True)) == (
        StopInstance(inst),)
    saving = instance(InstanceState.STOPPING)
    assert plan_task(facts(live_facts(inst=saving, abilities=POD_LIKE, asked_to_stop=True), cancel=True)) == ()


def test_a_silent_attempt_is_stopped_and_replanned_but_an_unread_one_is_not_judged_silent() -> None:
    quiet = Seen(heartbeat_at=NOW - HEARTBEAT_TIMEOUT_S - 1)
    planned = plan_task(facts(live_facts(inst=instance(), seen=quiet)))
    assert [type(a) for a in planned] == [StopInstance, EndAttempt, Replan]
    assert planned[1].outcome is Outcome.LOST  # type: ignore[union-attr]
    never_read = replace(running(), started_at=0.0)
    assert plan_task(facts(live_facts(never_read, instance(), seen=Seen(unread=True)))) == ()


def test_the_policy_switches_a_spot_attempt_to_on_demand_when_the_deadline_needs_it() -> None:
    at_risk = ctx(sit=situation(deadline_h=10.0, spot_available=False, current=Market.SPOT), now=NOW)
    planned = plan_task(facts(live_facts(inst=instance()), context=at_risk))
    assert [type(a) for a in planned] == [StopInstance, EndAttempt, Replan]
    assert planned[1].outcome is Outcome.SWITCHED  # type: ignore[union-attr]


# --- rule 7: no live attempt ---------------------------------------------------------------------------


def test_a_pending_task_is_cancelled_or_placed_by_the_policy() -> None:
    assert plan_task(facts(cancel=True)) == (MoveTask("t", Transition.CANCEL, "cancelled before launch"),)
    (launch,) = plan_task(facts())
    assert isinstance(launch, Launch) and launch.offers == (SPOT_B, SPOT_A)


def test_a_task_over_its_budget_is_stopped_before_launch() -> None:
    poor = ctx(spec(budget=1.0), spent_usd=1.0, now=NOW)
    (move,) = plan_task(facts(context=poor, budget=1.0))
    assert isinstance(move, MoveTask) and move.transition is Transition.OVER_BUDGET


def test_a_predecessor_still_saving_limits_the_offers_to_providers_that_can_hold_the_job_back() -> None:
    saving = replace(running(), state=AttemptState.ENDED, outcome=Outcome.PREEMPTED, ended_at=NOW + 60.0)
    assert plan_task(facts(attempts=(saving,))) == ()
    (launch,) = plan_task(facts(attempts=(saving,), abilities={"local": AWS_LIKE}))
    assert isinstance(launch, Launch)


def test_a_worker_slot_retires_when_no_item_is_left() -> None:
    (move,) = plan_task(facts(campaign=CampaignFacts(ItemCounts(done=3))))
    assert isinstance(move, MoveTask) and move.transition is Transition.RETIRE


# --- a launch's answer ------------------------------------------------------------------------------------


def test_a_refused_launch_is_unbilled_and_avoids_what_the_refusal_covers() -> None:
    a = launching()
    avoid, end = refused(CapacityError("no spot", retry_after=90.0), a, SPOT_A, OFFERS, NOW)
    assert avoid == AvoidOffers((SPOT_A.key,), NOW + 90.0)
    assert isinstance(end, EndAttempt) and end.unbilled and end.transitions == (Transition.LAUNCH_FAILED,)
    avoid, _ = refused(QuotaError("limit"), a, SPOT_A, OFFERS, NOW)
    assert avoid == AvoidOffers((SPOT_A.key, SPOT_B.key, OD.key), NOW + QUOTA_AVOID_S)
    (end,) = refused(PermanentError("no permission"), a, SPOT_A, OFFERS, NOW)
    assert isinstance(end, EndAttempt) and end.transitions == (Transition.LAUNCH_FAILED, Transition.FAIL)
    (end,) = refused(ValueError("embedded\nnull byte"), a, SPOT_A, OFFERS, NOW)
    assert isinstance(end, EndAttempt) and Transition.FAIL in end.transitions
    assert end.message.endswith("ValueError: embedded null byte")


def test_a_launched_pod_is_recorded_unbilled_until_it_starts() -> None:
    a = launching()
    assert launched(a, [instance(InstanceState.PENDING)], True, 1.0) == (RecordInstance(a, "i-1"),)
    assert launched(a, [instance(InstanceState.PENDING)], False, 1.0) == (MarkStarted(a, "i-1", 5.0),)


def test_a_replacement_resumes_not_before_its_predecessors_notice_deadline() -> None:
    saving = replace(running(), id="old", state=AttemptState.ENDED, outcome=Outcome.PREEMPTED, ended_at=NOW + 59.5)
    new = replace(launching(), id="new", number=1, launched_at=NOW)
    request = launch_request(spec(), "j", task(id="t"), new, SPOT_A, (saving, new), None)
    assert request.env[RESUME_NOT_BEFORE] == str(int(NOW + 60.0))
    later = launch_request(spec(), "j", task(id="t"), replace(new, launched_at=NOW + 61.0), SPOT_A, (saving,), None)
    assert RESUME_NOT_BEFORE not in later.env


# --- what progress reads mean ------------------------------------------------------------------------------


def test_progress_backdates_when_work_began_and_a_predecessors_save_is_not_this_attempts() -> None:
    a = replace(running(), number=2, launched_at=1000.0, productive_at=None, progress_start=0.5)
    read = ProgressRead(fresh=True, heartbeat_at=1990.0, reported=0.6, committed=0.55, checkpoint_attempt=1,
                        checkpoint_at=1500.0)
    o = observe(task(progress_committed=0.5), a, provider_progress=None, read=read, work_hours=10.0, now=2000.0)
    # 0.1 of 10 h reported since the start: work began an hour back, but never before the launch.
    assert o.notes["productive_at"] == 1000.0 and o.notes["progress_end"] == 0.55
    assert o.task_values == {"progress_committed": 0.55, "progress_reported": 0.6} and o.seen.moved
    small = replace(read, reported=0.5005, committed=0.5, checkpoint_attempt=2)
    o = observe(task(progress_committed=0.5), a, provider_progress=None, read=small, work_hours=10.0, now=2000.0)
    assert o.notes["productive_at"] == pytest.approx(2000.0 - 18.0)
    assert observe(task(), a, provider_progress=None, read=None, work_hours=1.0, now=0.0).seen == Seen(unread=True)
