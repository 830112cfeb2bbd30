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

from orchestrator.core.cost import attempt_cost, hourly_price
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
    live_hourly: float = 0.0  # what its live attempts cost an hour, every node of a gang (0 when none)


_ZERO = _Share()


@dataclass
class JobTotals:
    """`spent`, `overhead_h()` and `others_usd(task)` of one job at one moment (`now`, `idle`).

    Shares are worked out when a sum is next read, not at `update`: a step updates its task when the
    tick begins and again after it observed progress, and only the second is ever read."""

    spec: JobSpec
    idle: float | None
    now: float
    _shares: dict[str, _Share] = field(default_factory=dict)
    _sum: _Share = field(default_factory=_Share)
    _due: dict[str, tuple[TaskView, Sequence[AttemptView]]] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: JobSpec, tasks: Iterable[TaskView], attempts_of: Callable[[str], Sequence[AttemptView]], *,
           idle: float | None, now: float) -> JobTotals:
        totals = cls(spec, idle, now)
        for task in tasks:
            totals.update(task, attempts_of(task.id))
        return totals

    def _share(self, task: TaskView, attempts: Sequence[AttemptView]) -> _Share:
        spent = overhead_h = 0.0
        overhead_n = 0
        live_price: float | None = None
        live_hourly = 0.0
        for a in attempts:
            spent += attempt_cost(a, self.now)
            if a.productive_at is not None:
                overhead_h += (a.productive_at - a.launched_at) / 3600.0
                overhead_n += 1
            if a.state is not AttemptState.ENDED:
                live_price = hourly_price(a)
                live_hourly += live_price
        if task.state.terminal:
            return _Share(spent=spent, overhead_h=overhead_h, overhead_n=overhead_n, live_hourly=live_hourly)
        price = live_price if live_price is not None else (self.idle if self.idle is not None else 0.0)
        left_h = (1.0 - task.progress_committed) * task_work_hours(self.spec, task)
        return _Share(spent, left_h * price, price, overhead_h, overhead_n, live_hourly)

    def update(self, task: TaskView, attempts: Sequence[AttemptView]) -> None:
        """Replace `task`'s share (after a step changed it, or to add it), as of these records."""
        self._due[task.id] = (task, attempts)

    def _settle(self) -> None:
        if not self._due:
            return
        due, self._due = self._due, {}
        s = self._sum
        spent, left, price, over_h, over_n = s.spent, s.left_work_usd, s.price, s.overhead_h, s.overhead_n
        live = s.live_hourly
        for task_id, (task, attempts) in due.items():
            new = self._share(task, attempts)
            old = self._shares.get(task_id, _ZERO)
            self._shares[task_id] = new
            spent += new.spent - old.spent
            left += new.left_work_usd - old.left_work_usd
            price += new.price - old.price
            over_h += new.overhead_h - old.overhead_h
            over_n += new.overhead_n - old.overhead_n
            live += new.live_hourly - old.live_hourly
        self._sum = _Share(spent, left, price, over_h, over_n, live)

    @property
    def spent(self) -> float:
        self._settle()
        return self._sum.spent

    def overhead_h(self) -> float:
        """As `status.measured_overhead_hours`: the job's measured mean, else the spec's guess."""
        self._settle()
        n = self._sum.overhead_n
        return self._sum.overhead_h / n if n else self.spec.schedule.restart_overhead_hours

    def others_usd(self, skip: str) -> float:
        """As `status.remaining_usd(..., skip=skip)`: what the job's other unfinished tasks will cost."""
        self._settle()
        mine = self._shares.get(skip, _ZERO)
        left = self._sum.left_work_usd - mine.left_work_usd
        prices = self._sum.price - mine.price
        return max(0.0, left + self.overhead_h() * prices)

    def others_hourly(self, skip: str) -> float:
        """What the job's live attempts other than `skip`'s cost an hour: with the task's own, what the
        job will spend in the next tick, which the budget guard must see whole (two workers of one
        campaign, each under the budget on its own tick, crossed it together: harness seed 1037)."""
        self._settle()
        return max(0.0, self._sum.live_hourly - self._shares.get(skip, _ZERO).live_hourly)
