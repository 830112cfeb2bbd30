"""Filling a store with many jobs quickly, by copying jobs the real code paths made.

Submitting 100,000 jobs through `Store.submit` takes minutes, and running 90,000 jobs to success
through the loop takes far longer; neither is what the benchmark measures. So a few template jobs
are made the real way (submitted, or run to success by the loop), and their rows (job, tasks,
attempts, events) are copied with fresh ids in bulk inserts: the store then holds the same rows,
column for column, as if every job had been made the slow way.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from typing import Any

from sqlalchemy import Engine, Table, insert, select

from orchestrator.store.tables import AttemptRow, EventRow, JobRow, TaskRow

_BATCH = 5_000  # rows per executemany: bounded memory, few round trips


def _rows(engine: Engine, table: Table, job_ids: Collection[str]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).where(table.c.job_id.in_(list(job_ids))))]


def _insert(engine: Engine, table: Table, rows: Iterator[dict[str, Any]]) -> None:
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for row in rows:
            batch.append(row)
            if len(batch) >= _BATCH:
                conn.execute(insert(table), batch)
                batch = []
        if batch:
            conn.execute(insert(table), batch)


def clone_jobs(engine: Engine, template_ids: list[str], copies: int, *, created_step: float = 1.0) -> None:
    """Insert `copies` jobs, each a copy of the next template (round robin) with new ids throughout.

    Each copy's `created_at` is the template's plus `created_step` times its number, so copies do
    not share a creation time (`orch status` pages by it). Events keep their order within a job.
    """
    jobs_t, tasks_t, attempts_t, events_t = (JobRow.__table__, TaskRow.__table__, AttemptRow.__table__,
                                             EventRow.__table__)
    assert isinstance(jobs_t, Table) and isinstance(tasks_t, Table)
    assert isinstance(attempts_t, Table) and isinstance(events_t, Table)
    with engine.connect() as conn:
        templates = {r.id: dict(r._mapping) for r in conn.execute(select(jobs_t).where(
            jobs_t.c.id.in_(template_ids)))}
    by_job: dict[str, dict[str, list[dict[str, Any]]]] = {j: {"tasks": [], "attempts": [], "events": []}
                                                          for j in template_ids}
    for kind, table in (("tasks", tasks_t), ("attempts", attempts_t), ("events", events_t)):
        for row in _rows(engine, table, template_ids):
            by_job[row["job_id"]][kind].append(row)
    salt = uuid.uuid4()  # a new set of ids on every call
    plan = [(template_ids[i % len(template_ids)], str(uuid.uuid5(salt, str(i))), i) for i in range(copies)]

    def new(copy: int, old: str | None) -> str | None:
        """The copy's id for a template's task or attempt id: derived, so nothing is remembered per row."""
        return None if old is None else str(uuid.uuid5(salt, f"{copy}:{old}"))

    def jobs() -> Iterator[dict[str, Any]]:
        for tpl, job_id, i in plan:
            row = dict(templates[tpl], id=job_id, external_ref=None)
            row["created_at"] = templates[tpl]["created_at"] + created_step * (i + 1)
            yield row

    def children(kind: str) -> Iterator[dict[str, Any]]:
        for tpl, job_id, i in plan:
            for row in by_job[tpl][kind]:
                out = dict(row, job_id=job_id)
                if kind == "events":
                    out.pop("id")
                    out.update(task_id=new(i, row["task_id"]), attempt_id=new(i, row["attempt_id"]))
                else:
                    out["id"] = new(i, row["id"])
                    if kind == "attempts":
                        out["task_id"] = new(i, row["task_id"])
                yield out

    _insert(engine, jobs_t, jobs())
    _insert(engine, tasks_t, children("tasks"))
    _insert(engine, attempts_t, children("attempts"))
    _insert(engine, events_t, children("events"))
