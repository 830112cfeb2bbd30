"""Job leases: which controller works which job, on SQLite and PostgreSQL alike.

A lease, not a row lock, so it works the same on both stores and survives a controller that dies
holding it (the lease simply expires). Kept apart from the transitions in `store.repo`: a lease never
changes a job's state, only who may change it.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from orchestrator.store.tables import JobRow


class JobLeases:
    """The lease methods of `Store` (which provides `session`)."""

    def session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    def claim_jobs(self, owner: str, now: float, lease_seconds: float, *,
                   job_ids: Collection[str] | None = None) -> list[str]:
        """Renew or take the lease of every unfinished job that is free (of `job_ids` only, if
        given); return the ones held."""
        return list(self.claim(owner, now, lease_seconds, job_ids=job_ids))

    def claim(self, owner: str, now: float, lease_seconds: float, *,
              job_ids: Collection[str] | None = None) -> dict[str, int]:
        """As `claim_jobs`, with each held job's version (oldest job first): the loop reads again only
        the jobs whose version moved since it last read them."""
        scope = [JobRow.finished_at.is_(None)]
        if job_ids is not None:
            scope.append(JobRow.id.in_(list(job_ids)))
        with self.session() as s:
            s.execute(
                update(JobRow)
                .where(*scope, or_(JobRow.lease_owner.is_(None), JobRow.lease_owner == owner,
                                   JobRow.lease_expires_at < now))
                .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
            )
            rows = s.execute(select(JobRow.id, JobRow.version).where(*scope, JobRow.lease_owner == owner)
                             .order_by(JobRow.created_at))
            return {job_id: int(version) for job_id, version in rows}

    def renew_lease(self, owner: str, job_id: str, now: float, lease_seconds: float) -> bool:
        """Extend this owner's lease on one job right before acting on it; False if it was lost.

        A tick can outlast a lease (a slow provider); checking per job keeps two controllers from
        ever working the same job at once.
        """
        with self.session() as s:
            done = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == owner)
                             .values(lease_expires_at=now + lease_seconds))
            return int(cast(CursorResult[Any], done).rowcount) == 1

    def release_jobs(self, owner: str, *, job_ids: Collection[str] | None = None) -> None:
        with self.session() as s:
            q = update(JobRow).where(JobRow.lease_owner == owner)
            if job_ids is not None:
                q = q.where(JobRow.id.in_(list(job_ids)))
            s.execute(q.values(lease_owner=None, lease_expires_at=None))


    def job_leases(self, job_ids: Collection[str], now: float) -> dict[str, str]:
        """Job id -> the owner of its live lease, for those of `job_ids` some controller holds now (a
        lease past its expiry belongs to a controller that died or stopped: it is not listed)."""
        if not job_ids:
            return {}
        with self.session() as s:
            rows = s.execute(select(JobRow.id, JobRow.lease_owner)
                             .where(JobRow.id.in_(list(job_ids)), JobRow.lease_owner.is_not(None),
                                    JobRow.lease_expires_at >= now))
            return {job_id: str(owner) for job_id, owner in rows}

    def live_controllers(self, now: float) -> dict[str, int]:
        """Owner -> unfinished jobs held, for every loop holding a live lease now: a running controller
        (or a `submit --wait` / `orch run`) renews its leases every tick, and a stopped one releases
        them. `orch cancel`'s brief one-job pass (owner `cancel-…`) is not a controller. A controller
        with no unfinished job holds no lease, so it cannot be seen here until it claims one."""
        from sqlalchemy import func

        with self.session() as s:
            rows = s.execute(select(JobRow.lease_owner, func.count())
                             .where(JobRow.finished_at.is_(None), JobRow.lease_owner.is_not(None),
                                    JobRow.lease_expires_at >= now, ~JobRow.lease_owner.startswith("cancel-"))
                             .group_by(JobRow.lease_owner))
            return {str(owner): int(n) for owner, n in rows}
