"""The store on SQLite and PostgreSQL: atomic submit, guarded attempts, leases, and racing writers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError

from orchestrator.core.model import AttemptState, IllegalTransition, Outcome, TaskState, TaskView, Transition
from orchestrator.core.plan.progress import progress_values
from orchestrator.core.spec import ArraySpec, JobSpec, ScheduleSpec
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import upgrade
from orchestrator.store.tables import AttemptRow, EventRow, JobRow, TaskRow
from vocab import Billing, Market, Offer, Resources

CK = "file:///tmp/orch-ck/job"


def spec(array: ArraySpec | None = None, name: str = "store-test") -> JobSpec:
    return JobSpec(name=name, command=("python", "x.py"), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=2.0, budget_usd=50.0, policy="greedy"), array=array)


def offer(market: Market = Market.SPOT, price: float = 0.9) -> Offer:
    return Offer(provider="local", region="us-east-1", zone="us-east-1a", instance_type="p3.2xlarge",
                 market=market, price_per_hour=price, gpu="V100", gpu_count=1, gpu_memory_gb=16.0,
                 architecture="volta", on_demand_price_per_hour=3.06, billing=Billing(1, 60))


def counts(store: Store) -> tuple[int, int, int, int]:
    with store.session() as s:
        return tuple(  # type: ignore[return-value]
            int(s.scalar(select(func.count()).select_from(t)) or 0) for t in (JobRow, TaskRow, AttemptRow, EventRow)
        )


# --- submit ------------------------------------------------------------------------------------


def test_submit_stores_job_tasks_and_event(store: Store) -> None:
    job_id = store.submit(spec(), source="/jobs/a.toml", now=10.0, checkpoint_uri=CK + "/")
    job = store.job(job_id)
    assert job is not None
    assert (job.name, job.source, job.created_at, job.policy, job.budget_usd) == (
        "store-test", "/jobs/a.toml", 10.0, "greedy", 50.0)
    assert job.spec == spec()
    (task,) = store.tasks(job_id)
    assert (task.index, task.state, task.failures, task.item_start, task.item_end) == (0, TaskState.PENDING, 0,
                                                                                        None, None)
    assert task.checkpoint_uri == CK + "/task-00000"
    assert [(e.kind, e.at) for e in store.events(job_id)] == [("submitted", 10.0)]
    assert store.job(job_id[:8]) == job  # a unique prefix finds the job too
    assert counts(store) == (1, 1, 0, 1)


def test_array_job_makes_one_task_per_shard_with_item_bounds(store: Store) -> None:
    job_id = store.submit(spec(ArraySpec(count=10, shard_size=4)), source="a.toml", now=0.0, checkpoint_uri=CK)
    tasks = store.tasks(job_id)
    assert [(t.index, t.item_start, t.item_end) for t in tasks] == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert [t.checkpoint_uri for t in tasks] == [f"{CK}/task-{i:05d}" for i in range(3)]
    assert len({t.id for t in tasks}) == 3
    assert "3 task(s)" in store.events(job_id)[0].message


def test_failed_submit_stores_nothing(store: Store) -> None:
    store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK, external_ref="uid-1")
    before = counts(store)
    with pytest.raises(IntegrityError):
        store.submit(spec(ArraySpec(5, 1), name="dup"), source="b.toml", now=1.0, checkpoint_uri=CK,
                     external_ref="uid-1")
    assert counts(store) == before
    assert [j.name for j in store.jobs()] == ["store-test"]
    assert store.job_by_ref("uid-1") is not None and store.job_by_ref("uid-2") is None


def test_duplicate_job_id_stores_nothing(store: Store) -> None:
    store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK, job_id="job-1")
    before = counts(store)
    with pytest.raises(IntegrityError):
        store.submit(spec(ArraySpec(3, 1)), source="b.toml", now=1.0, checkpoint_uri=CK, job_id="job-1")
    assert counts(store) == before


# --- attempts ----------------------------------------------------------------------------------


def test_attempt_lifecycle_is_guarded(store: Store) -> None:
    job_id = store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK)
    (task,) = store.tasks(job_id)
    attempt = store.begin_attempt(task, offer(), 5.0)
    assert (attempt.number, attempt.state, attempt.market, attempt.price_per_hour) == (
        0, AttemptState.LAUNCHING, Market.SPOT, 0.9)
    assert store.tasks(job_id)[0].state is TaskState.LAUNCHING
    assert store.live_among([attempt.id, 'no-such-attempt']) == {attempt.id}

    # A second launch of a launching task is refused, and leaves no attempt row behind.
    with pytest.raises(IllegalTransition):
        store.begin_attempt(store.tasks(job_id)[0], offer(), 6.0)
    assert len(store.attempts(job_id)) == 1

    store.attempt_running(attempt, "i-1", 7.0)
    running = store.attempt(attempt.id)
    assert running is not None and (running.state, running.instance_id, running.started_at) == (
        AttemptState.RUNNING, "i-1", 7.0)
    assert store.tasks(job_id)[0].state is TaskState.RUNNING
    with pytest.raises(IllegalTransition, match="not launching"):
        store.attempt_running(attempt, "i-2", 8.0)

    store.end_attempt(attempt, Outcome.PREEMPTED, 9.0, task_transitions=("preempted", "requeue"),
                      message="reclaimed", ended_at=8.5)
    ended = store.attempt(attempt.id)
    assert ended is not None and (ended.state, ended.outcome, ended.ended_at) == (
        AttemptState.ENDED, Outcome.PREEMPTED, 8.5)
    assert store.tasks(job_id)[0].state is TaskState.PENDING
    assert store.live_among([attempt.id]) == set()
    events = store.events(job_id)
    with pytest.raises(IllegalTransition, match="already ended"):
        store.end_attempt(attempt, Outcome.SUCCEEDED, 10.0, task_transitions=("succeed",), message="twice")
    assert store.events(job_id) == events

    second = store.begin_attempt(store.tasks(job_id)[0], offer(Market.ON_DEMAND, 3.06), 11.0)
    assert second.number == 1
    assert [e.kind for e in store.events(job_id)] == [
        "submitted", "launch", "started", "preempted", "requeue", "launch"]


def test_end_attempt_with_an_illegal_task_move_changes_nothing(store: Store) -> None:
    job_id = store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK)
    attempt = store.begin_attempt(store.tasks(job_id)[0], offer(), 1.0)
    events = store.events(job_id)
    with pytest.raises(IllegalTransition):  # "requeue" needs a preempted task; this one is launching
        store.end_attempt(attempt, Outcome.PREEMPTED, 2.0, task_transitions=("requeue",), message="x")
    assert store.attempt(attempt.id) == attempt
    assert store.events(job_id) == events
    store.end_attempt(attempt, Outcome.FAILED, 3.0, task_transitions=("retry",), message="exit 1",
                      exit_code=1, failures=1)
    (task,) = store.tasks(job_id)
    assert (task.state, task.failures) == (TaskState.PENDING, 1)
    ended = store.attempt(attempt.id)
    assert ended is not None and (ended.exit_code, ended.outcome) == (1, Outcome.FAILED)


def test_observations_are_not_state_changes(store: Store) -> None:
    job_id = store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK)
    attempt = store.begin_attempt(store.tasks(job_id)[0], offer(), 1.0)
    store.record_observations({}, {attempt.id: {"productive_at": 2.0, "last_checkpoint_at": 3.0,
                                                "progress_end": 0.25}})
    noted = store.attempt(attempt.id)
    assert noted is not None and (noted.productive_at, noted.last_checkpoint_at, noted.progress_end) == (
        2.0, 3.0, 0.25)
    with pytest.raises(ValueError, match="not an observation"):
        store.record_observations({}, {attempt.id: {"state": 1.0}})
    with pytest.raises(ValueError, match="not an observation"):  # a task's too: its names go into SQL text
        store.record_observations({attempt.task_id: {"failures": 1.0}}, {})
    assert store.tasks(job_id)[0].failures == 0
    store.record_observations({attempt.task_id: progress_values(1.5, -1.0)}, {})
    (task,) = store.tasks(job_id)
    assert (task.progress_committed, task.progress_reported) == (1.0, 0.0)


def test_a_ticks_observations_of_many_rows_land_on_their_own_rows_only(store: Store) -> None:
    # Several rows per set of columns, two sets per table: one statement per set (PostgreSQL: joined to
    # arrays of values), and a row the tick did not observe keeps what it had.
    job_id = store.submit(spec(ArraySpec(count=5, shard_size=1)), source="a.toml", now=0.0, checkpoint_uri=CK)
    tasks = store.tasks(job_id)
    attempts = [store.begin_attempt(t, offer(), 1.0) for t in tasks[:4]]
    store.record_observations(
        {tasks[0].id: progress_values(0.1, 0.2), tasks[1].id: progress_values(0.3, 0.4),
         tasks[2].id: progress_values(None, 0.5), tasks[3].id: progress_values(None, 0.6)},
        {attempts[0].id: {"progress_end": 0.1}, attempts[1].id: {"progress_end": 0.3},
         attempts[2].id: {"productive_at": 5.0, "last_checkpoint_at": 6.0}})
    by_index = {t.index: (t.progress_committed, t.progress_reported) for t in store.tasks(job_id)}
    assert by_index == {0: (0.1, 0.2), 1: (0.3, 0.4), 2: (0.0, 0.5), 3: (0.0, 0.6), 4: (0.0, 0.0)}
    noted = [store.attempt(a.id) for a in attempts]
    assert [(a.progress_end, a.productive_at, a.last_checkpoint_at) for a in noted if a is not None] == [
        (0.1, None, None), (0.3, None, None), (None, 5.0, 6.0), (None, None, None)]


def test_a_launch_event_names_its_attempt_number_and_offer(store: Store) -> None:
    job_id = store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK)
    first = store.begin_attempt(store.tasks(job_id)[0], offer(), 1.0)
    store.end_attempt(first, Outcome.LAUNCH_FAILED, 2.0, task_transitions=(Transition.LAUNCH_FAILED,), message="no")
    store.begin_attempt(store.tasks(job_id)[0], offer(), 3.0, message="relaunch after a reclaim")
    launches = [e.message for e in store.events(job_id) if e.kind == "launch"]
    assert launches == ["launching attempt 0 on spot p3.2xlarge in us-east-1a at $0.9000/h", "relaunch after a reclaim"]


# --- leases ------------------------------------------------------------------------------------


def test_claim_jobs_lease_between_two_owners(store: Store) -> None:
    a = store.submit(spec(name="a"), source="a.toml", now=0.0, checkpoint_uri=CK)
    b = store.submit(spec(name="b"), source="b.toml", now=1.0, checkpoint_uri=CK)
    assert store.claim_jobs("ctl-1", now=10.0, lease_seconds=30.0) == [a, b]
    assert store.claim_jobs("ctl-2", now=11.0, lease_seconds=30.0) == []
    # The holder renews; the other still gets nothing until the renewed lease runs out.
    assert store.claim_jobs("ctl-1", now=35.0, lease_seconds=30.0) == [a, b]
    assert store.claim_jobs("ctl-2", now=64.0, lease_seconds=30.0) == []
    assert store.claim_jobs("ctl-2", now=66.0, lease_seconds=30.0) == [a, b]
    assert store.claim_jobs("ctl-1", now=67.0, lease_seconds=30.0) == []
    # A finished job is nobody's; a released one is free at once.
    store.mark_finished(a, 68.0)
    store.release_jobs("ctl-2")
    assert store.claim_jobs("ctl-1", now=69.0, lease_seconds=30.0) == [b]


# --- racing writers ----------------------------------------------------------------------------


def race(n: int, fn: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run `fn(i)` in n threads released together; return the results and the errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            out = fn(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(out)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    return results, errors


def test_racing_the_same_transition_exactly_one_wins(store: Store) -> None:
    job_id = store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK)
    (task,) = store.tasks(job_id)
    wins, errors = race(6, lambda i: store.transition(task.id, "cancel" if i % 2 else "over_budget", 1.0 + i))
    assert len(wins) == 1
    assert len(errors) == 5 and all(isinstance(e, IllegalTransition) for e in errors), errors
    assert store.tasks(job_id)[0].state in (TaskState.CANCELLED, TaskState.BUDGET_EXCEEDED)
    assert len([e for e in store.events(job_id) if e.task_id == task.id]) == 1


def test_racing_end_attempt_exactly_one_wins(store: Store) -> None:
    job_id = store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK)
    attempt = store.begin_attempt(store.tasks(job_id)[0], offer(), 1.0)
    store.attempt_running(attempt, "i-1", 2.0)
    wins, errors = race(4, lambda i: store.end_attempt(
        attempt, Outcome.SUCCEEDED if i % 2 else Outcome.CANCELLED, 3.0,
        task_transitions=("succeed",) if i % 2 else ("cancel",), message=f"writer {i}"))
    assert len(wins) == 1
    assert all(isinstance(e, IllegalTransition) for e in errors), errors
    kinds = [e.kind for e in store.events(job_id)]
    assert kinds[:3] == ["submitted", "launch", "started"] and len(kinds) == 4


def test_begin_attempt_loser_of_a_race_gets_illegal_transition(postgres_url: str) -> None:
    """Deterministic interleaving: the winner holds its uncommitted attempt until the loser is blocked on it."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    store = Store(engine)
    try:
        job_id = store.submit(spec(), source="a.toml", now=0.0, checkpoint_uri=CK)
        (task,) = store.tasks(job_id)
        outcome: list[BaseException | None] = []
        with store.session() as winner:
            winner.add(AttemptRow(
                id="winner", task_id=task.id, job_id=job_id, number=0, provider="local", region="r", zone=None,
                instance_type="t", market="spot", price_per_hour=1.0, on_demand_price_per_hour=3.0,
                price_source="catalog", billing_increment_s=1, billing_minimum_s=60, state="launching",
                launched_at=1.0, progress_start=0.0, unbilled=False))
            winner.flush()
            store.transition(task.id, "launch", 1.0, session=winner)
            loser = threading.Thread(target=lambda: outcome.append(_attempt_error(store, task)))
            loser.start()
            _wait_until_blocked(engine)
        loser.join(timeout=10)
        assert len(outcome) == 1, "the loser did not finish"
        if outcome[0] is not None and not isinstance(outcome[0], IllegalTransition):
            raise outcome[0]
        assert isinstance(outcome[0], IllegalTransition), "the loser must be refused"
    finally:
        engine.dispose()


