"""A tick reads its jobs once, and re-reads only the tasks it changed (rows per tick linear, not n²)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import orchestrator.store.reads as reads
from orchestrator.core.model import AttemptState, TaskState
from orchestrator.core.spec import parse_spec
from orchestrator.loop import snapshot
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace
from orchestrator.store import Store
from providers.sim import SimClock, SimProvider

SHARDS = 40
JOB = f"""
name = "array"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = {SHARDS * 100}
market = "spot"
[array]
count = {SHARDS}
shard_size = 1
[placement]
providers = ["sim"]
"""


class Rows:
    """Counts the task and attempt rows the store turns into views (every row it reads of them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        for name in ("task_from_row", "attempt_from_row"):
            real = getattr(reads, name)

            def counted(row: Any, _real: Any = real) -> Any:
                self.n += 1
                return _real(row)

            monkeypatch.setattr(reads, name, counted)


@pytest.fixture
def running(sqlite_store: Store) -> Iterator[tuple[Reconciler, SimClock, str]]:
    clock = SimClock()
    trace = Trace(source="always", gap_seconds=60.0, data=(1,) * 10_000, prices=None)
    provider = SimProvider(clock, {"a": trace})
    spec = parse_spec(JOB, source="job.toml", submitted_at=clock.now())
    job_id = sqlite_store.submit(spec, source="job.toml", now=clock.now(), checkpoint_uri="file:///tmp/orch-snap")
    r = Reconciler(sqlite_store, {"sim": provider}, clock, tick_seconds=60.0)
    r.tick()
    clock.sleep(60.0)
    r.tick()
    yield r, clock, job_id


def test_a_steady_tick_reads_no_task_or_attempt_rows(
    running: tuple[Reconciler, SimClock, str], sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, clock, job_id = running
    assert all(t.state is TaskState.RUNNING for t in sqlite_store.tasks(job_id))
    rows = Rows(monkeypatch)
    clock.sleep(3600.0)  # past the restart overhead: from here every task reports progress each tick
    for _ in range(2):
        clock.sleep(60.0)
        r.tick()
    # Every task reports progress each tick: it is applied to the kept snapshot and written at the
    # tick's end, without moving the job's version, so nothing is read again. Before snapshots were
    # kept, each tick read 40 tasks + 40 attempts and re-read each changed task; before that, 40 x 80.
    assert rows.n == 0, rows.n
    assert r.snapshots.read_last == 0
    assert sqlite_store.tasks(job_id)[0].progress_committed > 0.0


def test_a_change_by_another_writer_is_read_at_the_next_tick(
    running: tuple[Reconciler, SimClock, str], sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, clock, job_id = running
    other = Store(sqlite_store.engine)  # `orch cancel` in another process: the job's version moves
    assert other.request_cancel(job_id, clock.now())
    rows = Rows(monkeypatch)
    clock.sleep(60.0)
    r.tick()
    assert r.snapshots.read_last == 1 and rows.n >= 2 * SHARDS, "the changed job is read again, whole"
    assert all(t.state is TaskState.CANCELLED for t in sqlite_store.tasks(job_id))


def test_progress_written_by_another_controller_is_not_missed_after_a_takeover(
    running: tuple[Reconciler, SimClock, str], sqlite_store: Store
) -> None:
    """Progress moves no version; a job this loop did not hold at the last tick is read afresh."""
    r, clock, job_id = running
    task = sqlite_store.tasks(job_id)[0]
    sqlite_store.release_jobs(r.owner)
    assert sqlite_store.claim_jobs("other", clock.now(), 60.0) == [job_id]
    sqlite_store.record_observations({task.id: {"progress_committed": 0.5, "progress_reported": 0.5}}, {})
    clock.sleep(120.0)  # the other controller's lease lapses; this one takes the job again
    r.snapshots.take(sqlite_store, {})  # a tick that held nothing (the job was the other's)
    snaps = r.snapshots.take(sqlite_store, sqlite_store.claim(r.owner, clock.now(), 60.0))
    assert snaps[job_id].task(task.id).progress_committed == 0.5  # type: ignore[union-attr]


def test_the_snapshot_matches_the_store_after_a_refresh(running: tuple[Reconciler, SimClock, str],
                                                        sqlite_store: Store) -> None:
    _, clock, job_id = running
    snap = snapshot.take(sqlite_store, [job_id])[job_id]
    assert snap.tasks == sqlite_store.tasks(job_id) and snap.attempts == sqlite_store.attempts(job_id)
    (first, *_) = snap.tasks
    live = next(a for a in snap.attempts if a.task_id == first.id and a.state is AttemptState.RUNNING)
    sqlite_store.record_observations({first.id: {"progress_committed": 0.5, "progress_reported": 0.5}},
                                     {live.id: {"last_checkpoint_at": clock.now()}})
    assert snap.task(first.id) != sqlite_store.tasks(job_id)[0]
    snap.refresh_task(sqlite_store, first.id)
    assert snap.tasks == sqlite_store.tasks(job_id) and snap.attempts == sqlite_store.attempts(job_id)
    assert snapshot.take(sqlite_store, []) == {} and snapshot.take(sqlite_store, ["no-such-job"]) == {}


def test_jobs_that_want_the_same_offers_share_one_offers_call_per_tick(sqlite_store: Store) -> None:
    clock = SimClock()
    trace = Trace(source="always", gap_seconds=60.0, data=(1,) * 1_000, prices=None)
    provider = SimProvider(clock, {"a": trace})
    calls: list[str | None] = []
    real = provider.offers

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(kw.get("job_id"))
        return real(*args, **kw)

    provider.offers = counted  # type: ignore[method-assign]
    spec = parse_spec(JOB.replace("[array]\ncount = 40\nshard_size = 1\n", ""), source="job.toml",
                      submitted_at=clock.now())
    for _ in range(5):
        sqlite_store.submit(spec, source="job.toml", now=clock.now(), checkpoint_uri="file:///tmp/orch-snap")
    r = Reconciler(sqlite_store, {"sim": provider}, clock, tick_seconds=60.0)
    r.tick()
    assert len(calls) == 1, calls
    clock.sleep(60.0)
    r.tick()
    assert len(calls) == 2, calls


def test_a_held_jobs_spec_is_parsed_once_not_every_tick(running: tuple[Reconciler, SimClock, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.store.views as views

    r, clock, job_id = running
    parsed: list[object] = []
    real = views.spec_from_dict
    for module in (views, reads):
        monkeypatch.setattr(module, "spec_from_dict", lambda d: parsed.append(d) or real(d))
    clock.sleep(60.0)
    r.tick()
    assert parsed == [], "the spec parsed at an earlier tick is reused (a job's spec never changes)"
    assert r.snapshots.specs.keys() == {job_id}


def test_core_rows_make_the_same_views_as_orm_rows(running: tuple[Reconciler, SimClock, str],
                                                   sqlite_store: Store) -> None:
    """The snapshot reads tuples (Core), not ORM objects: each view must equal the ORM row's view, field
    for field, including enums, NULLs and the spec, so that nothing downstream can tell them apart."""
    from sqlalchemy import select

    from orchestrator.store import views
    from orchestrator.store.tables import AttemptRow, JobRow, TaskRow

    r, clock, job_id = running
    task = sqlite_store.tasks(job_id)[0]
    sqlite_store.request_cancel(job_id, clock.now())
    clock.sleep(60.0)
    r.tick()  # ends attempts as cancelled: outcomes, exit codes and end times are set
    with sqlite_store.session() as s:
        jobs = {j.id: views.job_view(j) for j in s.scalars(select(JobRow))}
        tasks = [views.task_view(t) for t in s.scalars(select(TaskRow).order_by(TaskRow.index))]
        attempts = [views.attempt_view(a) for a in s.scalars(
            select(AttemptRow).order_by(AttemptRow.launched_at, AttemptRow.number))]
    assert attempts and all(a.outcome is not None and a.ended_at is not None for a in attempts)
    assert sqlite_store.jobs_by_id([job_id]) == jobs
    assert sqlite_store.jobs_by_id([job_id], specs={job_id: jobs[job_id].spec}) == jobs
    assert sqlite_store.tasks(job_id) == tasks and sqlite_store.tasks_of([job_id]) == {job_id: tasks}
    assert sqlite_store.attempts(job_id) == attempts and sqlite_store.attempts_of([job_id]) == {job_id: attempts}
    assert all(sqlite_store.attempt(a.id) == a for a in attempts)
    first = next(t for t in tasks if t.id == task.id)
    assert sqlite_store.task_with_attempts(task.id) == (first, [a for a in attempts if a.task_id == task.id])
