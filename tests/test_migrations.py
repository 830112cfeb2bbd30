"""The Alembic schema on SQLite and PostgreSQL: round trip, and no drift from the SQLAlchemy models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from orchestrator.store import SchemaError, make_engine
from orchestrator.store.engine import SCHEMA_HEAD, current_revision, downgrade, ensure_schema, head_revision, upgrade
from orchestrator.store.tables import Base

TABLES = {"jobs", "tasks", "attempts", "events", "observed_prices", "campaign_items", "attempt_nodes"}


@pytest.fixture
def bare_engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database: the migrations, not the fixture, make the schema."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "target_metadata": Base.metadata})
        return list(compare_metadata(ctx, Base.metadata))


def test_upgrade_downgrade_upgrade(bare_engine: Engine) -> None:
    assert _tables(bare_engine) == set()
    upgrade(bare_engine)
    assert _tables(bare_engine) == TABLES
    assert current_revision(bare_engine) == head_revision(bare_engine) == SCHEMA_HEAD == "0006"
    downgrade(bare_engine, "base")
    assert _tables(bare_engine) == set()
    assert current_revision(bare_engine) is None
    upgrade(bare_engine)
    assert _tables(bare_engine) == TABLES
    assert _drift(bare_engine) == []


def test_migrated_schema_matches_the_models(bare_engine: Engine) -> None:
    upgrade(bare_engine)
    assert _drift(bare_engine) == []
    # The comparison can see drift: a database without the schema differs from the models.
    downgrade(bare_engine, "base")
    assert len(_drift(bare_engine)) >= len(TABLES)


def test_ensure_schema_refuses_a_stale_database_and_upgrades_an_empty_one(bare_engine: Engine) -> None:
    with pytest.raises(SchemaError, match="orch db upgrade"):
        ensure_schema(bare_engine, auto_upgrade=False)
    ensure_schema(bare_engine, auto_upgrade=True)
    assert current_revision(bare_engine) == head_revision(bare_engine)
    ensure_schema(bare_engine, auto_upgrade=False)  # at head: nothing to say


def test_0002_indexes_jobs_by_creation_and_keeps_the_rows(bare_engine: Engine) -> None:
    upgrade(bare_engine, "0001")
    with bare_engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, name, spec, source, created_at, estimated_hours, policy, "
                          "checkpoint_uri) VALUES ('j1', 'n', '{}', 's', 1.0, 1.0, 'auto', 'file:///x')"))
    upgrade(bare_engine, "0002")
    assert "ix_jobs_created" in {i["name"] for i in inspect(bare_engine).get_indexes("jobs")}
    with bare_engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM jobs")).scalars().all() == ["j1"]
    downgrade(bare_engine, "0001")
    assert "ix_jobs_created" not in {i["name"] for i in inspect(bare_engine).get_indexes("jobs")}


def test_0003_adds_campaign_items_and_its_downgrade_removes_only_them(bare_engine: Engine) -> None:
    upgrade(bare_engine, "0002")
    with bare_engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, name, spec, source, created_at, estimated_hours, policy, "
                          "checkpoint_uri) VALUES ('j1', 'n', '{}', 's', 1.0, 1.0, 'auto', 'file:///x')"))
    upgrade(bare_engine)
    assert "campaign_items" in _tables(bare_engine)
    with bare_engine.begin() as conn:
        conn.execute(text("INSERT INTO campaign_items (job_id, \"index\", payload, state, leases, failures, "
                          "created_at, updated_at) VALUES ('j1', 0, '\"x\"', 'queued', 0, 0, 1.0, 1.0)"))
    downgrade(bare_engine, "0002")
    assert _tables(bare_engine) == TABLES - {"campaign_items", "attempt_nodes"}
    with bare_engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM jobs")).scalars().all() == ["j1"]


def test_0005_leaves_room_for_in_place_updates_on_postgresql_and_nothing_on_sqlite(bare_engine: Engine) -> None:
    def fill_factors() -> dict[str, list[str] | None]:
        with bare_engine.connect() as conn:
            rows = conn.execute(text("SELECT relname, reloptions FROM pg_class WHERE relname IN "
                                     "('jobs', 'tasks', 'attempts', 'events')"))
            return {name: options for name, options in rows}

    upgrade(bare_engine, "0005")
    assert current_revision(bare_engine) == "0005"
    if bare_engine.dialect.name != "postgresql":
        downgrade(bare_engine, "0004")  # a no-op there, and a round trip all the same
        upgrade(bare_engine)
        return
    assert fill_factors() == {"jobs": ["fillfactor=70"], "tasks": ["fillfactor=70"],
                              "attempts": ["fillfactor=70"], "events": None}
    downgrade(bare_engine, "0004")
    assert set(fill_factors().values()) == {None}


def test_0006_gives_every_attempt_one_node_and_its_downgrade_keeps_the_attempts(bare_engine: Engine) -> None:
    upgrade(bare_engine, "0005")
    with bare_engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, name, spec, source, created_at, estimated_hours, policy, "
                          "checkpoint_uri) VALUES ('j1', 'n', '{}', 's', 1.0, 1.0, 'auto', 'file:///x')"))
        conn.execute(text("INSERT INTO tasks (id, job_id, \"index\", state, failures, progress_committed, "
                          "progress_reported, checkpoint_uri, updated_at) VALUES ('t1', 'j1', 0, 'running', 0, 0, 0, "
                          "'file:///x', 1.0)"))
        conn.execute(text("INSERT INTO attempts (id, task_id, job_id, number, provider, region, instance_type, market, "
                          "price_per_hour, on_demand_price_per_hour, price_source, billing_increment_s, "
                          "billing_minimum_s, state, launched_at, unbilled, progress_start) VALUES ('a1', 't1', 'j1', "
                          "0, 'aws', 'r', 'p3', 'spot', 1.0, 3.0, 'catalog', 1, 60, 'running', 1.0, false, 0.0)"))
    upgrade(bare_engine, "0006")
    with bare_engine.begin() as conn:
        assert conn.execute(text("SELECT nodes FROM attempts")).scalars().all() == [1]
        conn.execute(text("INSERT INTO attempt_nodes (attempt_id, rank, market, price_per_hour, launched_at) "
                          "VALUES ('a1', 0, 'spot', 1.0, 1.0)"))
    downgrade(bare_engine, "0005")
    assert "attempt_nodes" not in _tables(bare_engine)
    assert "nodes" not in {c["name"] for c in inspect(bare_engine).get_columns("attempts")}
    with bare_engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM attempts")).scalars().all() == ["a1"]
