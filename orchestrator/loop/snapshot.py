"""What one tick knows about the jobs it holds, read in a fixed number of queries.

A tick used to re-read a job's every task and attempt after each task it stepped, and again inside
the step: an array job of n shards cost n x (its tasks + its attempts) rows per tick (40,201 rows for
100 shards). The snapshot reads the held jobs, their tasks and their attempts in three queries (per
2,000 jobs), and a step that changed its task re-reads that task and its attempts only
(`refresh_task`), so the rows a tick reads follow the tasks that changed.
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping
from dataclasses import dataclass, field

from orchestrator.core.model import AttemptState, AttemptView, TaskView
from orchestrator.core.spec import JobSpec
from orchestrator.store import Store
from orchestrator.store.views import JobView


@dataclass
class JobSnapshot:
    """One job as this tick sees it; `tasks` in index order, `attempts` as `Store.attempts` orders them."""

    job: JobView
    _tasks: dict[str, TaskView]
    _attempts: dict[str, list[AttemptView]]  # by task id
    _flat: list[AttemptView] | None = field(default=None, repr=False)
    _task_list: list[TaskView] | None = field(default=None, repr=False)

    @property
    def tasks(self) -> list[TaskView]:
        """The job's tasks (listed once per change, not per reader: each step of an array job reads them)."""
        if self._task_list is None:
            self._task_list = list(self._tasks.values())
        return self._task_list

    @property
    def attempts(self) -> list[AttemptView]:
        """Every attempt of the job (flattened once per change, not per reader)."""
        if self._flat is None:
            flat = [a for attempts in self._attempts.values() for a in attempts]
            flat.sort(key=lambda a: (a.launched_at, a.number))
            self._flat = flat
        return self._flat

    def task(self, task_id: str) -> TaskView | None:
        return self._tasks.get(task_id)

    def attempts_of(self, task_id: str) -> list[AttemptView]:
        """One task's attempts, without walking the job's (an array job's step looks at its own)."""
        return self._attempts.get(task_id, [])

    def live_attempt(self, task_id: str) -> AttemptView | None:
        return next((a for a in self.attempts_of(task_id) if a.state is not AttemptState.ENDED), None)

    def refresh_task(self, store: Store, task_id: str) -> None:
        """Re-read one task and its attempts after this tick changed them (two small queries)."""
        task, attempts = store.task_with_attempts(task_id)
        if task is None:
            return
        self._tasks[task_id] = task
        self._attempts[task_id] = attempts
        self._flat = self._task_list = None


def take(store: Store, job_ids: Collection[str], *,
         specs: MutableMapping[str, JobSpec] | None = None) -> dict[str, JobSnapshot]:
    """The jobs `job_ids` with their tasks and attempts: three queries per 2,000 jobs, whatever their size.

    `specs` carries parsed job specs from tick to tick (a job's spec never changes after submit):
    parsing every held job's spec again was the largest part of a steady tick. It is updated in place
    to hold exactly the jobs read now.
    """
    jobs = store.jobs_by_id(job_ids, specs=specs)
    if specs is not None:
        specs.clear()
        specs.update((job_id, job.spec) for job_id, job in jobs.items())
    tasks = store.tasks_of(list(jobs))
    attempts = store.attempts_of(list(jobs))
    out: dict[str, JobSnapshot] = {}
    for job_id, job in jobs.items():
        job_tasks = tasks[job_id]
        by_task: dict[str, list[AttemptView]] = {t.id: [] for t in job_tasks}
        for a in attempts[job_id]:
            by_task.setdefault(a.task_id, []).append(a)
        out[job_id] = JobSnapshot(job, {t.id: t for t in job_tasks}, by_task)
    return out
