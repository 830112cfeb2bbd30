"""A job's budget sums, kept per task, so a tick's steps read them in O(1) instead of walking the job.

The budget guard asks, for every task it steps, what the job has spent and what its other tasks will
still cost (`status.remaining_usd`, the one projection). Computed from scratch, that walks the whole
job for each of its tasks: an array job of n shards costs n² per tick. `JobTotals` holds each task's
share of those sums; a step that changes a task replaces that task's share (`update`), and the totals
move by the difference. `tests/test_totals.py` checks that the sums equal the from-scratch functions
after any sequence of updates, so there is still one rule, computed two ways.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from orchestrator.core.cost import attempt_cost
from orchestrator.core.model import AttemptState, AttemptView, TaskView
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import task_work_hours


@dataclass(frozen=True, slots=True)
class _Share:
    spent: float = 0.0
    left_work_usd: float = 0.0  # work left (h) x the price it runs at; 0 for a finished task
    price: float = 0.0  # the price it runs at (its live attempt's, else idle); 0 for a finished task
    overhead_h: float = 0.0  # sum of its attempts' measured restart overheads
    overhead_n: int = 0


@dataclass
class JobTotals:
    """`spent`, `overhead_h()` and `others_usd(task)` of one job at one moment (`now`, `idle`)."""

    spec: JobSpec
    idle: float | None
    now: float
    _shares: dict[str, _Share] = field(default_factory=dict)
    _sum: _Share = field(default_factory=_Share)

    @classmethod
    def of(cls, spec: JobSpec, tasks: Iterable[TaskView], attempts_of: Callable[[str], Sequence[AttemptView]], *,
           idle: float | None, now: float) -> JobTotals:
        totals = cls(spec, idle, now)
        for task in tasks:
            totals.update(task, attempts_of(task.id))
        return totals

    def _share(self, task: TaskView, attempts: Sequence[AttemptView]) -> _Share:
        seen = [(a.productive_at - a.launched_at) / 3600.0 for a in attempts if a.productive_at is not None]
        spent = sum(attempt_cost(a, self.now) for a in attempts)
        if task.state.terminal:
            return _Share(spent=spent, overhead_h=sum(seen), overhead_n=len(seen))
        live = [a.price_per_hour for a in attempts if a.state is not AttemptState.ENDED]
        price = live[-1] if live else (self.idle if self.idle is not None else 0.0)
        left_h = (1.0 - task.progress_committed) * task_work_hours(self.spec, task)
        return _Share(spent, left_h * price, price, sum(seen), len(seen))

    def update(self, task: TaskView, attempts: Sequence[AttemptView]) -> None:
        """Replace `task`'s share (after a step changed it, or to add it)."""
        new = self._share(task, attempts)
        old = self._shares.get(task.id, _Share())
        self._shares[task.id] = new
        s = self._sum
        self._sum = _Share(s.spent + new.spent - old.spent, s.left_work_usd + new.left_work_usd - old.left_work_usd,
                           s.price + new.price - old.price, s.overhead_h + new.overhead_h - old.overhead_h,
                           s.overhead_n + new.overhead_n - old.overhead_n)

    @property
    def spent(self) -> float:
        return self._sum.spent

    def overhead_h(self) -> float:
        """As `status.measured_overhead_hours`: the job's measured mean, else the spec's guess."""
        n = self._sum.overhead_n
        return self._sum.overhead_h / n if n else self.spec.schedule.restart_overhead_hours

    def others_usd(self, skip: str) -> float:
        """As `status.remaining_usd(..., skip=skip)`: what the job's other unfinished tasks will cost."""
        mine = self._shares.get(skip, _Share())
        left = self._sum.left_work_usd - mine.left_work_usd
        prices = self._sum.price - mine.price
        return max(0.0, left + self.overhead_h() * prices)
