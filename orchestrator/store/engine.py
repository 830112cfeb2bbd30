"""Engines and the schema's version: SQLite (WAL) by default, PostgreSQL through ORCH_DATABASE_URL.

Opening a store is the first thing every command does, so this module also turns every way a store
can be unusable (a URL orch cannot read, a home that is not a folder, a file that is not a database,
a server that refuses connections) into one line for the user, and makes first use safe when many
commands start at once (orchestrator/store/schema_lock.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, inspect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from orchestrator.extras import missing_extra
from orchestrator.store.schema_lock import schema_lock

# backend -> the drivers orch ships with ("" is SQLAlchemy's default driver for that backend)
SUPPORTED_DRIVERS: dict[str, tuple[str, ...]] = {"postgresql": ("psycopg",), "sqlite": ("", "pysqlite")}
URL_FORMS = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE or sqlite:///PATH"


class SchemaError(RuntimeError):
    """The database cannot be used by this orch as it is; the CLI prints it as one line."""


class StoreUnavailable(SchemaError):
    """The store cannot be opened at all: bad URL, unusable path, not a database, no server.

    A SchemaError, so that every entry point that already reports a schema problem as one line
    (the CLI, the Kubernetes controller) reports this one the same way.
    """


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


def parse_url(url: str) -> URL:
    """The URL, if it names a database orch can use; else StoreUnavailable saying which ones it can.

    The unreadable URL is not echoed: it may hold a password.
    """
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError:
        raise StoreUnavailable(f"the database URL (ORCH_DATABASE_URL) is not one orch can read; use {URL_FORMS}") \
            from None
    backend, _, driver = parsed.drivername.partition("+")
    if driver not in SUPPORTED_DRIVERS.get(backend, ()):
        raise StoreUnavailable(f"the database URL (ORCH_DATABASE_URL) names {parsed.drivername}, which orch does not "
                               f"support; supported: postgresql:// (psycopg 3) and sqlite:///")
    return parsed


def make_engine(url: str) -> Engine:
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        _make_folder(parsed.database)
        # Pooled connections: opening one (and its PRAGMAs) costs more than most of the queries on it.
        # Sessions are short transactions, so no reader holds an old WAL snapshot between them.
        engine = create_engine(parsed, pool_size=5, max_overflow=10, pool_pre_ping=False,
                               connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise StoreUnavailable(missing_extra(exc, f"the database {parsed.render_as_string()}") or str(exc)) from None


def _make_folder(database: str | None) -> None:
    """Create the SQLite database's folder, or say in one line why it cannot be there."""
    if not database or database == ":memory:":
        return
    folder = Path(database).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is not a folder" if blocker else exc.strerror
        raise StoreUnavailable(f"cannot keep the database in {folder} (ORCH_HOME?): {why}") from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def describe(engine: Engine) -> str:
    """The database for a message: a SQLite file's path, else the URL without its password or driver."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


@contextmanager
def _reaching(engine: Engine) -> Iterator[None]:
    """Translate a failure to connect or to read the database at all into one line."""
    try:
        yield
    except DBAPIError as exc:
        detail = "; ".join(line.strip() for line in str(exc.orig).splitlines() if line.strip())
        if engine.dialect.name == "sqlite" and "file is not a database" in detail:
            raise StoreUnavailable(f"{describe(engine)} is not a SQLite database ({detail})") from None
        raise StoreUnavailable(f"cannot use the database {describe(engine)}: {detail}") from None


# --- the schema -------------------------------------------------------------------------------------


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(importlib_resources.files("migrations")))
    cfg.attributes["engine"] = engine
    return cfg


@contextmanager
def _migration_engine(engine: Engine) -> Iterator[Engine]:
    """An engine on which a migration is one transaction.

    PostgreSQL's DDL is transactional already. Python's sqlite3 module runs DDL outside any
    transaction, so an interrupted first use left tables without a revision, which no later command
    could repair. Here the driver's transaction handling is off and SQLAlchemy emits
    `BEGIN IMMEDIATE` itself (SQLAlchemy's pysqlite recipe): the tables and the revision commit together.
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        # An in-memory database lives in its engine's one connection (`orch simulate`): a second
        # engine would migrate a different, empty database. Nobody else can see it to race with.
        yield engine
        return
    own = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 30})
    event.listen(own, "connect", _sqlite_pragmas)
    event.listen(own, "connect", _no_driver_transactions)
    event.listen(own, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        yield own
    finally:
        own.dispose()


def _no_driver_transactions(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    """Run the migrations; the caller holds the schema lock."""
    from alembic import command

    with _migration_engine(engine) as eng:
        (command.downgrade if down else command.upgrade)(_alembic_config(eng), revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate under the schema lock (what `orch db upgrade` runs): safe beside running commands."""
    with _reaching(engine):
        current_revision(engine)  # a bad path, file or server says so before any lock file is made
    with schema_lock(engine):
        _migrate(engine, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with schema_lock(engine):
        _migrate(engine, revision, down=True)


# The newest migration's revision (migrations/versions/); tests/test_migrations.py checks that it is
# alembic's head, so a migration added without moving it fails the tests, not a user's start-up.
SCHEMA_HEAD = "0006"


def _stamped_revision(engine: Engine) -> str | None:
    """The revision alembic stamped, read with one plain query; None if there is no stamp (yet)."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:
        return None  # no table yet (an empty database), or no database: the full check says which
    return str(rows[0][0]) if len(rows) == 1 else None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def ensure_schema(engine: Engine, *, auto_upgrade: bool, create_empty: bool | None = None) -> None:
    """Bring the schema to head if allowed, else refuse in one line; safe when many processes start at once.

    `create_empty` (default: `auto_upgrade`) makes the schema in a database with no tables at all;
    `auto_upgrade` migrates a database at an older revision. The revision is read once without the
    lock (the common case: already at head) and again inside it, where only one process migrates.
    """
    with _reaching(engine):
        if _stamped_revision(engine) == SCHEMA_HEAD:
            return  # the common case, without importing alembic (~0.1 s of every command's start)
    head = head_revision(engine)
    with _reaching(engine):
        if current_revision(engine) == head:
            return
    with schema_lock(engine):
        _settle_schema(engine, head, auto_upgrade=auto_upgrade,
                       create_empty=auto_upgrade if create_empty is None else create_empty)


def _settle_schema(engine: Engine, head: str | None, *, auto_upgrade: bool, create_empty: bool) -> None:
    current = current_revision(engine)
    if current == head:
        return  # another process made it while this one waited for the lock
    if current is not None and not _known_revision(engine, current):
        raise SchemaError(f"the database is at schema revision {current}, newer than this orch knows "
                          f"(it needs {head}); use the orch version that made it, or a newer one")
    fresh = current is None and not inspect(engine).get_table_names()
    if (fresh and create_empty) or (current is not None and auto_upgrade):
        _migrate(engine, "head")
        return
    raise SchemaError(
        f"the database is at schema revision {current or 'none'} but this orch needs {head}; "
        "run `orch db upgrade`"
    )


def _known_revision(engine: Engine, revision: str) -> bool:
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(_alembic_config(engine)).get_revision(revision) is not None
    except Exception:  # alembic raises its own ResolutionError/CommandError for an unknown id
        return False