def _attempt_error(store: Store, task: TaskView) -> BaseException | None:
    try:
        store.begin_attempt(task, offer(), 2.0)
    except Exception as exc:
        return exc
    return None


def _wait_until_blocked(engine: Engine) -> None:
    """Until another backend of this database waits on a lock (the loser, stuck behind the winner)."""
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar()
            conn.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the loser never blocked on the winner")


def test_a_lease_taken_over_cannot_be_renewed(store: Store) -> None:
    """A controller whose tick outlasted its lease must not act on the job another one took."""
    from orchestrator.core.spec import parse_spec

    spec = parse_spec('name = "x"\ncommand = ["true"]\n[resources]\n[schedule]\nestimated_hours = 1\n',
                      source="t", submitted_at=0.0)
    job_id = store.submit(spec, source="t", now=0.0, checkpoint_uri="file:///tmp/x")
    assert store.claim_jobs("slow", 0.0, 10.0) == [job_id]
    assert store.renew_lease("slow", job_id, 5.0, 10.0)
    assert store.claim_jobs("fast", 20.0, 10.0) == [job_id]  # the slow one's lease ran out
    assert not store.renew_lease("slow", job_id, 21.0, 10.0)
    assert store.renew_lease("fast", job_id, 21.0, 10.0)


def test_last_event_is_the_newest_one(store: Store) -> None:
    from orchestrator.core.spec import parse_spec

    spec = parse_spec('name = "x"\ncommand = ["true"]\n[resources]\n[schedule]\nestimated_hours = 1\n',
                      source="t", submitted_at=0.0)
    job_id = store.submit(spec, source="t", now=0.0, checkpoint_uri="file:///tmp/x")
    store.add_event(job_id, "note", "second", 1.0)
    last = store.last_event(job_id)
    assert last is not None and last.message == "second" and last == store.events(job_id)[-1]
    assert store.last_event("no-such-job") is None
