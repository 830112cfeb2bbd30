"""Engines and the schema's version: SQLite (WAL) by default, PostgreSQL through ORCH_DATABASE_URL."""

from __future__ import annotations

import os
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect


class SchemaError(RuntimeError):
    """The database's schema is not the one this version of orch needs."""


def orch_home() -> Path:
    """ORCH_HOME, or the user's data folder (XDG_DATA_HOME/orch, ~/.local/share/orch)."""
    if home := os.environ.get("ORCH_HOME"):
        return Path(home).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orch"


def database_url(home: Path | None = None) -> str:
    if url := os.environ.get("ORCH_DATABASE_URL"):
        return normalise_url(url)
    home = home or orch_home()
    return f"sqlite:///{home / 'orch.db'}"


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy's own default is psycopg2, not a dependency)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pooled connections: opening one (and its PRAGMAs) costs more than most of the queries on it.
        # Sessions are short transactions, so no reader holds an old WAL snapshot between them.
        engine = create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=False, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(importlib_resources.files("migrations")))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Refuse to run on a schema older or newer than this code; upgrade an embedded one silently."""
    current, head = current_revision(engine), head_revision(engine)
    if current == head:
        return
    if auto_upgrade and (current is None or current != head):
        fresh = current is None and not inspect(engine).get_table_names()
        if fresh or current is not None:
            upgrade(engine)
            return
    raise SchemaError(
        f"the database is at schema revision {current or 'none'} but this orch needs {head}; "
        "run `orch db upgrade`"
    )
