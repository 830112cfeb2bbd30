"""What one reconcile tick asks of the database and of the providers, counted from outside the loop.

The benchmark must keep working while the loop is rebuilt, so nothing here reaches into the
reconciler: the database is watched through SQLAlchemy engine events, a provider through a proxy
that implements the `Provider` methods and forwards everything else.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

PROVIDER_METHODS = ("offers", "launch", "instances", "terminate", "notices", "next_change", "storage GET")


class _CountingCursor:
    """A DBAPI cursor that adds every row it hands out to `counter.rows`.

    SQLite's `rowcount` is -1 for a SELECT, so rows returned are counted where they are fetched:
    whatever SQLAlchemy's result fetches (fetchone, fetchmany, fetchall) passes through here.
    """

    def __init__(self, cursor: Any, counter: QueryCounter, of_tasks: bool = False) -> None:
        self._cursor = cursor
        self._counter = counter
        self._of_tasks = of_tasks  # a read of task or attempt rows (the snapshot's), counted apart too

    def _add(self, n: int) -> None:
        self._counter.rows += n
        if self._of_tasks:
            self._counter.task_rows += n

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()
        if row is not None:
            self._add(1)
        return row

    def fetchmany(self, *args: Any) -> list[Any]:
        rows = list(self._cursor.fetchmany(*args))
        self._add(len(rows))
        return rows

    def fetchall(self) -> list[Any]:
        rows = list(self._cursor.fetchall())
        self._add(len(rows))
        return rows

    def __iter__(self) -> Iterator[Any]:
        for row in self._cursor:
            self._add(1)
            yield row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class QueryCounter:
    """Statements sent and rows returned on one engine while `watching()` is open.

    `statements` counts every statement the engine executes (an executemany counts once);
    `rows` counts result rows fetched by the caller, SELECT or RETURNING, on SQLite and PostgreSQL
    alike; `task_updates` counts task rows written (progress or state; a task written twice counts
    twice), so rows read can be set beside the tasks that changed. The cursor is swapped in
    `after_cursor_execute`, before SQLAlchemy builds the result from it, so every fetch of that
    result goes through the counting cursor.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements = 0
        self.rows = 0
        self.task_rows = 0  # of `rows`, those read from tasks or attempts (the rest: jobs' leases, prices)
        self.task_updates = 0  # task rows written (UPDATE tasks ...): the work that changed this tick
        self._on = False
        event.listen(engine, "after_cursor_execute", self._after)

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if not self._on:
            return
        self.statements += 1
        if statement.lstrip()[:12].upper() == "UPDATE TASKS" and cursor.rowcount > 0:
            self.task_updates += cursor.rowcount
        if context is not None and cursor.description is not None:
            upper = statement.upper()
            of_tasks = " FROM TASKS" in upper or " FROM ATTEMPTS" in upper
            context.cursor = _CountingCursor(cursor, self, of_tasks)

    @contextmanager
    def watching(self) -> Iterator[QueryCounter]:
        self.statements = self.rows = self.task_rows = self.task_updates = 0
        self._on = True
        try:
            yield self
        finally:
            self._on = False

    def close(self) -> None:
        event.remove(self.engine, "after_cursor_execute", self._after)


class CountingProvider:
    """A provider that counts calls to each `Provider` method and forwards them to the real one."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.strip_progress = False  # instances without progress: the loop reads heartbeats instead

    def _count(self, method: str) -> Callable[..., Any]:
        self.calls[method] += 1
        fn: Callable[..., Any] = getattr(self._inner, method)
        return fn

    def offers(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("offers")(*args, **kwargs)

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("launch")(*args, **kwargs)

    def instances(self, *args: Any, **kwargs: Any) -> Any:
        found = self._count("instances")(*args, **kwargs)
        if self.strip_progress:
            return [dataclasses.replace(i, progress=None) for i in found]
        return found

    def terminate(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("terminate")(*args, **kwargs)

    def notices(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("notices")(*args, **kwargs)

    def next_change(self, *args: Any, **kwargs: Any) -> Any:
        return self._count("next_change")(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def calls_text(per_tick: Mapping[str, float], methods: Sequence[str] = PROVIDER_METHODS) -> str:
    """`instances 1, notices 1, offers 100` (methods never called left out), for a table cell."""
    parts = [f"{m} {per_tick[m]:g}" for m in methods if per_tick.get(m)]
    return ", ".join(parts) or "none"
