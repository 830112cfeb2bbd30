"""The pure decisions: what to launch (or not) under a budget, when to switch, and how attempts end."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator.core.decide import (
    Context,
    Launch,
    OverBudget,
    Stop,
    Verdict,
    Wait,
    choose,
    judge_ended,
    replace_on_notice,
)
from orchestrator.core.model import AttemptState, AttemptView, Outcome, TaskState, TaskView, check_transition
from orchestrator.core.policy import Situation
from orchestrator.core.spec import JobSpec, RetrySpec, ScheduleSpec
from vocab import EndReason, Instance, InstanceState, Market, NoticeKind, Offer, Resources


def spec(*, budget: float | None = None, policy: str | None = "greedy", market: str = "auto",
         max_failures: int = 3, recover: tuple[int, ...] = ()) -> JobSpec:
    return JobSpec(name="j", command=("x",), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=10.0, budget_usd=budget, market=market,
                                         policy=policy if market == "auto" else None),
                   retry=RetrySpec(max_failures, recover))


def offer(market: Market, price: float, zone: str = "us-east-1a", available: bool | None = None) -> Offer:
    return Offer(provider="local", region="us-east-1", zone=zone, instance_type="p3.2xlarge", market=market,
                 price_per_hour=price, gpu="V100", gpu_count=1, gpu_memory_gb=16.0, architecture="volta",
                 on_demand_price_per_hour=3.06, available=available)


SPOT_A, SPOT_B = offer(Market.SPOT, 0.95, "us-east-1a"), offer(Market.SPOT, 0.90, "us-east-1b")
OD = offer(Market.ON_DEMAND, 3.06)
OFFERS = (SPOT_A, SPOT_B, OD)


def situation(**kw: Any) -> Situation:
    base: dict[str, Any] = dict(elapsed_h=0.0, deadline_h=None, work_h=10.0, done_h=0.0, overhead_h=0.1,
                                price_ratio=3.4, current=None, spot_available=True)
    base.update(kw)
    return Situation(**base)


# Greedy past its point of no return (10 h of work + 0.1 h restart, 10 h left) with no spot: on-demand.
AT_RISK = dict(deadline_h=10.0, spot_available=False)


def live(market: Market = Market.SPOT, price: float = 0.9) -> AttemptView:
    return AttemptView(
        id="a", task_id="t", number=0, provider="local", region="us-east-1", zone="us-east-1a",
        instance_type="p3.2xlarge", market=market, price_per_hour=price, on_demand_price_per_hour=3.06,
        billing_increment_s=1, billing_minimum_s=60, state=AttemptState.RUNNING, outcome=None, instance_id="i-1",
        launched_at=0.0, started_at=0.0, ended_at=None, exit_code=None, progress_start=0.0, progress_end=None,
        last_checkpoint_at=None, productive_at=60.0)


def ctx(s: JobSpec | None = None, sit: Situation | None = None, **kw: Any) -> Context:
    return Context(spec=s or spec(), situation=sit or situation(), live=kw.pop("live", None),
                   offers=kw.pop("offers", OFFERS), **kw)


# --- launching ---------------------------------------------------------------------------------


def test_launch_offers_cheapest_usable_first() -> None:
    action = choose(ctx())
    assert isinstance(action, Launch)
    assert action.offers == (SPOT_B, SPOT_A)
    # Avoided (recent capacity error) and known-unavailable offers are skipped until they may work again.
    avoided = ctx(avoid={SPOT_B.key: 100.0}, now=50.0,
                  offers=(SPOT_A, SPOT_B, offer(Market.SPOT, 0.5, "us-east-1c", available=False), OD))
    action = choose(avoided)
    assert isinstance(action, Launch) and action.offers == (SPOT_A,)
    assert action.reason.startswith("spot capacity is available, "), action.reason
    assert choose(replace(avoided, now=100.0)).offers == (SPOT_B, SPOT_A)  # type: ignore[union-attr]


def test_no_spot_and_no_deadline_waits() -> None:
    assert isinstance(choose(ctx(sit=situation(spot_available=False))), Wait)
    assert isinstance(choose(ctx(offers=(OD,))), Wait)  # the policy chose spot; no spot offer is usable


def test_on_demand_when_the_deadline_is_at_risk() -> None:
    action = choose(ctx(sit=situation(**AT_RISK)))
    assert isinstance(action, Launch) and action.offers == (OD,)
    assert action.reason.startswith("no spot capacity is usable now and the deadline will not wait; -0.10 h to spare")


# --- the budget --------------------------------------------------------------------------------


def test_budget_allows_what_fits() -> None:
    # 10 h + 0.1 h at $0.90 = $9.09, plus $5 spent and $3 for the other tasks: $17.09 <= $17.10.
    action = choose(ctx(spec(budget=17.10), spent_usd=5.0, others_usd=3.0))
    assert isinstance(action, Launch) and action.offers == (SPOT_B,)  # $0.95 would make $17.595


def test_over_budget_when_even_the_cheapest_offer_would_break_it() -> None:
    action = choose(ctx(spec(budget=9.0)))
    assert isinstance(action, OverBudget)
    assert "$9.00 budget" in action.reason


def test_waits_for_spot_when_only_on_demand_would_break_the_budget() -> None:
    action = choose(ctx(spec(budget=20.0), sit=situation(**AT_RISK)))
    assert isinstance(action, Wait) and "waiting for spot" in action.reason
    # With an on-demand market there is nothing to wait for.
    assert isinstance(choose(ctx(spec(budget=20.0, market="on-demand"))), OverBudget)


def test_budget_spent_stops_the_live_attempt_and_refuses_new_ones() -> None:
    assert choose(ctx(spec(budget=10.0), spent_usd=10.0, live=live())) == Stop(
        Outcome.BUDGET, ("over_budget",), "spent $10.00 of $10.00; the next tick would pass it")
    # A cap, not a target: stopped when the next tick's cost would cross it, not a tick after it did.
    minute = situation(tick_h=1 / 60)
    assert isinstance(choose(ctx(spec(budget=10.0), spent_usd=9.97, live=live(Market.ON_DEMAND, 3.06), sit=minute)),
                      Stop)
    kept = choose(ctx(spec(budget=10.0), spent_usd=9.9, live=live(Market.ON_DEMAND, 3.06), sit=minute))
    assert not (isinstance(kept, Stop) and kept.outcome is Outcome.BUDGET)
    assert isinstance(choose(ctx(spec(budget=10.0), spent_usd=10.5)), OverBudget)


def test_the_next_tick_is_the_jobs_other_live_attempts_spend_in_it_too() -> None:
    """Two workers of one job, each under the budget by its own next tick, would cross it together
    (the harness's seed 1037): each sees the job's whole next tick and is stopped before it does."""
    minute = situation(tick_h=1 / 60)
    own_tick = 3.06 / 60  # $0.051
    alone = ctx(spec(budget=10.0), spent_usd=10.0 - 1.5 * own_tick, live=live(Market.ON_DEMAND, 3.06), sit=minute)
    kept = choose(alone)
    assert not (isinstance(kept, Stop) and kept.outcome is Outcome.BUDGET)
    both = choose(replace(alone, others_hourly_usd=3.06))
    assert both == Stop(Outcome.BUDGET, ("over_budget",), "spent $9.92 of $10.00; the next tick would pass it")
    # An idle task spends nothing in the next tick: the others' attempts are theirs to stop (it is
    # refused only by what its own work would cost, the launch guard).
    idle = choose(replace(alone, live=None, others_hourly_usd=3.06))
    assert isinstance(idle, OverBudget) and idle.reason.startswith("the remaining work")


# --- a live attempt ----------------------------------------------------------------------------


def test_stays_on_the_market_the_policy_wants() -> None:
    assert choose(ctx(live=live())) == Wait("running on spot")


def test_switches_to_on_demand_when_the_deadline_needs_it() -> None:
    # The spot attempt has not become productive (it owes its overhead), spot is gone: switch.
    sit = situation(current=Market.SPOT, overhead_left_h=0.1, **AT_RISK)
    assert choose(ctx(sit=sit, live=live())) == Stop(Outcome.SWITCHED, ("switch",),
                                                     "policy: switch from spot to on-demand: the deadline needs it "
                                                     "(-0.10 h to spare before the deadline)")
    # No usable on-demand offer: keep what runs.
    assert isinstance(choose(ctx(sit=sit, live=live(), offers=(SPOT_A,))), Wait)


def test_never_switches_into_a_market_that_breaks_the_budget() -> None:
    sit = situation(current=Market.SPOT, overhead_left_h=0.1, **AT_RISK)
    action = choose(ctx(spec(budget=20.0), sit=sit, live=live()))
    assert isinstance(action, Wait) and "budget" in action.reason


def test_leaves_on_demand_for_spot_when_ahead() -> None:
    # Uniform Progress: on on-demand, spot is back and the work is ahead of the line at t + 2d.
    sit = situation(deadline_h=40.0, elapsed_h=10.0, done_h=5.0, current=Market.ON_DEMAND)
    action = choose(ctx(spec(policy="uniform-progress"), sit=sit, live=live(Market.ON_DEMAND, 3.06)))
    assert action == Stop(Outcome.SWITCHED, ("switch",), "policy: switch from on-demand to spot: capacity is back "
                                                         "and the deadline allows it (24.90 h to spare before the "
                                                         "deadline)")
    # Even when the budget is tight: the cheaper market can only help it.
    tight = choose(ctx(spec(policy="uniform-progress", budget=4.0), sit=sit, live=live(Market.ON_DEMAND, 3.06)))
    assert tight == action


def test_leaves_on_demand_to_wait_when_the_policy_waits() -> None:
    sit = situation(deadline_h=40.0, spot_available=False, current=Market.ON_DEMAND)
    action = choose(ctx(sit=sit, live=live(Market.ON_DEMAND, 3.06)))
    assert isinstance(action, Stop) and action.transitions == ("switch",)


def test_finished_work_is_not_stopped_and_a_finished_pending_task_is_launched() -> None:
    done = situation(done_h=10.0, current=Market.SPOT)
    assert isinstance(choose(ctx(sit=done, live=live())), Wait)
    # All work committed but the attempt ended before exiting: the task needs one more attempt to succeed.
    action = choose(ctx(sit=replace(done, current=None)))
    assert isinstance(action, Launch) and action.offers[0] is SPOT_B
    action = choose(ctx(sit=replace(done, current=None), offers=(OD,)))
    assert isinstance(action, Launch) and action.offers == (OD,)


# --- how an attempt ended ----------------------------------------------------------------------


def task(failures: int = 0) -> TaskView:
    return TaskView(id="t", job_id="j", index=0, state=TaskState.RUNNING, failures=failures,
                    progress_committed=0.0, progress_reported=0.0, checkpoint_uri="file:///ck",
                    item_start=None, item_end=None)


def ended(reason: EndReason | None, exit_code: int | None = None) -> Instance:
    return Instance(provider="local", region="us-east-1", zone=None, instance_id="i-1", instance_type="p3.2xlarge",
                    market=Market.SPOT, state=InstanceState.TERMINATED, attempt_id="a", reason=reason,
                    exit_code=exit_code)


def judge(inst: Instance | None, *, failures: int = 0, exit_code: int | None = None, cancel: bool = False,
          interrupted: bool = False, **spec_kw: Any) -> Verdict:
    verdict = judge_ended(spec(**spec_kw), task(failures), live(), inst, exit_code, cancel_requested=cancel,
                          interrupted=interrupted)
    state = TaskState.RUNNING  # every verdict must be a legal path out of running
    for name in verdict.transitions:
        state = check_transition(name, state).target
    return verdict


def test_success() -> None:
    v = judge(ended(EndReason.EXITED, 0))
    assert (v.outcome, v.transitions, v.exit_code) == (Outcome.SUCCEEDED, ("succeed",), 0)


def test_preemption_requeues_without_counting_a_failure() -> None:
    v = judge(ended(EndReason.PREEMPTED, 143), failures=2)
    assert (v.outcome, v.transitions, v.failures) == (Outcome.PREEMPTED, ("preempted", "requeue"), None)


@pytest.mark.parametrize("inst", [None, ended(EndReason.LOST), ended(EndReason.TERMINATED)],
                         ids=["gone", "lost", "terminated"])
def test_vanished_instances_requeue(inst: Instance | None) -> None:
    v = judge(inst)
    assert (v.outcome, v.transitions) == (Outcome.LOST, ("preempted", "requeue"))


@pytest.mark.parametrize("reason", [EndReason.EXITED, EndReason.FAILED_TO_START])
def test_an_end_without_exit_status_counts_as_a_failure_so_it_cannot_loop(reason: EndReason) -> None:
    """An instance that shut itself down with no agent to say how (no agent on the image, no S3 access)."""
    v = judge(ended(reason, None), failures=1)
    assert (v.outcome, v.transitions, v.failures) == (Outcome.FAILED, ("retry",), 2)
    v = judge(ended(reason, None), failures=3)
    assert (v.outcome, v.transitions) == (Outcome.FAILED, ("fail",))


def test_an_interrupted_job_that_saved_and_shut_down_is_a_preemption_not_a_failure() -> None:
    """On AWS the job exits 143 after its notice and the instance shuts itself down: EXITED, 143."""
    v = judge(ended(EndReason.EXITED, 143), failures=3, interrupted=True)
    assert (v.outcome, v.transitions, v.failures) == (Outcome.PREEMPTED, ("preempted", "requeue"), None)
    # Without the notice, the same exit is the job's own failure.
    assert judge(ended(EndReason.EXITED, 143), failures=0).outcome is Outcome.FAILED


def test_failures_count_up_to_max_failures() -> None:
    assert [judge(ended(EndReason.EXITED, 1), failures=f, max_failures=2).transitions for f in range(3)] == [
        ("retry",), ("retry",), ("fail",)]
    v = judge(ended(EndReason.EXITED, 1), failures=1, max_failures=2)
    assert (v.outcome, v.failures, v.exit_code) == (Outcome.FAILED, 2, 1)
    assert judge(ended(EndReason.EXITED, 1), max_failures=0).transitions == ("fail",)


def test_recoverable_exit_codes_retry_without_counting() -> None:
    v = judge(ended(EndReason.EXITED, 75), failures=3, max_failures=3, recover=(75,))
    assert (v.outcome, v.transitions, v.failures, v.exit_code) == (Outcome.FAILED, ("retry",), None, 75)


def test_the_heartbeat_exit_code_wins_over_the_instance() -> None:
    assert judge(ended(EndReason.EXITED, 1), exit_code=0).transitions == ("succeed",)


def test_cancellation() -> None:
    v = judge(ended(EndReason.TERMINATED), cancel=True)
    assert (v.outcome, v.transitions) == (Outcome.CANCELLED, ("cancel",))
    # A job that finished on its own while being cancelled still succeeded.
    assert judge(ended(EndReason.EXITED, 0), cancel=True).transitions == ("succeed",)


@pytest.mark.parametrize("reason", [EndReason.PREEMPTED, EndReason.EXITED, EndReason.TERMINATED, EndReason.LOST])
def test_exit_zero_is_success_whatever_the_notice(reason: EndReason) -> None:
    """A job that finished inside its notice window, or whose instance was reclaimed after it exited."""
    for inst, hb in ((ended(reason, 0), None), (ended(reason, None), 0)):
        v = judge(inst, exit_code=hb, interrupted=True)
        assert (v.outcome, v.transitions, v.exit_code, v.unbilled) == (Outcome.SUCCEEDED, ("succeed",), 0, False)


def test_an_instance_that_never_started_the_job_is_not_billed() -> None:
    v = judge(ended(EndReason.FAILED_TO_START, None), failures=0)
    assert (v.outcome, v.transitions, v.unbilled) == (Outcome.FAILED, ("retry",), True)
    assert "never started" in v.message
    assert judge(ended(EndReason.FAILED_TO_START, None), cancel=True).unbilled
    # Once the job ran (it exited), the time is billed.
    assert not judge(ended(EndReason.FAILED_TO_START, None), exit_code=3).unbilled
    assert not judge(ended(EndReason.EXITED, None)).unbilled


# --- replacing on an interruption notice -------------------------------------------------------


def test_a_notice_replaces_on_spot_elsewhere_when_the_policy_continues() -> None:
    # The noticed attempt ran on SPOT_A: avoided, so the successor goes to the other zone.
    c = ctx(avoid={SPOT_A.key: 500.0}, now=10.0)
    action = replace_on_notice(c, kind=NoticeKind.INTERRUPTION, deadline=130.0)
    assert isinstance(action, Launch) and action.offers == (SPOT_B,)


def test_a_notice_replaces_on_demand_when_no_spot_is_left_and_the_deadline_needs_it() -> None:
    c = ctx(sit=situation(**AT_RISK), offers=(SPOT_A, OD), avoid={SPOT_A.key: 500.0}, now=10.0)
    action = replace_on_notice(c, kind=NoticeKind.INTERRUPTION, deadline=130.0)
    assert isinstance(action, Launch) and action.offers == (OD,)


def test_no_replacement_for_rebalance_late_notices_a_waiting_policy_or_a_live_context() -> None:
    c = ctx(avoid={SPOT_A.key: 500.0}, now=10.0)
    assert isinstance(replace_on_notice(c, kind=NoticeKind.REBALANCE, deadline=None), Wait)
    assert isinstance(replace_on_notice(c, kind=NoticeKind.INTERRUPTION, deadline=None), Wait)
    assert isinstance(replace_on_notice(c, kind=NoticeKind.INTERRUPTION, deadline=10.0), Wait)
    assert isinstance(replace_on_notice(replace(c, live=live()), kind=NoticeKind.INTERRUPTION, deadline=130.0), Wait)
    # Greedy without a deadline waits for spot when none is left: the old attempt just runs out.
    gone = ctx(offers=(SPOT_A, OD), avoid={SPOT_A.key: 500.0}, now=10.0)
    assert isinstance(replace_on_notice(gone, kind=NoticeKind.INTERRUPTION, deadline=130.0), Wait)
    # Over budget: no replacement either.
    broke = ctx(spec(budget=1.0), spent_usd=2.0, avoid={SPOT_A.key: 500.0}, now=10.0)
    assert isinstance(replace_on_notice(broke, kind=NoticeKind.INTERRUPTION, deadline=130.0), Wait)
