"""A tick's observations are written together at its end, and never after a state change they preceded."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from orchestrator.core.model import AttemptState, AttemptView, TaskState, TaskView, Transition
from orchestrator.core.plan.progress import progress_values
from orchestrator.core.spec import parse_spec
from orchestrator.loop import snapshot
from orchestrator.loop.pending import PendingWrites, with_notes, with_progress
from orchestrator.loop.reconciler import Reconciler
from orchestrator.loop.step_store import StepStore
from orchestrator.research.traces import Trace
from orchestrator.store import Store
from providers.sim import SimClock, SimProvider
from vocab import Market

JOBS = 12
JOB = """
name = "steady"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 100
market = "spot"
[placement]
providers = ["sim"]
"""


class Commits:
    def __init__(self, store: Store) -> None:
        self.n = 0
        event.listen(store.engine, "commit", self._count)
        self.store = store

    def _count(self, conn: object) -> None:
        self.n += 1

    def close(self) -> None:
        event.remove(self.store.engine, "commit", self._count)


@pytest.fixture
def working(sqlite_store: Store) -> Iterator[tuple[Reconciler, SimClock, SimProvider]]:
    """JOBS single-task jobs past their restart overhead: every tick sees new progress from each."""
    clock = SimClock()
    provider = SimProvider(clock, {"a": Trace(source="always", gap_seconds=60.0, data=(1,) * 10_000, prices=None)})
    spec = parse_spec(JOB, source="job.toml", submitted_at=clock.now())
    for _ in range(JOBS):
        sqlite_store.submit(spec, source="job.toml", now=clock.now(), checkpoint_uri="file:///tmp/orch-pending")
    r = Reconciler(sqlite_store, {"sim": provider}, clock, tick_seconds=60.0)
    r.tick()
    clock.sleep(60.0 + provider.overhead_s)
    r.tick()
    yield r, clock, provider


def test_a_tick_where_every_task_reports_progress_commits_a_bounded_number_of_times(
        working: tuple[Reconciler, SimClock, SimProvider], sqlite_store: Store) -> None:
    r, clock, _ = working
    before = {t.id: t.progress_committed for j in sqlite_store.jobs() for t in sqlite_store.tasks(j.id)}
    commits = Commits(sqlite_store)
    try:
        clock.sleep(60.0)
        r.tick()
    finally:
        commits.close()
    after = {t.id: t.progress_committed for j in sqlite_store.jobs() for t in sqlite_store.tasks(j.id)}
    assert all(after[t] > before[t] for t in before), "every task's new progress is in the store after the tick"
    # The lease claim and the observations' one transaction; two commits per task before.
    assert commits.n <= 3, commits.n
    assert len(r.pending) == 0


def test_the_snapshot_the_steps_decide_on_equals_the_store_once_written(
        working: tuple[Reconciler, SimClock, SimProvider], sqlite_store: Store) -> None:
    r, clock, _ = working
    clock.sleep(60.0)
    r.tick()
    ids = [j.id for j in sqlite_store.jobs()]
    snaps = snapshot.take(sqlite_store, ids)
    for job_id in ids:
        attempts = sqlite_store.attempts(job_id)
        assert snaps[job_id].attempts == attempts
        assert all(a.productive_at is not None and a.progress_end is not None for a in attempts
                   if a.state is AttemptState.RUNNING)


def test_a_state_change_writes_its_tasks_held_observations_first(sqlite_store: Store) -> None:
    clock = SimClock()
    spec = parse_spec(JOB, source="job.toml", submitted_at=clock.now())
    job_id = sqlite_store.submit(spec, source="job.toml", now=clock.now(), checkpoint_uri="file:///tmp/orch-pending")
    other_id = sqlite_store.submit(spec, source="job.toml", now=clock.now(), checkpoint_uri="file:///tmp/orch-pending")
    (task,), (other,) = sqlite_store.tasks(job_id), sqlite_store.tasks(other_id)
    pending = PendingWrites()
    pending.progress(task.id, {"progress_committed": 0.25, "progress_reported": 0.5})
    pending.progress(other.id, {"progress_committed": 0.75})
    step = StepStore(sqlite_store, pending, task.id)
    step.transition(task.id, Transition.CANCEL, clock.now(), message="x")
    assert step.wrote, "the step reads its task again"
    (task_now,), (other_now,) = sqlite_store.tasks(job_id), sqlite_store.tasks(other_id)
    assert (task_now.state, task_now.progress_committed, task_now.progress_reported) == (TaskState.CANCELLED, 0.25, 0.5)
    assert other_now.progress_committed == 0.0 and len(pending) == 1, "another task's observation waits for the tick"
    pending.flush(sqlite_store)
    assert sqlite_store.tasks(other_id)[0].progress_committed == 0.75 and len(pending) == 0


def test_progress_is_clamped_and_an_attempt_takes_observations_only(sqlite_store: Store) -> None:
    clock = SimClock()
    spec = parse_spec(JOB, source="job.toml", submitted_at=clock.now())
    job_id = sqlite_store.submit(spec, source="job.toml", now=clock.now(), checkpoint_uri="file:///tmp/orch-pending")
    (task,) = sqlite_store.tasks(job_id)
    sqlite_store.record_observations({task.id: progress_values(1.7, -0.2)}, {})
    stored = sqlite_store.tasks(job_id)[0]
    assert (stored.progress_committed, stored.progress_reported) == (1.0, 0.0)
    with pytest.raises(ValueError, match="not an observation"):
        sqlite_store.record_observations({}, {"a1": {"state": 1.0}})


def test_a_view_with_observations_differs_from_its_original_in_those_fields_only() -> None:
    task = TaskView("t", "j", 3, TaskState.RUNNING, 1, 0.25, 0.5, "file:///c", 30, 40)
    attempt = AttemptView("a", "t", 2, "sim", "r", "z", "p3", Market.SPOT, 0.9, 3.06, 1, 60, AttemptState.RUNNING,
                          None, "i-1", 10.0, 12.0, None, None, 0.25, None, None, productive_at=None,
                          unbilled=False, price_source="api")
    values = progress_values(0.6, 0.75)
    assert with_progress(task, values) == dataclasses.replace(task, progress_committed=0.6, progress_reported=0.75)
    assert with_progress(task, progress_values(None, 0.7)) == dataclasses.replace(task, progress_reported=0.7)
    notes = {"productive_at": 50.0, "progress_end": 0.6, "last_checkpoint_at": 70.0}
    assert with_notes(attempt, notes) == dataclasses.replace(attempt, **notes)  # type: ignore[arg-type]
    assert with_notes(attempt, {"progress_end": 0.3}) == dataclasses.replace(attempt, progress_end=0.3)
    assert with_notes(attempt, {}) == attempt
