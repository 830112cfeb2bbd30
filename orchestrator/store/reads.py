"""The reads a tick makes, as Core statements built once and run on a plain connection.

A tick reads every held job's tasks and attempts, then re-reads each task it changed. Built per call
through an ORM session, one small read cost ~0.5-0.9 ms of Python (statement construction and cache
key, the session's transaction, ORM result processing): at 10,000 changed tasks, more than the
tick's whole budget. Here each statement is built once at import with bound parameters, run on a
pooled connection (`Engine.connect`), and each row tuple becomes its frozen view directly
(`orchestrator.store.views`): ~0.1 ms for a task and its attempts. Reads only; every write stays a
guarded transition in `orchestrator.store.repo`, so nothing here can change a state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from sqlalchemy import BindParameter, Connection, bindparam, select

from orchestrator.core.model import AttemptState, AttemptView, TaskView
from orchestrator.core.spec import JobSpec, spec_from_dict
from orchestrator.store.gang import with_spans
from orchestrator.store.tables import AttemptRow, JobRow, TaskRow
from orchestrator.store.views import (
    ATTEMPT_COLUMNS,
    JOB_COLUMNS,
    TASK_COLUMNS,
    JobView,
    attempt_from_row,
    job_from_row,
    task_from_row,
)

# Ids per IN (...) list: far below SQLite's and PostgreSQL's limits on bound parameters.
IN_CHUNK = 2000
_ATTEMPT_ORDER = (AttemptRow.launched_at, AttemptRow.number)
_IDS: BindParameter[str] = bindparam("ids", expanding=True)

_TASK = select(*TASK_COLUMNS).where(TaskRow.id == bindparam("id"))
_TASKS_OF_JOB = select(*TASK_COLUMNS).where(TaskRow.job_id == bindparam("id")).order_by(TaskRow.index)
_TASKS_OF_JOBS = select(*TASK_COLUMNS).where(TaskRow.job_id.in_(_IDS)).order_by(TaskRow.job_id, TaskRow.index)
_ATTEMPT = select(*ATTEMPT_COLUMNS).where(AttemptRow.id == bindparam("id"))
_ATTEMPTS_OF_TASK = select(*ATTEMPT_COLUMNS).where(AttemptRow.task_id == bindparam("id")).order_by(*_ATTEMPT_ORDER)
_ATTEMPTS_OF_JOB = select(*ATTEMPT_COLUMNS).where(AttemptRow.job_id == bindparam("id")).order_by(*_ATTEMPT_ORDER)
_ATTEMPTS_OF_JOBS = (select(AttemptRow.job_id, *ATTEMPT_COLUMNS).where(AttemptRow.job_id.in_(_IDS))
                     .order_by(*_ATTEMPT_ORDER))
_JOBS = select(*JOB_COLUMNS).where(JobRow.id.in_(_IDS))
_SPECS = select(JobRow.id, JobRow.spec).where(JobRow.id.in_(_IDS))
# Of the attempt ids asked about (by primary key), those in a live state.
_LIVE_AMONG = select(AttemptRow.id).where(
    AttemptRow.state.in_([str(a) for a in AttemptState if a is not AttemptState.ENDED]), AttemptRow.id.in_(_IDS))


def chunks(ids: Collection[str]) -> Iterator[list[str]]:
    items = list(ids)
    for i in range(0, len(items), IN_CHUNK):
        yield items[i:i + IN_CHUNK]


def task_with_attempts(conn: Connection, task_id: str) -> tuple[TaskView | None, list[AttemptView]]:
    row = conn.execute(_TASK, {"id": task_id}).first()
    attempts = with_spans(conn, [attempt_from_row(a) for a in conn.execute(_ATTEMPTS_OF_TASK, {"id": task_id})])
    return (task_from_row(row) if row is not None else None), attempts


def attempt(conn: Connection, attempt_id: str) -> AttemptView | None:
    row = conn.execute(_ATTEMPT, {"id": attempt_id}).first()
    return with_spans(conn, [attempt_from_row(row)])[0] if row is not None else None


def tasks(conn: Connection, job_id: str) -> list[TaskView]:
    return [task_from_row(r) for r in conn.execute(_TASKS_OF_JOB, {"id": job_id})]


def attempts(conn: Connection, job_id: str) -> list[AttemptView]:
    return with_spans(conn, [attempt_from_row(r) for r in conn.execute(_ATTEMPTS_OF_JOB, {"id": job_id})])


def tasks_of(conn: Connection, job_ids: Collection[str]) -> dict[str, list[TaskView]]:
    out: dict[str, list[TaskView]] = {j: [] for j in job_ids}
    for chunk in chunks(job_ids):
        for r in conn.execute(_TASKS_OF_JOBS, {"ids": chunk}):
            out[r[1]].append(task_from_row(r))
    return out


def attempts_of(conn: Connection, job_ids: Collection[str]) -> dict[str, list[AttemptView]]:
    out: dict[str, list[AttemptView]] = {j: [] for j in job_ids}
    for chunk in chunks(job_ids):
        for r in conn.execute(_ATTEMPTS_OF_JOBS, {"ids": chunk}):
            out[r[0]].append(attempt_from_row(r[1:]))
    if any(a.nodes > 1 for views in out.values() for a in views):
        out = {job: with_spans(conn, views) for job, views in out.items()}
    return out


def jobs_by_id(conn: Connection, job_ids: Collection[str], known: Mapping[str, JobSpec]) -> dict[str, JobView]:
    """Only the specs not in `known` are fetched and parsed (a job's first tick)."""
    out: dict[str, JobView] = {}
    for chunk in chunks(job_ids):
        rows = conn.execute(_JOBS, {"ids": chunk}).all()
        new = [r[0] for r in rows if r[0] not in known]
        parsed: dict[str, JobSpec] = {}
        if new:
            parsed = {i: spec_from_dict(d) for i, d in conn.execute(_SPECS, {"ids": new})}
        for r in rows:
            spec = known.get(r[0])
            out[r[0]] = job_from_row(r, parsed[r[0]] if spec is None else spec)
    return out


def live_among(conn: Connection, attempt_ids: Collection[str]) -> set[str]:
    """Which of `attempt_ids` are live: the instances a tick lists that its snapshot does not explain."""
    out: set[str] = set()
    for chunk in chunks(attempt_ids):
        out.update(conn.execute(_LIVE_AMONG, {"ids": chunk}).scalars())
    return out
