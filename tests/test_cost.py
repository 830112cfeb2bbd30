"""Cost figures against hand-computed examples: every dollar derives from attempts' prices and times."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator.core.cost import attempt_cost, attempt_lost, attempt_seconds, job_cost
from orchestrator.core.model import AttemptState, AttemptView, Outcome, TaskState, TaskView
from orchestrator.core.spec import ArraySpec, JobSpec, ScheduleSpec
from orchestrator.core.status import job_status, task_work_hours
from vocab import Billing, Market, Offer, Resources

approx = pytest.approx


def att(**kw: Any) -> AttemptView:
    base: dict[str, Any] = dict(
        id="a0", task_id="t0", number=0, provider="local", region="us-east-1", zone=None,
        instance_type="p3.2xlarge", market=Market.SPOT, price_per_hour=0.9, on_demand_price_per_hour=3.06,
        billing_increment_s=1, billing_minimum_s=60, state=AttemptState.ENDED, outcome=Outcome.SUCCEEDED,
        instance_id="i-0", launched_at=0.0, started_at=0.0, ended_at=3600.0, exit_code=0, progress_start=0.0,
        progress_end=None, last_checkpoint_at=None)
    base.update(kw)
    return AttemptView(**base)


def task(**kw: Any) -> TaskView:
    base: dict[str, Any] = dict(id="t0", job_id="j", index=0, state=TaskState.RUNNING, failures=0,
                                progress_committed=0.0, progress_reported=0.0, checkpoint_uri="file:///ck",
                                item_start=None, item_end=None)
    base.update(kw)
    return TaskView(**base)


# --- one attempt -------------------------------------------------------------------------------


def test_an_hour_costs_the_hourly_price() -> None:
    assert attempt_cost(att(), now=99_999.0) == approx(0.9)


def test_per_second_billing_with_the_sixty_second_minimum() -> None:
    # 30 s is billed as 60 s; 90.4 s as 91 s (per-second increments round up).
    assert attempt_cost(att(price_per_hour=3.6, ended_at=30.0), now=0.0) == approx(0.06)
    assert attempt_cost(att(price_per_hour=3.6, ended_at=90.4), now=0.0) == approx(0.091)
    # Per-minute billing: 61 s is two minutes.
    assert attempt_cost(att(price_per_hour=3.6, ended_at=61.0, billing_increment_s=60), now=0.0) == approx(0.12)
    # An attempt that ended the instant it launched was never billed.
    assert attempt_cost(att(ended_at=0.0), now=0.0) == 0.0
    assert Billing(1, 60).billed_seconds(-5.0) == 0.0


def test_a_running_attempt_is_billed_from_its_recorded_start_up_to_now() -> None:
    # Most providers' attempts start when launched (the loop records started_at = launched_at).
    running = att(state=AttemptState.RUNNING, outcome=None, launched_at=1000.0, started_at=1000.0, ended_at=None,
                  price_per_hour=2.0)
    assert attempt_seconds(running, now=2800.0) == 1800.0
    assert attempt_cost(running, now=2800.0) == approx(1.0)
    assert attempt_cost(running, now=4600.0) == approx(2.0)
    # A pod is billed from when it was seen bound and running, not from when it was asked for.
    pod = att(state=AttemptState.RUNNING, outcome=None, launched_at=1000.0, started_at=1600.0, ended_at=None,
              price_per_hour=2.0)
    assert attempt_seconds(pod, now=2800.0) == 1200.0


def test_an_attempt_still_launching_costs_nothing() -> None:
    waiting = att(state=AttemptState.LAUNCHING, outcome=None, launched_at=1000.0, started_at=None, ended_at=None,
                  price_per_hour=2.0)
    assert attempt_seconds(waiting, now=5000.0) == 0.0 and attempt_cost(waiting, now=5000.0) == 0.0


def test_an_unbilled_launch_failure_costs_nothing() -> None:
    refused = att(outcome=Outcome.LAUNCH_FAILED, unbilled=True, ended_at=45.0, instance_id=None)
    assert attempt_cost(refused, now=100.0) == 0.0


def test_work_lost_to_a_preemption_is_time_since_the_last_checkpoint_at_its_price() -> None:
    preempted = att(outcome=Outcome.PREEMPTED, productive_at=600.0, last_checkpoint_at=3000.0, ended_at=4000.0)
    assert attempt_lost(preempted) == approx(1000 * 0.9 / 3600)  # 0.25
    # No checkpoint in this attempt: everything since it became productive is lost.
    assert attempt_lost(replace(preempted, last_checkpoint_at=None)) == approx(3400 * 0.9 / 3600)  # 0.85
    # Not even productive: since it started.
    assert attempt_lost(replace(preempted, last_checkpoint_at=None, productive_at=None, started_at=200.0)) == approx(
        3800 * 0.9 / 3600)
    # Only preemptions lose work.
    assert attempt_lost(replace(preempted, outcome=Outcome.SUCCEEDED)) == 0.0
    assert attempt_lost(replace(preempted, outcome=Outcome.FAILED)) == 0.0


def test_a_checkpoint_at_time_zero_counts() -> None:
    # Simulated clocks start at 0: a checkpoint written then is a checkpoint, not "none".
    preempted = att(outcome=Outcome.PREEMPTED, launched_at=0.0, started_at=0.0, last_checkpoint_at=0.0,
                    productive_at=600.0, ended_at=3600.0)
    assert attempt_lost(preempted) == approx(0.9)


# --- a job -------------------------------------------------------------------------------------


def test_job_cost_is_the_sum_over_attempts() -> None:
    attempts = [
        att(id="a0", outcome=Outcome.PREEMPTED, ended_at=3600.0, productive_at=360.0, last_checkpoint_at=3000.0),
        att(id="a1", number=1, outcome=Outcome.LAUNCH_FAILED, unbilled=True, launched_at=3600.0,
            started_at=None, ended_at=3601.0),
        att(id="a2", number=2, market=Market.ON_DEMAND, price_per_hour=3.06, state=AttemptState.RUNNING,
            outcome=None, launched_at=3601.0, started_at=3601.0, ended_at=None),
    ]
    cost = job_cost(attempts, now=7201.0, remaining_usd=10.0, on_demand_only_usd=30.0)
    assert cost.spot_usd == approx(0.9)
    assert cost.on_demand_usd == approx(3.06)
    assert cost.spent_usd == approx(sum(attempt_cost(a, 7201.0) for a in attempts)) == approx(3.96)
    assert cost.projected_usd == approx(13.96)
    # job_cost's default state is an unfinished job: the difference is a projection, never earned.
    assert cost.saved_usd is None and cost.projected_saved_usd == approx(30.0 - 13.96)
    assert cost.lost_usd == approx(0.15)
    assert cost.preemptions == 1
    assert [cost.spot_hours, cost.on_demand_hours] == approx([1.0, 1.0])
    assert cost.to_dict()["spent_usd"] == 3.96


def _spec(**schedule: Any) -> JobSpec:
    return JobSpec(name="j", command=("x",), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(**{"estimated_hours": 10.0, "policy": "greedy", **schedule}))


OFFERS = [
    Offer(provider="local", region="us-east-1", zone=None, instance_type="p3.2xlarge", market=m, price_per_hour=p,
          gpu="V100", gpu_count=1, gpu_memory_gb=16.0, architecture="volta", on_demand_price_per_hour=3.06)
    for m, p in ((Market.SPOT, 0.9), (Market.ON_DEMAND, 3.06))
]


def test_job_status_of_a_small_job() -> None:
    """10 h of work; 1 h on spot (preempted at 40%), then on-demand for the last hour, still running."""
    created = 1_000_000.0
    attempts = [
        att(id="a0", outcome=Outcome.PREEMPTED, launched_at=created, started_at=created, productive_at=created + 360,
            last_checkpoint_at=created + 3000, ended_at=created + 3600),
        att(id="a1", number=1, market=Market.ON_DEMAND, price_per_hour=3.06, state=AttemptState.RUNNING,
            outcome=None, launched_at=created + 3600, started_at=created + 3600, ended_at=None),
    ]
    st = job_status(job_id="j", name="j", spec=_spec(), created_at=created, deadline_at=created + 24 * 3600,
                    tasks=[task(progress_committed=0.4, progress_reported=0.45)], attempts=attempts,
                    offers=OFFERS, now=created + 7200)
    assert (st.state, st.market, st.instance_type) == ("running", "on-demand", "p3.2xlarge")
    assert [st.progress, st.progress_reported] == approx([0.4, 0.45])
    assert st.cost.spent_usd == approx(0.9 + 3.06)
    # 6 h left plus one more restart (0.1 h, as the budget guard counts it), at the price it runs at now.
    assert st.cost.projected_usd == approx(3.96 + 6.1 * 3.06)
    # The whole 10 h plus the measured restart overhead (360 s = 0.1 h) on on-demand.
    assert st.cost.on_demand_only_usd == approx(10.1 * 3.06)
    # Still running: what it may save is a projection, not money saved.
    assert st.cost.saved_usd is None
    assert st.cost.projected_saved_usd == approx(10.1 * 3.06 - (3.96 + 6.1 * 3.06))
    assert st.cost.lost_usd == approx(600 * 0.9 / 3600)
    assert st.slack_hours == approx(22 - 6)
    assert st.price_known
    assert st.to_dict()["cost"]["projected_usd"] == round(3.96 + 6.1 * 3.06, 4)


def test_job_status_of_an_idle_job_prices_remaining_work_at_spot() -> None:
    st = job_status(job_id="j", name="j", spec=_spec(), created_at=0.0, deadline_at=None,
                    tasks=[task(state=TaskState.PENDING)], attempts=[], offers=OFFERS, now=0.0)
    assert (st.state, st.market, st.slack_hours) == ("pending", None, None)
    assert st.cost.spent_usd == 0.0
    assert st.cost.projected_usd == approx(10.1 * 0.9)  # work and one start, at spot
    assert st.cost.on_demand_only_usd == approx(10.1 * 3.06)  # the spec's 0.1 h overhead guess


def test_array_shards_share_the_work_by_item_count() -> None:
    spec = JobSpec(name="j", command=("x",), resources=Resources(),
                   schedule=ScheduleSpec(estimated_hours=10.0, policy="greedy"), array=ArraySpec(10, 4))
    tasks = [task(id="t0", index=0, item_start=0, item_end=4, state=TaskState.SUCCEEDED, progress_committed=1.0),
             task(id="t1", index=1, item_start=4, item_end=8, state=TaskState.PENDING, progress_committed=0.5),
             task(id="t2", index=2, item_start=8, item_end=10, state=TaskState.PENDING)]
    assert [task_work_hours(spec, t) for t in tasks] == [4.0, 4.0, 2.0]
    st = job_status(job_id="j", name="j", spec=spec, created_at=0.0, deadline_at=None, tasks=tasks, attempts=[],
                    offers=OFFERS, now=0.0)
    assert st.progress == approx(0.6)
    # The done shard costs nothing more; the others their work left and one start each.
    assert st.cost.projected_usd == approx((2.0 + 0.1 + 2.0 + 0.1) * 0.9)


# --- savings are earned only by a job that succeeded --------------------------------------------


def _ended_job(task_state: TaskState, outcome: Outcome) -> Any:
    """1 h of spot at $0.9 against a 10 h job, its one task ended in `task_state`."""
    attempts = [att(outcome=outcome, launched_at=0.0, started_at=0.0, ended_at=3600.0)]
    return job_status(job_id="j", name="j", spec=_spec(), created_at=0.0, deadline_at=None,
                      tasks=[task(state=task_state, progress_committed=1.0 if task_state is TaskState.SUCCEEDED
                                  else 0.1)], attempts=attempts, offers=OFFERS, now=7200.0)


def test_a_succeeded_job_shows_what_it_saved_against_on_demand() -> None:
    st = _ended_job(TaskState.SUCCEEDED, Outcome.SUCCEEDED)
    assert st.state == "succeeded"
    assert st.cost.saved_usd == approx(10.1 * 3.06 - 0.9)  # on-demand only minus what was spent
    assert st.cost.projected_saved_usd is None
    assert st.to_dict()["cost"]["saved_usd"] == round(10.1 * 3.06 - 0.9, 4)


@pytest.mark.parametrize(("task_state", "outcome"), [(TaskState.BUDGET_EXCEEDED, Outcome.BUDGET),
                                                     (TaskState.FAILED, Outcome.FAILED),
                                                     (TaskState.CANCELLED, Outcome.CANCELLED)])
def test_a_job_stopped_short_shows_no_savings_at_all(task_state: TaskState, outcome: Outcome) -> None:
    st = _ended_job(task_state, outcome)
    assert st.state == str(task_state)
    assert st.cost.saved_usd is None and st.cost.projected_saved_usd is None
    assert st.cost.spent_usd == approx(0.9)  # what it cost is still shown
    money = st.to_dict()["cost"]
    assert money["saved_usd"] is None and money["projected_saved_usd"] is None


def test_an_unfinished_job_shows_savings_only_as_a_projection() -> None:
    st = job_status(job_id="j", name="j", spec=_spec(), created_at=0.0, deadline_at=None,
                    tasks=[task(state=TaskState.PENDING)], attempts=[], offers=OFFERS, now=0.0)
    assert st.cost.saved_usd is None
    assert st.cost.projected_saved_usd == approx(10.1 * 3.06 - 10.1 * 0.9)
    money = st.to_dict()["cost"]
    assert money["saved_usd"] is None and money["projected_saved_usd"] == round(10.1 * 3.06 - 10.1 * 0.9, 4)


def test_status_projects_the_total_the_budget_guard_enforces() -> None:
    """One projection: the budget guard's view of a task's siblings is what status adds for them."""
    from orchestrator.core.status import idle_price, remaining_usd

    spec = JobSpec(name="j", command=("x",), resources=Resources(),
                   schedule=ScheduleSpec(estimated_hours=10.0, policy="greedy", budget_usd=50.0),
                   array=ArraySpec(10, 4))
    tasks = [task(id="t0", index=0, item_start=0, item_end=4, state=TaskState.RUNNING, progress_committed=0.25),
             task(id="t1", index=1, item_start=4, item_end=8, state=TaskState.PENDING, progress_committed=0.5),
             task(id="t2", index=2, item_start=8, item_end=10, state=TaskState.SUCCEEDED, progress_committed=1.0)]
    live = att(id="a0", task_id="t0", state=AttemptState.RUNNING, outcome=None, price_per_hour=3.06, ended_at=None)
    st = job_status(job_id="j", name="j", spec=spec, created_at=0.0, deadline_at=None, tasks=tasks,
                    attempts=[live], offers=OFFERS, now=0.0)
    idle, overhead = idle_price(spec, OFFERS), 0.1
    guard_total = (attempt_cost(live, 0.0)
                   + remaining_usd(spec, tasks, [live], idle=idle, overhead_h=overhead, skip="t1")
                   + (0.5 * 4.0 + overhead) * (idle or 0.0))  # what the guard adds for launching t1 at idle
    assert st.cost.projected_usd == approx(guard_total)
