"""What one tick knows about the jobs it holds, read in a fixed number of queries.

A tick used to re-read a job's every task and attempt after each task it stepped, and again inside
the step: an array job of n shards cost n x (its tasks + its attempts) rows per tick (40,201 rows for
100 shards). The snapshot reads the held jobs, their tasks and their attempts in three queries (per
2,000 jobs), and a step that changed its task re-reads that task and its attempts only
(`refresh_task`), so the rows a tick reads follow the tasks that changed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
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

    def attempt(self, task_id: str, attempt_id: str) -> AttemptView | None:
        return next((a for a in self.attempts_of(task_id) if a.id == attempt_id), None)

    def apply_task(self, task: TaskView) -> None:
        """Hold a task as this tick changed it in memory (its observed progress, written at the tick's end)."""
        self._tasks[task.id] = task
        self._task_list = None

    def apply_attempt(self, attempt: AttemptView) -> None:
        """Hold an attempt as this tick noted it in memory (see `apply_task`)."""
        attempts = self._attempts.get(attempt.task_id, [])
        self._attempts[attempt.task_id] = [attempt if a.id == attempt.id else a for a in attempts]
        self._flat = None

    def refresh_task(self, store: Store, task_id: str) -> None:
        """Re-read one task and its attempts after this tick changed them (two small queries)."""
        task, attempts = store.task_with_attempts(task_id)
        if task is None:
            return
        self._tasks[task_id] = task
        self._attempts[task_id] = attempts
        self._flat = self._task_list = None


def take(store: Store, job_ids: Collection[str]) -> dict[str, JobSnapshot]:
    """The jobs `job_ids` with their tasks and attempts, read now: three queries per 2,000 jobs, whatever
    their size (a pass over a few jobs, a lone step; a controller keeps them with `Snapshots`)."""
    return _read(store, job_ids, {})


def _read(store: Store, job_ids: Collection[str], specs: Mapping[str, JobSpec]) -> dict[str, JobSnapshot]:
    if not job_ids:
        return {}
    jobs = store.jobs_by_id(job_ids, specs=specs)
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


@dataclass
class Snapshots:
    """The held jobs' snapshots, kept from tick to tick: a job is read again only when its version moved.

    Every state change of a job, its tasks or attempts bumps the job's version in its own transaction
    (`store.repo`), whoever makes it: this loop, another controller, `orch cancel`. Progress and
    attempt notes do not: this loop writes them (`loop.pending`) after applying them to the snapshot
    it keeps. A job this loop did not hold last tick is always read (another controller may have
    written its progress meanwhile). So a quiet tick reads no task or attempt rows, and a busy one
    reads the jobs that changed, with every change of theirs.
    """

    _held: dict[str, tuple[int, JobSnapshot]] = field(default_factory=dict)
    # Parsed specs of the held jobs (a job's spec never changes after submit).
    specs: dict[str, JobSpec] = field(default_factory=dict)
    read_last: int = 0  # jobs read by the last `take` (the rest were kept)

    def take(self, store: Store, versions: Mapping[str, int]) -> dict[str, JobSnapshot]:
        """The jobs of `versions` (id -> version as claimed this tick), read again where it moved."""
        kept = {j: snap for j, (v, snap) in self._held.items() if versions.get(j) == v}
        fresh = _read(store, [j for j in versions if j not in kept], self.specs)
        self.read_last = len(fresh)
        out = {**kept, **fresh}
        self._held = {j: (versions[j], snap) for j, snap in out.items()}
        self.specs = {j: snap.job.spec for j, snap in out.items()}
        return out

    def forget(self, job_ids: Collection[str] | None = None) -> None:
        """Read these jobs (all, if None) afresh at their next tick: their snapshot may not match the store
        (a tick left them working, or the write of their observations failed)."""
        if job_ids is None:
            self._held.clear()
        for job_id in job_ids or ():
            self._held.pop(job_id, None)
