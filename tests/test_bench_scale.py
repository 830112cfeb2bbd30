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
    assert r.rows_per_tick >= 5  # at least the running tasks are read
    assert r.statements_per_tick >= 1
    assert r.calls["instances"] == 1  # one list call per provider a tick


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
            conn.execute(text("create table t (x integer)"))
    assert (counter.statements, counter.rows) == (2, 3)
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
