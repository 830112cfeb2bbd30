"""Read models of the store: frozen views the rest of orch reasons about, never ORM rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.core.model import AttemptState, AttemptView, Outcome, TaskState, TaskView
from orchestrator.core.spec import JobSpec, spec_from_dict
from orchestrator.store.tables import AttemptRow, EventRow, JobRow, TaskRow
from providers.base import Market


@dataclass(frozen=True, slots=True)
class JobView:
    id: str
    name: str
    spec: JobSpec
    source: str
    created_at: float
    deadline_at: float | None
    budget_usd: float | None
    policy: str
    checkpoint_uri: str
    cancel_requested_at: float | None
    external_ref: str | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    at: float
    kind: str
    message: str
    task_id: str | None
    attempt_id: str | None
    data: dict[str, Any] | None


def job_view(r: JobRow, spec: JobSpec | None = None) -> JobView:
    """`spec`: the job's spec parsed before (a job's spec never changes after submit), to skip parsing."""
    return JobView(
        r.id,
        r.name,
        spec if spec is not None else spec_from_dict(r.spec),
        r.source,
        r.created_at,
        r.deadline_at,
        r.budget_usd,
        r.policy,
        r.checkpoint_uri,
        r.cancel_requested_at,
        r.external_ref,
        r.finished_at,
    )


def task_view(r: TaskRow) -> TaskView:
    return TaskView(
        r.id,
        r.job_id,
        r.index,
        TaskState(r.state),
        r.failures,
        r.progress_committed,
        r.progress_reported,
        r.checkpoint_uri,
        r.item_start,
        r.item_end,
    )


def attempt_view(r: AttemptRow) -> AttemptView:
    return AttemptView(
        id=r.id,
        task_id=r.task_id,
        number=r.number,
        provider=r.provider,
        region=r.region,
        zone=r.zone,
        instance_type=r.instance_type,
        market=Market(r.market),
        price_per_hour=r.price_per_hour,
        on_demand_price_per_hour=r.on_demand_price_per_hour,
        billing_increment_s=r.billing_increment_s,
        billing_minimum_s=r.billing_minimum_s,
        state=AttemptState(r.state),
        outcome=Outcome(r.outcome) if r.outcome else None,
        instance_id=r.instance_id,
        launched_at=r.launched_at,
        started_at=r.started_at,
        ended_at=r.ended_at,
        exit_code=r.exit_code,
        progress_start=r.progress_start,
        progress_end=r.progress_end,
        last_checkpoint_at=r.last_checkpoint_at,
        productive_at=r.productive_at,
        unbilled=r.unbilled,
        price_source=r.price_source,
    )


def event_view(r: EventRow) -> EventView:
    return EventView(r.id, r.at, r.kind, r.message, r.task_id, r.attempt_id, r.data)
