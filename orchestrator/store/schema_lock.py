"""One schema migrator at a time, across processes and machines.

Every command opens the store, and on a fresh one each would try to create the schema: 50 parallel
`orch submit` collided ("table jobs already exists", a revision read between two CREATEs). So whoever
finds the schema short of head takes a lock, reads the revision again inside it, and only then
migrates:

- SQLite: `flock` on `<database>.lock` beside the database. A separate file, because SQLite's own
  POSIX locks on the database file and `flock` may share one lock table (NFS), and a lock file can be
  created before the database exists. It is left in place: removing a lock file races its next user.
- PostgreSQL: a session advisory lock with a fixed key (advisory locks are per database), held on a
  connection of its own for the length of the migration, released explicitly before that connection
  goes back to the pool.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

# "orch" + "schm" in ASCII: any constant works, as long as every orch version uses the same one.
PG_SCHEMA_LOCK_KEY = 0x6F726368_7363686D


@contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """Hold the store's schema lock (see the module docstring) for the body of the `with`."""
    if engine.dialect.name == "postgresql":
        with _pg_advisory_lock(engine):
            yield
        return
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield  # an in-memory database has one user, its process
        return
    with _file_lock(f"{path}.lock"):
        yield


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also when the process dies
        yield
    finally:
        os.close(fd)


@contextmanager
def _pg_advisory_lock(engine: Engine) -> Iterator[None]:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        try:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_SCHEMA_LOCK_KEY})
        except BaseException:
            conn.invalidate()  # interrupted while waiting: the server may grant it anyway, so drop the session
            raise
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_SCHEMA_LOCK_KEY})
            except BaseException:
                conn.invalidate()  # never pool a session that may still hold the lock
                raise
