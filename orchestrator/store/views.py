"""Read models of the store: frozen views the rest of orch reasons about, never ORM rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.core.model import AttemptState, AttemptView, Outcome, TaskState, TaskView
from orchestrator.core.spec import JobSpec, spec_from_dict
from orchestrator.store.tables import AttemptRow, EventRow, JobRow, TaskRow
from vocab import Market


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
        nodes=r.nodes,
    )


def event_view(r: EventRow) -> EventView:
    return EventView(r.id, r.at, r.kind, r.message, r.task_id, r.attempt_id, r.data)


# --- Core reads: rows as tuples, straight into views -------------------------------------------------
#
# A tick reads every held task and attempt: built as ORM objects (identity map, instance state,
# attribute instrumentation) and then copied into views, they cost more than the step that reads
# them (10,000 tasks: ~70% of the snapshot). The columns below are selected with Core and each row
# tuple becomes its view directly. Their order is the view's field order; `tests/test_snapshot.py`
# checks that both paths give equal views.

TASK_COLUMNS = (TaskRow.id, TaskRow.job_id, TaskRow.index, TaskRow.state, TaskRow.failures,
                TaskRow.progress_committed, TaskRow.progress_reported, TaskRow.checkpoint_uri,
                TaskRow.item_start, TaskRow.item_end)
ATTEMPT_COLUMNS = (AttemptRow.id, AttemptRow.task_id, AttemptRow.number, AttemptRow.provider, AttemptRow.region,
                   AttemptRow.zone, AttemptRow.instance_type, AttemptRow.market, AttemptRow.price_per_hour,
                   AttemptRow.on_demand_price_per_hour, AttemptRow.billing_increment_s,
                   AttemptRow.billing_minimum_s, AttemptRow.state, AttemptRow.outcome, AttemptRow.instance_id,
                   AttemptRow.launched_at, AttemptRow.started_at, AttemptRow.ended_at, AttemptRow.exit_code,
                   AttemptRow.progress_start, AttemptRow.progress_end, AttemptRow.last_checkpoint_at,
                   AttemptRow.productive_at, AttemptRow.unbilled, AttemptRow.price_source, AttemptRow.nodes)
# Every job column a view needs except the spec: a held job's spec is parsed once (it never changes
# after submit), so a tick neither fetches nor JSON-decodes it again (`JobView.spec` comes apart).
JOB_COLUMNS = (JobRow.id, JobRow.name, JobRow.source, JobRow.created_at, JobRow.deadline_at, JobRow.budget_usd,
               JobRow.policy, JobRow.checkpoint_uri, JobRow.cancel_requested_at, JobRow.external_ref,
               JobRow.finished_at)

# Enum members by value: a dict lookup, not an `Enum.__call__` per row and column.
_TASK_STATE = {str(s): s for s in TaskState}
_ATTEMPT_STATE = {str(s): s for s in AttemptState}
_OUTCOME = {str(o): o for o in Outcome}
_MARKET = {str(m): m for m in Market}


def task_from_row(r: Sequence[Any]) -> TaskView:
    """A `TASK_COLUMNS` row as a view."""
    return TaskView(r[0], r[1], r[2], _TASK_STATE[r[3]], r[4], r[5], r[6], r[7], r[8], r[9])


def attempt_from_row(r: Sequence[Any]) -> AttemptView:
    """An `ATTEMPT_COLUMNS` row as a view."""
    outcome = r[13]
    return AttemptView(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _MARKET[r[7]], r[8], r[9], r[10], r[11],
                       _ATTEMPT_STATE[r[12]], _OUTCOME[outcome] if outcome else None, r[14], r[15], r[16],
                       r[17], r[18], r[19], r[20], r[21], r[22], r[23], r[24], r[25])


def job_from_row(r: Sequence[Any], spec: JobSpec) -> JobView:
    """A `JOB_COLUMNS` row and the job's parsed spec as a view."""
    return JobView(r[0], r[1], spec, r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10])
