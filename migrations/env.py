"""Alembic environment: the engine is handed over by orchestrator.store.engine, never read from a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from orchestrator.store.engine import make_engine
from orchestrator.store.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite", compare_type=True,
                          # One transaction for the whole run, on SQLite too: orchestrator.store.engine
                          # hands over an engine that emits BEGIN itself, so no half-made schema survives.
                          transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
