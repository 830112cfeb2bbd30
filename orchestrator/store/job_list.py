"""Which jobs `orch status` lists: filters and pages as SQL, so a store of 100,000 jobs is never loaded.

A job's state is not stored: `orchestrator.core.model.job_state` derives it from its tasks. It is the
state of the task that comes first in `_PRECEDENCE` (a running task makes the job running; else a
preempted one preempted; ... ; only all-succeeded tasks make it succeeded), so in SQL it is the
minimum rank over the job's tasks: one correlated aggregate per job through `ix_tasks_job_id`, with
no predicate on `tasks.state` that could tempt a planner onto the state index.
tests/test_status_list.py checks that SQL and `job_state` agree for every mix of task states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, case, func, select

from orchestrator.core.model import TaskState
from orchestrator.store.tables import JobRow, TaskRow

# Job state by precedence: the first one any task is in (launching counts as running) is the job's.
_PRECEDENCE: tuple[tuple[str, tuple[TaskState, ...]], ...] = (
    ("running", (TaskState.RUNNING, TaskState.LAUNCHING)),
    ("preempted", (TaskState.PREEMPTED,)),
    ("pending", (TaskState.PENDING,)),
    ("cancelled", (TaskState.CANCELLED,)),
    ("budget_exceeded", (TaskState.BUDGET_EXCEEDED,)),
    ("failed", (TaskState.FAILED,)),
    ("succeeded", (TaskState.SUCCEEDED,)),
)
_RANK = {job: rank for rank, (job, _) in enumerate(_PRECEDENCE)}


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs in any of `states` (job states, as `job_state` names them; empty: any), whose name matches
    the glob `name` (`*` any text, `?` one character; case-insensitive; None: any), whose id starts
    with `id_prefix` (the jobs an ambiguous prefix matches; None: any)."""

    states: Sequence[str] = ()
    name: str | None = None
    id_prefix: str | None = None


EVERY_JOB = JobFilter()


def _state_rank() -> ColumnElement[int]:
    """The job's state as its rank in `_PRECEDENCE` (NULL for a job without tasks)."""
    rank = case(*((TaskRow.state.in_([str(t) for t in tasks]), r) for r, (_, tasks) in enumerate(_PRECEDENCE)))
    return select(func.min(rank)).where(TaskRow.job_id == JobRow.id).correlate(JobRow).scalar_subquery()


def states_clause(states: Sequence[str]) -> ColumnElement[bool]:
    """SQL true exactly when `job_state` of the job's tasks is one of `states`."""
    return _state_rank().in_([_RANK[s] for s in states if s in _RANK])


def like_pattern(glob: str) -> str:
    """A shell-style glob as a LIKE pattern with `\\` as its escape: `%`, `_` and `\\` match themselves."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _where(f: JobFilter) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if f.states:
        clauses.append(states_clause(f.states))
    if f.name is not None:
        clauses.append(JobRow.name.ilike(like_pattern(f.name), escape="\\"))
    if f.id_prefix is not None:
        clauses.append(JobRow.id.startswith(f.id_prefix, autoescape=True))
    return clauses


def select_jobs(f: JobFilter, *, limit: int | None, offset: int = 0) -> Select[JobRow]:
    """The newest jobs first (ties by id, so pages never overlap), filtered and cut in the database."""
    q = select(JobRow).where(*_where(f)).order_by(JobRow.created_at.desc(), JobRow.id.desc()).offset(offset)
    return q if limit is None else q.limit(limit)


def count_jobs(f: JobFilter) -> Select[int]:
    return select(func.count()).select_from(JobRow).where(*_where(f))
