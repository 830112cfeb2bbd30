"""The nodes of gang attempts: one `attempt_nodes` row per node span, and how reads attach them.

A gang attempt (`attempts.nodes` > 1) holds N instances. Each node's own launch, end, market and
price are recorded here, because money is derived from recorded prices and times
(orchestrator.core.cost) and a gang's nodes need not end together nor, with `mixed_markets`, cost the
same. Rows are only inserted (a span per rank and launch), ended (a guarded UPDATE while `ended_at` is
NULL) and settled (an end moved earlier, to the cloud's, when the loop had to guess it): this module is
the only writer of the table. Every write bumps the job's version
in the same transaction, so the loop's snapshot of the job reads the change.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, CursorResult, Engine, bindparam, select, update
from sqlalchemy.orm import Session

from orchestrator.core.model import AttemptView, NodeSpan
from orchestrator.store.tables import AttemptNodeRow, AttemptRow, JobRow
from vocab import Market

_SPANS = (AttemptNodeRow.attempt_id, AttemptNodeRow.rank, AttemptNodeRow.instance_id, AttemptNodeRow.zone,
          AttemptNodeRow.market, AttemptNodeRow.price_per_hour, AttemptNodeRow.launched_at, AttemptNodeRow.ended_at)
_SPANS_OF = (select(*_SPANS).where(AttemptNodeRow.attempt_id.in_(bindparam("ids", expanding=True)))
             .order_by(AttemptNodeRow.attempt_id, AttemptNodeRow.rank, AttemptNodeRow.launched_at))
_MARKET = {str(m): m for m in Market}


def spans_of(conn: Connection, attempt_ids: Collection[str]) -> dict[str, tuple[NodeSpan, ...]]:
    """The recorded spans of these attempts, by attempt id, in rank then launch order."""
    out: dict[str, list[NodeSpan]] = {}
    ids = list(attempt_ids)
    for i in range(0, len(ids), 2000):
        for r in conn.execute(_SPANS_OF, {"ids": ids[i:i + 2000]}):
            out.setdefault(r[0], []).append(NodeSpan(r[1], r[2], r[3], _MARKET[r[4]], r[5], r[6], r[7]))
    return {k: tuple(v) for k, v in out.items()}


def with_spans(conn: Connection, attempts: Sequence[AttemptView]) -> list[AttemptView]:
    """The attempts with their node spans attached: one query, and none when no attempt is a gang."""
    gangs = [a.id for a in attempts if a.nodes > 1]
    if not gangs:
        return list(attempts)
    spans = spans_of(conn, gangs)
    return [replace(a, node_spans=spans[a.id]) if a.id in spans else a for a in attempts]


def _bump_job_of(session: Session, attempt_id: str) -> bool:
    job_id = session.execute(select(AttemptRow.job_id).where(AttemptRow.id == attempt_id)).scalar_one_or_none()
    if job_id is None:
        return False
    session.execute(update(JobRow).where(JobRow.id == job_id).values(version=JobRow.version + 1))
    return True


def record_spans(engine: Engine, attempt_id: str, spans: Sequence[NodeSpan]) -> int:
    """Record a gang's launched nodes; a span already recorded (same rank and instance, or same rank and
    launch) is skipped, so a repeated launch records nothing twice. Returns how many rows were added. ValueError for an
    attempt that does not exist or a rank outside its gang: nothing is written then."""
    with Session(engine) as s, s.begin():
        nodes = s.execute(select(AttemptRow.nodes).where(AttemptRow.id == attempt_id)).scalar_one_or_none()
        if nodes is None:
            raise ValueError(f"no attempt {attempt_id}")
        bad = [sp.rank for sp in spans if not 0 <= sp.rank < nodes]
        if bad:
            raise ValueError(f"attempt {attempt_id} has {nodes} nodes: no rank {bad[0]}")
        rows = s.execute(select(AttemptNodeRow.rank, AttemptNodeRow.launched_at, AttemptNodeRow.instance_id)
                         .where(AttemptNodeRow.attempt_id == attempt_id)).all()
        known = {(r, t) for r, t, _ in rows} | {(r, i) for r, _, i in rows if i is not None}
        new = [sp for sp in spans if (sp.rank, sp.launched_at) not in known
               and (sp.instance_id is None or (sp.rank, sp.instance_id) not in known)]
        for sp in new:
            s.add(AttemptNodeRow(attempt_id=attempt_id, rank=sp.rank, instance_id=sp.instance_id, zone=sp.zone,
                                 market=str(sp.market), price_per_hour=sp.price_per_hour,
                                 launched_at=sp.launched_at, ended_at=sp.ended_at))
        if new:
            _bump_job_of(s, attempt_id)
        return len(new)


def _newest_span(s: Session, attempt_id: str, instance_id: str, *where: ColumnElement[bool]) -> AttemptNodeRow | None:
    """The latest launched span of the node on `instance_id` (an elastic gang may have run it twice)."""
    return s.execute(select(AttemptNodeRow).where(
        AttemptNodeRow.attempt_id == attempt_id, AttemptNodeRow.instance_id == instance_id, *where)
        .order_by(AttemptNodeRow.launched_at.desc()).limit(1)).scalar()


def end_span(engine: Engine, attempt_id: str, instance_id: str, ended_at: float) -> bool:
    """The node on `instance_id` ended at `ended_at` (the cloud's time): its open span is closed, never
    moved before its launch. False when no open span of that instance exists (already ended)."""
    with Session(engine) as s, s.begin():
        row = _newest_span(s, attempt_id, instance_id, AttemptNodeRow.ended_at.is_(None))
        if row is None:
            return False
        result = s.execute(update(AttemptNodeRow).where(AttemptNodeRow.id == row.id, AttemptNodeRow.ended_at.is_(None))
                           .values(ended_at=max(ended_at, row.launched_at)))
        n = int(cast(CursorResult[Any], result).rowcount)
        if n == 1:
            _bump_job_of(s, attempt_id)
        return bool(n == 1)


def reap_span(engine: Engine, attempt_id: str, instance_id: str, ended_at: float) -> bool:
    """The node on `instance_id` was still running until the reaper stopped it at `ended_at`: its span
    ends then, whether it was open or closed earlier on a guess (the loop recorded the node stopped and
    the stop never reached the cloud: a controller that died in between, harness seed 1320). Moved
    later only. False when there is nothing to move."""
    with Session(engine) as s, s.begin():
        row = _newest_span(s, attempt_id, instance_id)
        if row is None or (row.ended_at is not None and row.ended_at >= ended_at):
            return False
        s.execute(update(AttemptNodeRow).where(AttemptNodeRow.id == row.id)
                  .values(ended_at=max(ended_at, row.launched_at)))
        return _bump_job_of(s, attempt_id)


def settle_span(engine: Engine, attempt_id: str, instance_id: str, ended_at: float) -> bool:
    """The node on `instance_id` ended at `ended_at` (the cloud's time), before the end recorded for it (a
    guess: the node was missing from the listing, or asked to stop): that end is moved earlier, never
    later, never before its launch. False when there is nothing to move."""
    with Session(engine) as s, s.begin():
        row = _newest_span(s, attempt_id, instance_id, AttemptNodeRow.ended_at.is_not(None))
        if row is None or row.ended_at is None or max(ended_at, row.launched_at) >= row.ended_at:
            return False
        s.execute(update(AttemptNodeRow).where(AttemptNodeRow.id == row.id)
                  .values(ended_at=max(ended_at, row.launched_at)))
        return _bump_job_of(s, attempt_id)
