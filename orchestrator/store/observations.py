"""A tick's observations of running work, written together in one transaction.

Progress and an attempt's notes (when it became productive, its newest checkpoint) are not state
changes: nothing is guarded by them and a lost one is observed again on the next tick. Written one
transaction each, a tick where 10,000 tasks report progress spent ~14 s committing (two commits per
task, each a WAL fsync on SQLite, a round trip on PostgreSQL). The loop holds them for the tick
(`orchestrator.loop.pending`) and hands them here: one transaction, one executemany per set of
columns. A task's state change never waits behind them: the loop writes a task's held observations
first whenever it changes that task's state.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, Engine, bindparam, text, update

from orchestrator.store.tables import AttemptRow, TaskRow

# The columns an observation may set (not state changes); anything else is refused, which also keeps
# every name `_update_from_arrays` writes into its SQL text one of these.
TASK_PROGRESS = frozenset({"progress_committed", "progress_reported"})
ATTEMPT_NOTES = frozenset({"productive_at", "progress_end", "last_checkpoint_at"})


def write_observations(engine: Engine, progress: Mapping[str, Mapping[str, float]],
                       notes: Mapping[str, Mapping[str, float]]) -> None:
    """`progress`: task id -> task columns (`core.plan.progress.progress_values`); `notes`: attempt id ->
    attempt columns."""
    if not progress and not notes:
        return
    with engine.begin() as conn:
        _update_many(conn, TaskRow, progress)
        _update_many(conn, AttemptRow, notes)


def _update_many(conn: Connection, row: type[TaskRow] | type[AttemptRow],
                 values_by_id: Mapping[str, Mapping[str, float]]) -> None:
    """One executemany per distinct set of columns (a bound parameter cannot say "leave this column")."""
    groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
    allowed = ATTEMPT_NOTES if row is AttemptRow else TASK_PROGRESS
    for row_id, values in values_by_id.items():
        if set(values) - allowed:
            raise ValueError(f"not an observation: {sorted(set(values) - allowed)}")
        columns = tuple(sorted(values))
        if columns:
            groups.setdefault(columns, []).append({"b_id": row_id, **{f"b_{c}": v for c, v in values.items()}})
    for columns, params in groups.items():
        if conn.dialect.name == "postgresql":
            _update_from_arrays(conn, row, columns, params)
            continue
        statement = (update(row).where(row.id == bindparam("b_id"))
                     .values({c: bindparam(f"b_{c}") for c in columns}))
        conn.execute(statement, params)


def _update_from_arrays(conn: Connection, row: type[TaskRow] | type[AttemptRow], columns: tuple[str, ...],
                        params: list[dict[str, object]]) -> None:
    """PostgreSQL: one statement joining the rows to arrays of their new values (`unnest`), instead of
    one UPDATE per row. Pipelined, 20,000 single-row updates still cost the server a statement each.
    The names are checked against `TASK_PROGRESS` / `ATTEMPT_NOTES` first (`_update_many`), never input."""
    table = row.__tablename__
    sets = ", ".join(f"{c} = v.{c}" for c in columns)
    arrays = ", ".join(f"CAST(:{c} AS double precision[])" for c in columns)
    statement = text(f"UPDATE {table} SET {sets} FROM unnest(CAST(:ids AS varchar[]), {arrays}) "
                     f"AS v(id, {', '.join(columns)}) WHERE {table}.id = v.id")
    conn.execute(statement, {"ids": [p["b_id"] for p in params],
                             **{c: [p[f"b_{c}"] for p in params] for c in columns}})
