"""What a controller's log reads of the jobs it holds: the store's queries, so the CLI holds none.

Separate from `repo.Store` (already the size of a file) because only the controller's log needs them:
events since an id for the jobs one owner holds, and the budget facts of those jobs.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, select

from orchestrator.store.repo import Store
from orchestrator.store.tables import EventRow, JobRow
from orchestrator.store.views import EventView, event_view


@dataclass(frozen=True, slots=True)
class HeldEvent:
    job_id: str
    job_name: str
    event: EventView


@dataclass(frozen=True, slots=True)
class HeldJob:
    id: str
    name: str
    budget_usd: float | None
    finished_at: float | None


def newest_event_id(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.max(EventRow.id))) or 0)


def events_of_held_jobs(store: Store, owner: str, *, after_id: int) -> list[HeldEvent]:
    """Every event after `after_id` of the jobs `owner` holds, oldest first, in one query."""
    with store.session() as s:
        rows = s.execute(select(EventRow, JobRow.name).join(JobRow, JobRow.id == EventRow.job_id)
                         .where(EventRow.id > after_id, JobRow.lease_owner == owner)
                         .order_by(EventRow.id)).all()
        return [HeldEvent(r[0].job_id, r[1], event_view(r[0])) for r in rows]


def held_jobs(store: Store, owner: str, *, also: Collection[str] = ()) -> list[HeldJob]:
    """The unfinished jobs `owner` holds, and those of `also` (finished since the last look) too."""
    with store.session() as s:
        rows = s.execute(select(JobRow.id, JobRow.name, JobRow.budget_usd, JobRow.finished_at)
                         .where(JobRow.lease_owner == owner)
                         .where(JobRow.finished_at.is_(None) | JobRow.id.in_(list(also)))).all()
    return [HeldJob(r[0], r[1], r[2], r[3]) for r in rows]
