"""A job's live status, as the CLI, `--json` and the Kubernetes status show it: one function, one truth.

Pure: it is given the job's rows and the offers, and derives state, progress, slack and money
(through `orchestrator.core.cost.job_cost`, the only cost arithmetic in orch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.core.cost import JobCost, gang_hourly, hourly_price, idle_price_of, job_cost, money
from orchestrator.core.model import AttemptState, AttemptView, TaskView, job_state
from orchestrator.core.spec import JobSpec
from vocab import Market, Offer


def task_work_hours(spec: JobSpec, task: TaskView) -> float:
    """A task's share of the job's estimated hours (array shards split it by item count)."""
    if spec.array is None or task.item_start is None or task.item_end is None:
        return spec.schedule.estimated_hours
    return spec.schedule.estimated_hours * (task.item_end - task.item_start) / spec.array.count


def measured_overhead_hours(spec: JobSpec, attempts: Sequence[AttemptView]) -> float:
    """Restart overhead d: the mean launch-to-first-progress time measured on this job, else the spec's guess."""
    seen = [(a.productive_at - a.launched_at) / 3600.0 for a in attempts if a.productive_at is not None]
    return sum(seen) / len(seen) if seen else spec.schedule.restart_overhead_hours


@dataclass(frozen=True, slots=True)
class JobStatus:
    job_id: str
    name: str
    state: str
    market: str | None
    instance_type: str | None
    progress: float  # committed, averaged over tasks by work
    progress_reported: float
    deadline_at: float | None
    slack_hours: float | None  # time left minus work left (on the current price path)
    budget_usd: float | None
    cost: JobCost
    tasks: tuple[TaskView, ...]
    attempts: tuple[AttemptView, ...]
    price_known: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "name": self.name, "state": self.state, "market": self.market,
            "instance_type": self.instance_type, "progress": round(self.progress, 4),
            "progress_reported": round(self.progress_reported, 4), "deadline_at": self.deadline_at,
            "slack_hours": None if self.slack_hours is None else round(self.slack_hours, 3),
            "budget_usd": money(self.budget_usd), "price_known": self.price_known,
            "cost": self.cost.to_dict(known=self.price_known),
            "tasks": [{"id": t.id, "index": t.index, "state": str(t.state), "failures": t.failures,
                       "progress": round(t.progress_committed, 4)} for t in self.tasks],
            "attempts": [_attempt_dict(a) for a in self.attempts],
        }


def _attempt_dict(a: AttemptView) -> dict[str, Any]:
    return {"id": a.id, "task_id": a.task_id, "number": a.number, "provider": a.provider, "region": a.region,
            "zone": a.zone, "instance_type": a.instance_type, "market": str(a.market),
            "price_per_hour": a.price_per_hour, "state": str(a.state),
            "outcome": None if a.outcome is None else str(a.outcome), "instance_id": a.instance_id,
            "launched_at": a.launched_at, "ended_at": a.ended_at, "exit_code": a.exit_code, "nodes": a.nodes}


def idle_price(spec: JobSpec, offers: Sequence[Offer]) -> float | None:
    """The price an unplaced task is expected to run at: the cheapest spot offer, or on-demand for an
    on-demand job (or when no spot is offered)."""
    spot = min((o for o in offers if o.market is Market.SPOT), key=lambda o: o.price_per_hour, default=None)
    on_demand = min((o for o in offers if o.market is Market.ON_DEMAND), key=lambda o: o.price_per_hour, default=None)
    return idle_price_of(spec, spot, on_demand)


def remaining_usd(spec: JobSpec, tasks: Sequence[TaskView], attempts: Sequence[AttemptView], *,
                  idle: float | None, overhead_h: float, skip: str | None = None) -> float:
    """What the unfinished tasks (but `skip`) will still cost: each task's work left plus one more restart
    overhead, at the price its live attempt runs at, else at `idle`.

    The one projection of what is left: `orch status`'s projected total, the budget guard (which
    never launches what would take that total past the budget) and the GpuJob status all use it, so
    the total a user sees is the total the guard enforces.
    """
    running = {a.task_id: hourly_price(a) for a in attempts if a.state is not AttemptState.ENDED}
    return sum(((1.0 - t.progress_committed) * task_work_hours(spec, t) + overhead_h)
               * running.get(t.id, idle if idle is not None else 0.0)
               for t in tasks if t.id != skip and not t.state.terminal)


def job_status(*, job_id: str, name: str, spec: JobSpec, created_at: float, deadline_at: float | None,
               tasks: Sequence[TaskView], attempts: Sequence[AttemptView], offers: Sequence[Offer],
               now: float) -> JobStatus:
    live = [a for a in attempts if a.state is not AttemptState.ENDED]
    on_demand = min((o.price_per_hour for o in offers if o.market is Market.ON_DEMAND), default=None)
    fallback = idle_price(spec, offers)
    remaining_h = 0.0
    total_work = 0.0
    done = reported = 0.0
    for t in tasks:
        work = task_work_hours(spec, t)
        total_work += work
        done += t.progress_committed * work
        reported += max(t.progress_reported, t.progress_committed) * work
        if not t.state.terminal:
            remaining_h += (1.0 - t.progress_committed) * work
    overhead = measured_overhead_hours(spec, attempts)
    od_price = next((a.on_demand_price_per_hour for a in reversed(attempts)), on_demand)
    state = job_state([t.state for t in tasks])
    left_usd = remaining_usd(spec, tasks, attempts, idle=fallback, overhead_h=overhead)
    cost = job_cost(attempts, now=now, remaining_usd=left_usd, state=state,
                    on_demand_only_usd=(total_work + overhead * len(tasks)) * gang_hourly(spec, od_price or 0.0))
    slack = None
    if deadline_at is not None and any(not t.state.terminal for t in tasks):
        slack = (deadline_at - now) / 3600.0 - remaining_h / max(1, sum(not t.state.terminal for t in tasks))
    newest = live[-1] if live else (attempts[-1] if attempts else None)
    return JobStatus(
        job_id=job_id, name=name, state=state,
        market=str(newest.market) if newest and newest in live else None,
        instance_type=newest.instance_type if newest else None,
        progress=done / total_work if total_work else 0.0,
        progress_reported=reported / total_work if total_work else 0.0,
        deadline_at=deadline_at, slack_hours=slack, budget_usd=spec.schedule.budget_usd, cost=cost,
        tasks=tuple(tasks), attempts=tuple(attempts),
        price_known=all(a.price_source != "unknown" for a in attempts) and (bool(attempts) or fallback is not None),
    )
