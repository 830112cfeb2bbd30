"""bench/scale.py at a tiny size: the counts it reports are sane (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from bench._scale_counters import CountingProvider, QueryCounter, calls_text
from bench._scale_loop import measure_loop
from orchestrator.store import make_engine


@pytest.mark.parametrize("shape", ["single", "array"])
def test_a_tiny_loop_measurement_counts_running_tasks_rows_and_calls(tmp_path: Path, shape: str) -> None:
    r = measure_loop(f"sqlite:///{tmp_path / 'orch.db'}", 5, shape, ticks=1)
    assert (r.running, r.alive, r.jobs) == (5, 5, 5 if shape == "single" else 1)
    assert len(r.tick_s) == 1 and r.tick > 0
    # A quiet tick reads the held jobs' versions (the lease claim) and no task or attempt row: the
    # snapshots are kept from the warm-up ticks (orchestrator/loop/snapshot.py).
    assert r.rows_per_tick == r.jobs and r.task_rows_per_tick == 0
    assert r.statements_per_tick >= 1
    assert r.task_updates_per_tick >= 0  # counted (what it counts: the query counter's test below)
    assert r.calls["instances"] == 1  # one list call per provider a tick


def test_in_the_progress_phase_every_running_task_is_written_each_tick(tmp_path: Path) -> None:
    from bench._scale_loop import PROGRESS, QUIET, measure_phases

    r = measure_phases(f"sqlite:///{tmp_path / 'orch.db'}", 4, "array", ticks=2)
    assert r[QUIET].task_updates_per_tick == 0  # nothing moves before the restart overhead has passed
    assert r[PROGRESS].task_updates_per_tick == 4 and r[PROGRESS].alive == 4
    # Progress moves no job's version: the loop applied it to its snapshot, so nothing is read again,
    # and the tick's observations are one transaction (the claim, then two executemany updates).
    assert r[PROGRESS].task_rows_per_tick == r[QUIET].task_rows_per_tick == 0
    assert r[PROGRESS].statements_per_tick <= r[QUIET].statements_per_tick + 2


def test_finished_jobs_are_stored_beside_the_running_ones(tmp_path: Path) -> None:
    r = measure_loop(f"sqlite:///{tmp_path / 'orch.db'}", 2, "single", ticks=1, stored=5)
    assert (r.running, r.stored, r.alive) == (2, 5, 2)


def test_the_query_counter_counts_statements_and_returned_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    counter = QueryCounter(engine)
    with engine.connect() as conn:
        conn.execute(text("select 1")).all()  # not watched
        with counter.watching():
            assert len(conn.execute(text("select 1 union all select 2 union all select 3")).all()) == 3
            conn.execute(text("create table tasks (x integer)"))
            conn.execute(text("insert into tasks values (1), (2), (3)"))
            conn.execute(text("update tasks set x = 0 where x > 1"))
            assert conn.execute(text("select x from tasks")).all() == [(1,), (0,), (0,)]
    assert (counter.statements, counter.rows, counter.task_updates, counter.task_rows) == (5, 6, 2, 3)
    counter.close()
    engine.dispose()


def test_the_counting_provider_counts_and_forwards() -> None:
    class Inner:
        name = "inner"

        def instances(self) -> list[str]:
            return ["i"]

    p = CountingProvider(Inner())
    assert p.instances() == ["i"] and p.instances() == ["i"]
    assert p.name == "inner"
    assert calls_text(p.calls) == "instances 2"


def test_cloned_jobs_hold_the_same_rows_as_their_template_with_new_ids(tmp_path: Path) -> None:
    from bench._scale_fill import clone_jobs
    from bench._scale_loop import _finish
    from orchestrator.store import Store
    from orchestrator.store.engine import upgrade
    from providers.sim import SimClock

    engine = make_engine(f"sqlite:///{tmp_path / 'orch.db'}")
    upgrade(engine)
    store = Store(engine)
    _finish(store, SimClock(), 2, tmp_path.as_uri())
    (a, b) = templates = store.jobs()
    clone_jobs(engine, [a.id, b.id], 3)
    jobs = store.jobs()
    assert len(jobs) == 5 and len({j.id for j in jobs}) == 5
    for copy in jobs[:3]:  # the copies are the newest
        tpl = next(t for t in templates if t.name == copy.name)
        assert copy.finished_at is not None and copy.spec == tpl.spec
        tasks, attempts = store.tasks(copy.id), store.attempts(copy.id)
        assert [t.state for t in tasks] == [t.state for t in store.tasks(tpl.id)]
        assert [x.outcome for x in attempts] == [x.outcome for x in store.attempts(a.id)]
        assert {x.task_id for x in attempts} == {t.id for t in tasks}
        assert [e.kind for e in store.events(copy.id)] == [e.kind for e in store.events(tpl.id)]
        assert {e.task_id for e in store.events(copy.id)} - {None} == {t.id for t in tasks}
    engine.dispose()
