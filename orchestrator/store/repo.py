"""The one place that writes state. Every change is a guarded transition with its event row.

Invariant (enforced here, nowhere else): `tasks.state` changes only through `Store.transition`,
an `UPDATE ... WHERE id = :id AND state IN (:sources)` whose row count is checked, in the same
transaction as the event that records it. Attempts move `launching -> running -> ended` the same way.
Side effects (launching, terminating) happen in the reconciler after these commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.core.model import (
    TRANSITIONS,
    AttemptState,
    AttemptView,
    IllegalTransition,
    NodeSpan,
    Outcome,
    TaskState,
    TaskView,
    Transition,
)
from orchestrator.core.spec import JobSpec
from orchestrator.job.items_format import ParsedItem
from orchestrator.store import gang, reads
from orchestrator.store.items import insert_items
from orchestrator.store.job_list import EVERY_JOB, JobFilter, count_jobs, select_jobs
from orchestrator.store.leases import JobLeases
from orchestrator.store.observations import write_observations
from orchestrator.store.tables import AttemptRow, EventRow, JobRow, PriceRow, TaskRow
from orchestrator.store.views import (
    EventView,
    JobView,
    attempt_view,
    event_view,
    job_view,
)
from vocab import Offer


class AmbiguousJob(LookupError):
    """A job id prefix that matches several jobs."""


def _count(result: Any) -> int:
    """Rows matched by an UPDATE: the guard of every transition."""
    return int(cast(CursorResult[Any], result).rowcount)


def _bump(session: Session, job_id: str) -> None:
    """Move the job's version with a change to it, its tasks or attempts, in the change's own transaction
    (a loop that read version v has seen every change up to v; migrations/versions/0004)."""
    session.execute(update(JobRow).where(JobRow.id == job_id).values(version=JobRow.version + 1))


def _bump_of_attempt(session: Session, attempt_id: str) -> None:
    session.execute(update(JobRow).where(JobRow.id == select(AttemptRow.job_id).where(
        AttemptRow.id == attempt_id).scalar_subquery()).values(version=JobRow.version + 1))


def new_id() -> str:
    return str(uuid.uuid4())


class Store(JobLeases):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    # --- jobs ----------------------------------------------------------------------------------

    def submit(
        self,
        spec: JobSpec,
        *,
        source: str,
        now: float,
        checkpoint_uri: str,
        job_id: str | None = None,
        external_ref: str | None = None,
        items: Sequence[ParsedItem] = (),
    ) -> str:
        """Store a validated job and its tasks (and a campaign's items) in one transaction: all of it, or nothing."""
        job_id = job_id or new_id()
        shards = spec.array.shards if spec.array else 1
        with self.session() as s:
            s.add(
                JobRow(
                    id=job_id,
                    name=spec.name,
                    spec=spec.to_dict(),
                    source=source,
                    created_at=now,
                    deadline_at=spec.schedule.deadline,
                    budget_usd=spec.schedule.budget_usd,
                    estimated_hours=spec.schedule.estimated_hours,
                    policy=spec.policy_name,
                    checkpoint_uri=checkpoint_uri,
                    external_ref=external_ref,
                )
            )
            s.flush()
            insert_items(s, job_id, items, now)
            for i in range(shards):
                start, end = spec.array.bounds(i) if spec.array else (None, None)
                uri = checkpoint_uri.rstrip("/") + (f"/task-{i:05d}" if spec.array else "/task-00000")
                s.add(
                    TaskRow(
                        id=new_id(),
                        job_id=job_id,
                        index=i,
                        state=TaskState.PENDING,
                        failures=0,
                        progress_committed=0.0,
                        progress_reported=0.0,
                        checkpoint_uri=uri,
                        item_start=start,
                        item_end=end,
                        updated_at=now,
                    )
                )
            s.add(
                EventRow(
                    job_id=job_id,
                    at=now,
                    kind="submitted",
                    message=f"submitted {spec.name!r}: {shards} task(s), policy {spec.policy_name}",
                )
            )
        return job_id

    def request_cancel(self, job_id: str, now: float) -> bool:
        with self.session() as s:
            n = _count(
                s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.cancel_requested_at.is_(None))
                    .values(cancel_requested_at=now, version=JobRow.version + 1)
                )
            )
            if n:
                s.add(EventRow(job_id=job_id, at=now, kind="cancel_requested", message="cancellation requested"))
        return bool(n)

    def mark_finished(self, job_id: str, now: float) -> None:
        with self.session() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.finished_at.is_(None)).values(finished_at=now))

    def job(self, job_id: str) -> JobView | None:
        """A job by id, or by a unique id prefix (as typed at the CLI); `AmbiguousJob` if several match."""
        with self.session() as s:
            row = s.get(JobRow, job_id)
            if row is None and job_id:
                rows = list(s.scalars(select(JobRow).where(JobRow.id.startswith(job_id, autoescape=True)).limit(2)))
                if len(rows) > 1:
                    raise AmbiguousJob(f"{job_id!r} matches more than one job; give more of the id")
                row = rows[0] if rows else None
            return job_view(row) if row else None

    def jobs_by_id(self, job_ids: Collection[str], *,
                   specs: Mapping[str, JobSpec] | None = None) -> dict[str, JobView]:
        """Several jobs by exact id, in one query per `reads.IN_CHUNK` ids (a tick's snapshot). `specs`: specs
        already parsed, by job id (immutable after submit), so a tick does not parse them again."""
        with self.engine.connect() as conn:
            return reads.jobs_by_id(conn, job_ids, specs or {})

    def job_by_ref(self, external_ref: str) -> JobView | None:
        with self.session() as s:
            row = s.scalars(select(JobRow).where(JobRow.external_ref == external_ref)).first()
            return job_view(row) if row else None

    def jobs(self, where: JobFilter = EVERY_JOB, *, limit: int | None = None, offset: int = 0) -> list[JobView]:
        """The newest jobs first; filtered and cut by the database (`limit=None`: every match)."""
        with self.session() as s:
            return [job_view(r) for r in s.scalars(select_jobs(where, limit=limit, offset=offset))]

    def count_jobs(self, where: JobFilter = EVERY_JOB) -> int:
        with self.session() as s:
            return int(s.scalar(count_jobs(where)) or 0)

    # --- tasks ---------------------------------------------------------------------------------

    def tasks(self, job_id: str) -> list[TaskView]:
        with self.engine.connect() as conn:
            return reads.tasks(conn, job_id)

    def tasks_of(self, job_ids: Collection[str]) -> dict[str, list[TaskView]]:
        """The tasks of several jobs in one query per `reads.IN_CHUNK` jobs (a page of `orch status`, a tick's
        snapshot), by job id."""
        with self.engine.connect() as conn:
            return reads.tasks_of(conn, job_ids)

    def task_with_attempts(self, task_id: str) -> tuple[TaskView | None, list[AttemptView]]:
        """One task and its attempts (ordered as `attempts` orders them), read together: what a tick
        re-reads after changing a task, instead of the whole job."""
        with self.engine.connect() as conn:
            return reads.task_with_attempts(conn, task_id)

    def transition(
        self,
        task_id: str,
        name: Transition | str,
        now: float,
        *,
        message: str = "",
        attempt_id: str | None = None,
        session: Session | None = None,
        **values: Any,
    ) -> None:
        """Apply a named transition, or raise `IllegalTransition` if the task is not in a source state."""
        if session is None:
            with self.session() as s:
                self._transition(s, task_id, name, now, message=message, attempt_id=attempt_id, **values)
            return
        self._transition(session, task_id, name, now, message=message, attempt_id=attempt_id, **values)

    def _transition(self, session: Session, task_id: str, name: Transition | str, now: float, *, message: str,
                    attempt_id: str | None, **values: Any) -> EventRow:
        """`transition` in `session`; returns its event, not yet flushed (its message may still change)."""
        try:
            t = TRANSITIONS[Transition(name)]
        except ValueError:
            raise IllegalTransition(f"no transition named {name!r}") from None
        n = _count(
            session.execute(
                update(TaskRow)
                .where(TaskRow.id == task_id, TaskRow.state.in_([str(x) for x in t.sources]))
                .values(state=str(t.target), updated_at=now, **values)
            )
        )
        if n != 1:
            current = session.scalar(select(TaskRow.state).where(TaskRow.id == task_id))
            raise IllegalTransition(
                f"{name}: task {task_id} is {current or 'missing'}, not one of {', '.join(t.sources)}"
            )
        job_id = session.scalar(select(TaskRow.job_id).where(TaskRow.id == task_id))
        assert job_id is not None
        _bump(session, job_id)
        event = EventRow(job_id=job_id, task_id=task_id, attempt_id=attempt_id, at=now, kind=name,
                         message=message or f"task -> {t.target}")
        session.add(event)
        return event

    def record_observations(self, progress: Mapping[str, Mapping[str, float]],
                            notes: Mapping[str, Mapping[str, float]]) -> None:
        """A tick's progress (task id -> `progress_values`) and attempt notes, in one transaction."""
        write_observations(self.engine, progress, notes)

    # --- attempts ------------------------------------------------------------------------------

    def begin_attempt(self, task: TaskView, offer: Offer, now: float, *, message: str = "",
                      reason: str = "", nodes: int = 1) -> AttemptView:
        """`pending -> launching` and the attempt row, before the provider is called (its id is the token).

        The guarded transition runs first: it takes the task's row lock, so the loser of a race gets
        `IllegalTransition` and never reaches the attempt numbering.
        """
        attempt_id = new_id()
        with self.session() as s:
            event = self._transition(s, task.id, Transition.LAUNCH, now, attempt_id=attempt_id, message="launching")
            with s.no_autoflush:  # the event goes out once, with its final message
                number = int(s.scalar(select(func.count()).select_from(AttemptRow)
                                      .where(AttemptRow.task_id == task.id)) or 0)
            row = AttemptRow(
                id=attempt_id, task_id=task.id, job_id=task.job_id, number=number,
                provider=offer.provider, region=offer.region, zone=offer.zone,
                instance_type=offer.instance_type, market=str(offer.market),
                price_per_hour=offer.price_per_hour, on_demand_price_per_hour=offer.on_demand_price_per_hour,
                price_source=offer.price_source, billing_increment_s=offer.billing.increment_seconds,
                billing_minimum_s=offer.billing.minimum_seconds, state=str(AttemptState.LAUNCHING),
                launched_at=now, progress_start=task.progress_committed, unbilled=False, nodes=nodes,
            )
            # The event was made with a placeholder; it gets the numbered message before it is written
            # (it was an UPDATE by attempt id, a column no index covers: every event scanned, 14 ms a
            # launch on PostgreSQL with 30,000 events).
            event.message = message or (f"launching attempt {number} on {offer.market} {offer.instance_type} in "
                                        f"{offer.zone or offer.region} at ${offer.price_per_hour:.4f}/h"
                                        + (f": {reason}" if reason else ""))
            s.add(row)
            s.flush()
            return attempt_view(row)

    def attempt_instance(self, attempt: AttemptView, instance_id: str) -> None:
        """Name the instance of an attempt that is still launching (a pod waiting for a node)."""
        with self.session() as s:
            s.execute(update(AttemptRow)
                      .where(AttemptRow.id == attempt.id, AttemptRow.state == str(AttemptState.LAUNCHING))
                      .values(instance_id=instance_id))
            _bump_of_attempt(s, attempt.id)

    def attempt_running(self, attempt: AttemptView, instance_id: str, now: float, *,
                        started_at: float | None = None) -> None:
        """The attempt's instance runs; billing counts from `started_at` (default `now`)."""
        with self.session() as s:
            n = _count(
                s.execute(
                    update(AttemptRow)
                    .where(AttemptRow.id == attempt.id, AttemptRow.state == str(AttemptState.LAUNCHING))
                    .values(state=str(AttemptState.RUNNING), instance_id=instance_id,
                            started_at=now if started_at is None else started_at)
                )
            )
            if n != 1:
                raise IllegalTransition(f"attempt {attempt.id} is not launching")
            self.transition(
                attempt.task_id,
                "started",
                now,
                attempt_id=attempt.id,
                session=s,
                message=f"attempt {attempt.number} running as {instance_id}",
            )

    def end_attempt(
        self,
        attempt: AttemptView,
        outcome: Outcome,
        now: float,
        *,
        task_transitions: Sequence[Transition | str],
        message: str,
        exit_code: int | None = None,
        unbilled: bool = False,
        failures: int | None = None,
        ended_at: float | None = None,
    ) -> None:
        """End an attempt and move its task, atomically; a second call for the same attempt is refused."""
        with self.session() as s:
            n = _count(
                s.execute(
                    update(AttemptRow)
                    .where(AttemptRow.id == attempt.id, AttemptRow.state != str(AttemptState.ENDED))
                    .values(
                        state=str(AttemptState.ENDED),
                        outcome=str(outcome),
                        exit_code=exit_code,
                        ended_at=ended_at if ended_at is not None else now,
                        unbilled=unbilled,
                        message=message,
                    )
                )
            )
            if n != 1:
                raise IllegalTransition(f"attempt {attempt.id} has already ended")
            if not task_transitions:
                _bump_of_attempt(s, attempt.id)  # the transitions below bump it otherwise
            extra: dict[str, Any] = {} if failures is None else {"failures": failures}
            for i, name in enumerate(task_transitions):
                self.transition(
                    attempt.task_id,
                    name,
                    now,
                    attempt_id=attempt.id,
                    session=s,
                    message=message if i == 0 else "",
                    **(extra if i == 0 else {}),
                )

    def settle_end(self, attempt: AttemptView, ended_at: float, now: float, *, why: str) -> bool:
        """Move an ended attempt's end to the moment the cloud reports (one row, its event beside it): the
        ledger bills what the cloud bills. An attempt ended on a notice was recorded at the notice's
        deadline, one declared lost at the tick that missed it; the listing tells the real end later."""
        ended_at = max(ended_at, attempt.launched_at)
        with self.session() as s:
            n = _count(s.execute(update(AttemptRow).where(
                AttemptRow.id == attempt.id, AttemptRow.state == str(AttemptState.ENDED),
                AttemptRow.unbilled.is_(False), AttemptRow.ended_at != ended_at).values(ended_at=ended_at)))
            if n != 1:
                return False
            job_id = s.execute(select(AttemptRow.job_id).where(AttemptRow.id == attempt.id)).scalar_one()
            _bump(s, job_id)
            moved = ended_at - (attempt.ended_at if attempt.ended_at is not None else ended_at)
            s.add(EventRow(job_id=job_id, task_id=attempt.task_id, attempt_id=attempt.id, at=now, kind="billed_end",
                           message=f"attempt {attempt.number} ended at the cloud's time ({moved:+.0f} s): {why}",
                           data={"ended_at": ended_at, "moved_s": moved}))
            return True

    def attempts(self, job_id: str) -> list[AttemptView]:
        with self.engine.connect() as conn:
            return reads.attempts(conn, job_id)

    def attempts_of(self, job_ids: Collection[str]) -> dict[str, list[AttemptView]]:
        """The attempts of several jobs in one query per `reads.IN_CHUNK` jobs, by job id, each list ordered
        as `attempts` orders it."""
        with self.engine.connect() as conn:
            return reads.attempts_of(conn, job_ids)

    def live_among(self, attempt_ids: Collection[str]) -> set[str]:
        with self.engine.connect() as conn:
            return reads.live_among(conn, attempt_ids)

    def attempt(self, attempt_id: str) -> AttemptView | None:
        with self.engine.connect() as conn:
            return reads.attempt(conn, attempt_id)

    # --- gangs (orchestrator/store/gang.py) ------------------------------------------------------

    def record_attempt_nodes(self, attempt_id: str, spans: Sequence[NodeSpan]) -> int:
        """A gang attempt's launched nodes (idempotent per rank and launch); the number of rows added."""
        return gang.record_spans(self.engine, attempt_id, spans)

    def end_attempt_node(self, attempt_id: str, instance_id: str, ended_at: float) -> bool:
        """One node of a gang ended at the cloud's time; False when it was already recorded ended."""
        return gang.end_span(self.engine, attempt_id, instance_id, ended_at)

    def settle_node_end(self, attempt_id: str, instance_id: str, ended_at: float) -> bool:
        """One node of a gang ended earlier than the end recorded for it (a guess): moved to the cloud's."""
        return gang.settle_span(self.engine, attempt_id, instance_id, ended_at)

    def reap_node_end(self, attempt_id: str, instance_id: str, ended_at: float) -> bool:
        """One node of a gang ran until the reaper stopped it at `ended_at`: its end moves there (later only)."""
        return gang.reap_span(self.engine, attempt_id, instance_id, ended_at)

    def attempt_nodes(self, attempt_id: str) -> tuple[NodeSpan, ...]:
        with self.engine.connect() as conn:
            return gang.spans_of(conn, [attempt_id]).get(attempt_id, ())

    # --- events and prices ---------------------------------------------------------------------

    def add_event(
        self,
        job_id: str,
        kind: str,
        message: str,
        now: float,
        *,
        task_id: str | None = None,
        attempt_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.session() as s:
            s.add(
                EventRow(
                    job_id=job_id, task_id=task_id, attempt_id=attempt_id, at=now, kind=kind, message=message, data=data
                )
            )

    def events(self, job_id: str, *, after_id: int = 0) -> list[EventView]:
        with self.session() as s:
            rows = s.scalars(
                select(EventRow).where(EventRow.job_id == job_id, EventRow.id > after_id).order_by(EventRow.id)
            )
            return [event_view(r) for r in rows]

    def has_event(self, job_id: str, kind: str, *, attempt_id: str) -> bool:
        with self.session() as s:
            return s.scalar(select(EventRow.id).where(EventRow.job_id == job_id, EventRow.kind == kind,
                                                      EventRow.attempt_id == attempt_id).limit(1)) is not None

    def last_event(self, job_id: str) -> EventView | None:
        """The newest event of a job, without loading its whole history."""
        with self.session() as s:
            r = s.scalars(select(EventRow).where(EventRow.job_id == job_id)
                          .order_by(EventRow.id.desc()).limit(1)).first()
            return None if r is None else event_view(r)

    def record_prices(self, offers: Sequence[Offer], now: float) -> None:
        if not offers:
            return
        with self.session() as s:
            s.add_all(
                PriceRow(
                    provider=o.provider,
                    region=o.region,
                    zone=o.zone,
                    instance_type=o.instance_type,
                    market=str(o.market),
                    price_per_hour=o.price_per_hour,
                    available=o.available,
                    source=o.price_source,
                    observed_at=now,
                )
                for o in offers
            )
