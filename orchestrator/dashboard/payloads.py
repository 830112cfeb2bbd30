"""The JSON the pages fetch: the figures of `orch status --json`, and what a page draws around them.

Every money figure comes from the `Source`'s status functions (the ones `orch status --json` calls),
as the same dictionaries; `history` asks that function about past moments. Nothing here adds up a
price.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.core.status import JobStatus
from orchestrator.dashboard.history import cost_history, zone_moves
from orchestrator.dashboard.source import Source
from orchestrator.store import Store
from orchestrator.store.items import ItemStore
from orchestrator.store.job_list import JobFilter
from orchestrator.store.views import JobView

DEFAULT_LIMIT = 500  # jobs on the list page; the rest are one filter or `?limit=` away
MAX_LIMIT = 100_000
EVENTS_SHOWN = 200
LOG_ATTEMPTS = 3  # the newest attempts whose output the job page shows
LOG_TAIL_CHARS = 8_000
CAMPAIGN_POINTS = 24


class NotFound(LookupError):
    """No job matches the reference in the address."""


def list_row(job: JobView, status: JobStatus, listed: dict[str, Any]) -> dict[str, Any]:
    """One job of the list: its `orch status --json` object (`listed`) without the per-task and
    per-attempt lists (the job page has those), plus when it was submitted."""
    row = dict(listed)
    del row["tasks"], row["attempts"]
    live = [a for a in status.attempts if a.live]
    row.update(created_at=job.created_at, finished_at=job.finished_at, task_count=len(status.tasks),
               zone=(live[-1].zone or live[-1].region) if live else None)
    return row


def jobs_payload(source: Source, store: Store, *, states: Sequence[str] = (), name: str | None = None,
                 limit: int = DEFAULT_LIMIT, now: float) -> dict[str, Any]:
    """The newest `limit` jobs that match, as `orch status --json` lists them, and how many match."""
    where = JobFilter(states=tuple(states), name=name)
    jobs = store.jobs(where, limit=limit + 1)
    shown = jobs[:limit]
    statuses = source.statuses(store, shown)
    total = store.count_jobs(where) if len(jobs) > limit else len(shown)
    listed = source.list_json(store, statuses, now)
    return {"now": now, "total": total,
            "jobs": [list_row(j, s, d) for j, s, d in zip(shown, statuses, listed, strict=True)]}


def job_payload(source: Source, store: Store, ref: str, *, now: float) -> dict[str, Any]:
    """One job: `status` is exactly `orch status JOB --json`; around it the events, the logs' tails,
    the cost history, the zones it ran in and, for a campaign, items done over time."""
    job = store.job(ref)
    if job is None:
        raise NotFound(ref)
    status = source.statuses(store, [job])[0]
    body = source.job_json(store, status, now)
    campaign = body.get("campaign")
    events = store.events(job.id)
    return {
        "now": now,
        "status": body,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "events": [{"id": e.id, "at": e.at, "kind": e.kind, "message": e.message, "task_id": e.task_id,
                    "attempt_id": e.attempt_id} for e in events[-EVENTS_SHOWN:]],
        "event_count": len(events),
        "history": cost_history(status, spec=job.spec, created_at=job.created_at, now=now),
        "zones": zone_moves(status.attempts),
        "logs": _logs(source, job, status),
        "items_done": _items_done(store, job, now) if campaign is not None else [],
    }


def _logs(source: Source, job: JobView, status: JobStatus) -> list[dict[str, Any]]:
    """The end of the newest attempts' output, as `orch logs` prints it (providers that keep logs)."""
    started = [a for a in status.attempts if a.instance_id is not None][-LOG_ATTEMPTS:]
    if not started:
        return []
    try:
        providers = source.providers(job.spec.placement.providers)
    except Exception:  # a provider not set up here (no SDK, no settings): its logs are simply not shown
        providers = {}
    out = []
    for a in started:
        try:
            text = source.read_log(providers, a, job.id)
        except (OSError, ValueError):
            text = None
        out.append({"attempt_id": a.id, "number": a.number, "market": str(a.market),
                    "instance_type": a.instance_type, "state": str(a.outcome or a.state),
                    "text": None if text is None else text[-LOG_TAIL_CHARS:]})
    return out


def _items_done(store: Store, job: JobView, now: float) -> list[dict[str, float]]:
    """Items done by each of a few moments since submission (the items record when each was done)."""
    items = ItemStore(store.engine)
    done = items.counts(job.id).done
    end = job.finished_at if job.finished_at is not None else now
    step = max(end - job.created_at, 1.0) / (CAMPAIGN_POINTS - 1)
    points = []
    for i in range(CAMPAIGN_POINTS):
        t = job.created_at + i * step
        points.append({"at": round(t, 3), "done": done - items.done_since(job.id, t + 1e-6)})
    return points
