"""Campaign items in the store: leased in chunks by workers, each result committed exactly once.

Invariants, enforced here and nowhere else (no other module writes `campaign_items`):

- **One result per item, by construction.** The result lives in the item's own row (one row per
  `(job_id, index)`), and `done` is terminal: `complete` is one `UPDATE … WHERE state <> 'done'`, so
  of two commits for an item (a worker whose lease lapsed and the worker that re-leased it) exactly
  one changes a row, and the other is told `False` and must drop its result.
- **First writer wins.** A worker may commit an item it once leased even after its lease lapsed, as
  long as no result is in yet: the work is done, and throwing it away would only redo it. The lease
  guards *who works on* an item (at most one live lease), not whose result counts. Failures, by
  contrast, count only from the current lease holder (`owner` and `lease_no` must match), so a stale
  worker cannot push someone else's item into quarantine.
- **Leasing never hands one item to two live leases.** PostgreSQL: `UPDATE … WHERE id IN (SELECT …
  FOR UPDATE SKIP LOCKED)`, so racing workers take disjoint chunks without waiting for each other.
  SQLite: the same statement inside `BEGIN IMMEDIATE` (the write lock is taken before the read), so
  writers are serialised and no chunk is read stale.
- **Nothing is lost when a worker dies.** Its leased items return to the queue when the loop calls
  `release_worker`, or when their lease expires (`release_expired`, and `lease` itself takes expired
  items), whichever comes first.

States: `queued` (never failed) and `failed` (failed before, waiting for a retry) are waiting;
`leased` is held; `done` and `quarantined` are terminal. An item that ran out of GPU memory keeps
the largest memory it failed on (`oom_gpu_memory_gb`) and is leased only by a worker with more; such
failures do not count towards quarantine, because each one raises the bar and the catalog's largest
GPU bounds them (`quarantine_needing_more_than` ends the climb).

Item changes are not events (10,000 items would be 30,000 event rows); the rare ones that a person
wants to read (a quarantine, a worker's items returned) append an event row in the same transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, CursorResult, Engine, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from orchestrator.job.item_records import (
    OPEN,
    WAITING,
    ItemCounts,
    ItemResult,
    ItemState,
    Lease,
    QuarantinedItem,
)
from orchestrator.job.items_format import ParsedItem
from orchestrator.store.tables import EventRow, ItemRow

__all__ = ["MAX_REASONS", "MAX_RESULT_BYTES", "ItemCounts", "ItemResult", "ItemState", "ItemStore", "Lease",
           "QuarantinedItem", "insert_items"]

MAX_RESULT_BYTES = 1024 * 1024  # a larger result belongs in storage, committed as its URI
MAX_REASONS = 10  # failure reasons kept per item, newest last
MAX_REASON_CHARS = 500


# A row's `.index` is the tuple method: the item's index is read under this label wherever rows are read by name.
_IDX = ItemRow.index.label("idx")


def _count(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def insert_items(conn: Session | Connection, job_id: str, items: Sequence[ParsedItem], now: float) -> None:
    """Insert a campaign's items in the caller's transaction (the job's submit): one bulk statement."""
    if items:
        conn.execute(insert(ItemRow), [
            {"job_id": job_id, "index": it.index, "key": it.key, "payload": it.payload, "state": ItemState.QUEUED,
             "leases": 0, "failures": 0, "created_at": now, "updated_at": now} for it in items])


def _back_to_queue() -> Any:
    """The waiting state a released item returns to: `failed` if it ever failed, else `queued`."""
    return case((or_(ItemRow.failures > 0, ItemRow.oom_gpu_memory_gb.is_not(None)), ItemState.FAILED.value),
                else_=ItemState.QUEUED.value)


def _reasons_with(old: str | None, entry: dict[str, Any]) -> str:
    kept: list[Any] = json.loads(old) if old else []
    return json.dumps([*kept, entry][-MAX_REASONS:])


class ItemStore:
    """The campaign items of one database. Safe to share between threads; one per process is enough."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction. On SQLite it begins IMMEDIATE: the write lock is taken before any
        read, so a lease's SELECT and UPDATE see the same database and writers queue on busy_timeout."""
        with self.engine.connect() as conn:
            if self._sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    # --- the worker's side -------------------------------------------------------------------------

    def lease(self, job_id: str, owner: str, n: int, *, now: float, lease_seconds: float,
              gpu_memory_gb: float | None = None) -> list[Lease]:
        """Lease up to `n` waiting (or lapsed) items of the job to `owner`, lowest index first.

        `gpu_memory_gb`: the worker's GPU memory; an item that ran out of memory on a GPU is leased
        only by a worker with more (a worker that does not know its memory takes no such item).
        """
        if n < 1:
            return []
        fits: ColumnElement[bool] = ItemRow.oom_gpu_memory_gb.is_(None)
        if gpu_memory_gb is not None:
            fits = or_(fits, ItemRow.oom_gpu_memory_gb < gpu_memory_gb)
        free = or_(ItemRow.state.in_([s.value for s in WAITING]),
                   (ItemRow.state == ItemState.LEASED.value) & (ItemRow.lease_expires_at < now))
        chosen = (select(ItemRow.id).where(ItemRow.job_id == job_id, free, fits)
                  .order_by(ItemRow.index).limit(n).with_for_update(skip_locked=True))
        stmt = (update(ItemRow).where(ItemRow.id.in_(chosen.scalar_subquery()), free)
                .values(state=ItemState.LEASED.value, lease_owner=owner, lease_expires_at=now + lease_seconds,
                        leases=ItemRow.leases + 1, started_at=None, updated_at=now)
                .returning(ItemRow.id, ItemRow.index, ItemRow.key, ItemRow.payload, ItemRow.leases))
        with self._write() as conn:
            rows = conn.execute(stmt).all()
        return sorted((Lease(*r) for r in rows), key=lambda x: x.index)

    def _held(self, job_id: str, owner: str, item_id: int, lease_no: int) -> Any:
        return (ItemRow.id == item_id, ItemRow.job_id == job_id, ItemRow.state == ItemState.LEASED.value,
                ItemRow.lease_owner == owner, ItemRow.leases == lease_no)

    def start(self, job_id: str, owner: str, lease: Lease, *, now: float) -> bool:
        """Mark a held item as being worked on: if the worker then dies of a failure, this item (not
        the rest of its chunk) is charged with it. False: the lease is no longer this worker's."""
        with self._write() as conn:
            return _count(conn.execute(update(ItemRow).where(*self._held(job_id, owner, lease.item_id, lease.lease_no))
                                       .values(started_at=now, updated_at=now))) == 1

    def renew(self, job_id: str, owner: str, item_ids: Collection[int], *, now: float,
              lease_seconds: float) -> set[int]:
        """Extend `owner`'s leases on these items; returns the ids still held (the others were lost)."""
        if not item_ids:
            return set()
        with self._write() as conn:
            rows = conn.execute(
                update(ItemRow)
                .where(ItemRow.job_id == job_id, ItemRow.id.in_(list(item_ids)),
                       ItemRow.state == ItemState.LEASED.value, ItemRow.lease_owner == owner)
                .values(lease_expires_at=now + lease_seconds, updated_at=now)
                .returning(ItemRow.id)).scalars().all()
        return set(rows)

    def complete(self, job_id: str, owner: str, lease: Lease, *, now: float, result: str | None = None,
                 result_uri: str | None = None, work_seconds: float | None = None) -> bool:
        """Commit an item's result: True if this is its one result, False if it already had one (or
        was quarantined), in which case the caller's result is discarded. See the module docstring."""
        if result is not None and len(result) > MAX_RESULT_BYTES:
            raise ValueError(f"a result of {len(result):,} bytes is over the {MAX_RESULT_BYTES:,} allowed in the "
                             "store; write it to storage and commit its URI instead")
        with self._write() as conn:
            return _count(conn.execute(
                update(ItemRow)
                .where(ItemRow.id == lease.item_id, ItemRow.job_id == job_id,
                       ItemRow.state.in_([s.value for s in OPEN]), ItemRow.leases >= lease.lease_no)
                .values(state=ItemState.DONE.value, result=result, result_uri=result_uri, done_by=owner,
                        done_at=now, work_seconds=work_seconds, lease_owner=None, lease_expires_at=None,
                        updated_at=now))) == 1

    def fail(self, job_id: str, owner: str, lease: Lease, *, reason: str, now: float, max_failures: int,
             oom: bool = False, gpu_memory_gb: float | None = None) -> ItemState | None:
        """Record a failure of a held item; returns its new state (`failed` or `quarantined`), or None
        if the lease is no longer `owner`'s (nothing recorded).

        An out-of-memory failure on a GPU of known memory marks the item for a larger GPU and does not
        count; any other failure counts, and failure `max_failures + 1` quarantines the item (the same
        rule as a task's `[retry] max_failures`).
        """
        with self._write() as conn:
            row = conn.execute(select(ItemRow.failures, ItemRow.oom_gpu_memory_gb, ItemRow.reasons, _IDX)
                               .where(*self._held(job_id, owner, lease.item_id, lease.lease_no))
                               .with_for_update()).first()
            if row is None:
                return None
            state = self._charge(conn, job_id, lease.item_id, row, reason=reason, by=owner, now=now,
                                 max_failures=max_failures, oom_gb=gpu_memory_gb if oom else None)
            return state

    def _charge(self, conn: Connection, job_id: str, item_id: int, row: Any, *, reason: str, by: str, now: float,
                max_failures: int, oom_gb: float | None) -> ItemState:
        """Apply one failure to a locked item row (`failures`, `oom_gpu_memory_gb`, `reasons`, `idx`)."""
        # One printable line: reasons are shown in `orch status` on a terminal.
        reason = "".join(c if c.isprintable() else "?" for c in " ".join(reason.split()))[:MAX_REASON_CHARS] or "failed"
        entry = {"at": now, "by": by, "reason": reason, "oom_gpu_memory_gb": oom_gb}
        failures, oom_mark = row.failures, row.oom_gpu_memory_gb
        if oom_gb is not None:
            oom_mark = max(oom_mark or 0.0, oom_gb)
        else:
            failures += 1
        state = ItemState.QUARANTINED if failures > max_failures else ItemState.FAILED
        conn.execute(update(ItemRow).where(ItemRow.id == item_id).values(
            state=state.value, failures=failures, oom_gpu_memory_gb=oom_mark, reasons=_reasons_with(row.reasons, entry),
            lease_owner=None, lease_expires_at=None, started_at=None, updated_at=now))
        if state is ItemState.QUARANTINED:
            conn.execute(insert(EventRow).values(
                job_id=job_id, at=now, kind="item_quarantined",
                message=f"item {row.idx} quarantined after {failures} failure(s): {reason}",
                data={"index": row.idx, "failures": failures}))
        return state

    def release(self, job_id: str, owner: str, item_ids: Collection[int], *, now: float) -> int:
        """Give back items `owner` holds but will not work on (it stops on a notice): no failure."""
        if not item_ids:
            return 0
        with self._write() as conn:
            return _count(conn.execute(
                update(ItemRow)
                .where(ItemRow.job_id == job_id, ItemRow.id.in_(list(item_ids)),
                       ItemRow.state == ItemState.LEASED.value, ItemRow.lease_owner == owner)
                .values(state=_back_to_queue(), lease_owner=None, lease_expires_at=None, started_at=None,
                        updated_at=now)))

    # --- the loop's side ---------------------------------------------------------------------------

    def release_worker(self, owner: str, *, now: float, failure: str | None = None, max_failures: int = 3) -> int:
        """Return every item `owner` (an attempt id) holds to the queue: its instance was reclaimed,
        lost or ended. With `failure` (the worker died of an error, not a reclamation), the item it
        was working on is charged that failure. Returns the items returned; idempotent."""
        with self._write() as conn:
            rows = conn.execute(select(ItemRow.id, ItemRow.job_id, _IDX, ItemRow.failures,
                                       ItemRow.oom_gpu_memory_gb, ItemRow.reasons, ItemRow.started_at)
                                .where(ItemRow.lease_owner == owner, ItemRow.state == ItemState.LEASED.value)
                                .with_for_update()).all()
            if not rows:
                return 0
            charged = {r.id for r in rows if failure is not None and r.started_at is not None}
            for r in rows:
                if r.id in charged:
                    self._charge(conn, r.job_id, r.id, r, reason=failure or "", by=owner, now=now,
                                 max_failures=max_failures, oom_gb=None)
            rest = [r.id for r in rows if r.id not in charged]
            if rest:
                conn.execute(update(ItemRow).where(ItemRow.id.in_(rest)).values(
                    state=_back_to_queue(), lease_owner=None, lease_expires_at=None, started_at=None, updated_at=now))
            self._note_returned(conn, rows, now, f"worker {owner[:8]} ended")
            return len(rows)

    def release_expired(self, now: float) -> int:
        """Return every item whose lease lapsed (a worker that stopped renewing) to the queue; all jobs."""
        with self._write() as conn:
            rows = conn.execute(
                update(ItemRow)
                .where(ItemRow.state == ItemState.LEASED.value, ItemRow.lease_expires_at < now)
                .values(state=_back_to_queue(), lease_owner=None, lease_expires_at=None, started_at=None,
                        updated_at=now)
                .returning(ItemRow.job_id)).all()
            self._note_returned(conn, rows, now, "their lease expired")
            return len(rows)

    def _note_returned(self, conn: Connection, rows: Iterable[Any], now: float, why: str) -> None:
        per_job: dict[str, int] = defaultdict(int)
        for r in rows:
            per_job[r.job_id] += 1
        for job_id, n in per_job.items():
            conn.execute(insert(EventRow).values(job_id=job_id, at=now, kind="items_returned",
                                                 message=f"{n} item(s) back in the queue: {why}"))

    def quarantine_needing_more_than(self, job_id: str, gpu_memory_gb: float, *, now: float) -> int:
        """Quarantine the waiting items that ran out of memory on a GPU of `gpu_memory_gb` or more: the
        plan calls it with the largest GPU memory it can get, so no item waits for a GPU that does not exist."""
        with self._write() as conn:
            rows = conn.execute(
                update(ItemRow)
                .where(ItemRow.job_id == job_id, ItemRow.state.in_([s.value for s in WAITING]),
                       ItemRow.oom_gpu_memory_gb >= gpu_memory_gb)
                .values(state=ItemState.QUARANTINED.value, updated_at=now)
                .returning(ItemRow.index)).scalars().all()
            for index in rows:
                conn.execute(insert(EventRow).values(
                    job_id=job_id, at=now, kind="item_quarantined", data={"index": index},
                    message=f"item {index} quarantined: out of GPU memory with {gpu_memory_gb:g} GB, "
                            "the largest on offer"))
            return len(rows)

    # --- reading -----------------------------------------------------------------------------------

    def counts(self, job_id: str) -> ItemCounts:
        return self.counts_of([job_id]).get(job_id, ItemCounts())

    def counts_of(self, job_ids: Collection[str]) -> dict[str, ItemCounts]:
        """Items per state of several jobs, in one query (jobs without items are left out)."""
        if not job_ids:
            return {}
        per: dict[str, dict[str, int]] = defaultdict(dict)
        with self.engine.connect() as conn:
            for job_id, state, n in conn.execute(
                    select(ItemRow.job_id, ItemRow.state, func.count())
                    .where(ItemRow.job_id.in_(list(job_ids))).group_by(ItemRow.job_id, ItemRow.state)):
                per[job_id][state] = int(n)
        return {j: ItemCounts(**{s.value: c.get(s.value, 0) for s in ItemState}) for j, c in per.items()}

    def items_left(self, job_id: str) -> int:
        return self.counts(job_id).left

    def memory_needed(self, job_id: str) -> float | None:
        """The largest GPU memory (GB) a waiting item ran out of: the next worker needs more. None: no such item."""
        return self.memory_needed_of([job_id]).get(job_id)

    def memory_needed_of(self, job_ids: Collection[str]) -> dict[str, float]:
        """`memory_needed` of several jobs in one query (jobs with no such item are left out)."""
        if not job_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(ItemRow.job_id, func.max(ItemRow.oom_gpu_memory_gb)).where(
                ItemRow.job_id.in_(list(job_ids)), ItemRow.state.in_([s.value for s in WAITING]),
                ItemRow.oom_gpu_memory_gb.is_not(None)).group_by(ItemRow.job_id)).all()
        return {job_id: float(gb) for job_id, gb in rows if gb is not None}

    def done_since(self, job_id: str, since: float) -> int:
        """Items done at or after `since`: the recent rate that status and the plan divide by time."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(
                ItemRow.job_id == job_id, ItemRow.state == ItemState.DONE.value, ItemRow.done_at >= since)).scalar()
                or 0)

    def done_by_worker(self, job_id: str) -> dict[str, tuple[int, float]]:
        """(items, summed work seconds) by the attempt id that committed them: joined with the attempts'
        instance types, the observed rate per GPU type."""
        with self.engine.connect() as conn:
            work = func.coalesce(func.sum(ItemRow.work_seconds), 0.0)
            rows = conn.execute(select(ItemRow.done_by, func.count(), work)
                                .where(ItemRow.job_id == job_id, ItemRow.state == ItemState.DONE.value)
                                .group_by(ItemRow.done_by)).all()
        return {str(by): (int(n), float(s or 0.0)) for by, n, s in rows if by is not None}

    def quarantined(self, job_id: str, *, limit: int = 100) -> list[QuarantinedItem]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ItemRow.index, ItemRow.key, ItemRow.failures, ItemRow.reasons)
                                .where(ItemRow.job_id == job_id, ItemRow.state == ItemState.QUARANTINED.value)
                                .order_by(ItemRow.index).limit(limit)).all()
        out = []
        for index, key, failures, reasons_text in rows:
            reasons = json.loads(reasons_text) if reasons_text else []
            out.append(QuarantinedItem(index, key, failures, reasons[-1]["reason"] if reasons else None))
        return out

    def results(self, job_id: str, *, after_index: int = -1, page: int = 500) -> Iterator[ItemResult]:
        """Finished results in index order, a page per short read (a long listing holds no transaction)."""
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(ItemRow.index, ItemRow.key, ItemRow.result, ItemRow.result_uri, ItemRow.done_at,
                           ItemRow.done_by)
                    .where(ItemRow.job_id == job_id, ItemRow.state == ItemState.DONE.value,
                           ItemRow.index > after_index)
                    .order_by(ItemRow.index).limit(page)).all()
            for index, key, result, result_uri, done_at, done_by in rows:
                yield ItemResult(index, key, result, result_uri, done_at or 0.0, done_by)
            if len(rows) < page:
                return
            after_index = rows[-1][0]
