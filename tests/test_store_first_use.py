"""First use of a store: the schema is made once, under a lock, however many commands start at once.

Real processes on real SQLite and PostgreSQL: the race was between processes (50 parallel `orch
submit` on a fresh home failed with "revision none", "table jobs already exists"), so the tests race
real processes and real connections, not mocks.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text

from orchestrator.cli.wiring import open_store
from orchestrator.store import SchemaError, make_engine
from orchestrator.store.engine import current_revision, ensure_schema, head_revision, upgrade

REPO = Path(__file__).resolve().parent.parent
FOLD = REPO / "examples" / "fold" / "job.toml"
TABLES = {"jobs", "tasks", "attempts", "events", "observed_prices", "campaign_items", "attempt_nodes",
          "alembic_version"}


def _orch_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DATABASE_URL"}
    env["ORCH_HOME"] = str(home)
    return env


def test_fifty_parallel_submits_on_a_fresh_home_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"  # not created: the first command makes it
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "submit", str(FOLD), "--json"],
                              env=_orch_env(home), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(50)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    failures = [err for rc, err in results if rc != 0]
    assert failures == [], f"{len(failures)} of 50 failed, first: {failures[0]}"
    engine = make_engine(f"sqlite:///{home / 'orch.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 50
        assert current_revision(engine) == head_revision(engine)
    finally:
        engine.dispose()


def _open_in_child(barrier: Any, report: Path) -> None:
    code = 1
    try:
        barrier.wait(timeout=60)
        open_store().engine.dispose()
        code = 0
    except BaseException as exc:  # reported to the parent, with its message
        report.write_text(f"{type(exc).__name__}: {exc}")
    finally:
        os._exit(code)  # no interpreter clean-up: it would close the parent's inherited connections


def _open_concurrently(n: int, reports: Path) -> list[str]:
    """n processes call open_store at the same moment; returns the failures.

    Processes, not threads: the race is between commands, and Alembic's `context` is one per process.
    """
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n)
    reports.mkdir()
    procs = [ctx.Process(target=_open_in_child, args=(barrier, reports / str(i))) for i in range(n)]
    for p in procs:
        p.start()
    failures = []
    for i, p in enumerate(procs):
        p.join(timeout=120)
        if p.exitcode is None:
            p.kill()
            failures.append("still waiting after 120 s")
        elif p.exitcode != 0:
            report = reports / str(i)
            failures.append(report.read_text() if report.exists() else f"exit status {p.exitcode}")
    return failures


def _assert_at_head(url: str) -> None:
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
        assert current_revision(engine) == head_revision(engine)
    finally:
        engine.dispose()


def test_concurrent_first_open_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    assert _open_concurrently(16, tmp_path / "reports") == []
    _assert_at_head(f"sqlite:///{tmp_path / 'home' / 'orch.db'}")


def test_concurrent_first_open_on_postgres_creates_a_fresh_database_silently(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_DATABASE_URL", postgres_url)
    assert _open_concurrently(16, tmp_path / "reports") == []
    _assert_at_head(postgres_url)


def _at_first_revision(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine, "0001")
        assert current_revision(engine) != head_revision(engine)
    finally:
        engine.dispose()


def test_postgres_at_an_older_revision_still_asks_for_db_upgrade(postgres_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Documented: a shared PostgreSQL store is upgraded on purpose, never by whichever controller starts first."""
    _at_first_revision(postgres_url)
    monkeypatch.setenv("ORCH_DATABASE_URL", postgres_url)
    with pytest.raises(SchemaError, match="orch db upgrade"):
        open_store()


def test_sqlite_at_an_older_revision_is_upgraded_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Documented: the embedded store upgrades itself."""
    _at_first_revision(f"sqlite:///{tmp_path / 'orch.db'}")
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    open_store().engine.dispose()
    _assert_at_head(f"sqlite:///{tmp_path / 'orch.db'}")


def test_a_half_made_postgres_schema_is_refused_not_built_over(postgres_url: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables but no revision (another program's, or made by hand): orch does not build beside them."""
    engine = make_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE jobs (id text)"))
        monkeypatch.setenv("ORCH_DATABASE_URL", postgres_url)
        with pytest.raises(SchemaError, match="revision none"):
            open_store()
    finally:
        engine.dispose()


def test_a_database_newer_than_this_orch_is_refused_in_one_line(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'orch.db'}")
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaError, match="newer") as caught:
            ensure_schema(engine, auto_upgrade=True)
        assert "\n" not in str(caught.value)
    finally:
        engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_a_failed_sqlite_migration_leaves_nothing_half_made(tmp_path: Path) -> None:
    """The SQLite schema is made in one transaction: an interrupted first use cannot leave tables
    without a revision (a store that `orch db upgrade` could no longer repair)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'orch.db'}")
    try:
        with engine.begin() as conn:  # the migration's last table, so it fails at its end
            conn.execute(text("CREATE TABLE attempts (id text)"))
        with pytest.raises(Exception, match="attempts"):
            upgrade(engine)
        assert _tables(engine) == {"attempts"}
    finally:
        engine.dispose()
