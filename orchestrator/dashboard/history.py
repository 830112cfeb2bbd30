"""A job's money and progress over time, for the cost chart: the status function asked about the past.

No cost is worked out here. For each moment `t` the job's records are cut back to what was known at
`t` (attempts launched by then, those still running then shown as running, each task's committed
progress as its attempts recorded it) and handed to `orchestrator.core.status.job_status`, the
function behind `orch status --json`, with `now=t`. The last point is the live status itself, so the
chart ends exactly on the figures the page and the CLI show.

Moments are chosen where an instance ran (just after each launch, just before each end): there the
projection prices the work left at the price that was being paid. Between attempts a task had no
price; the chart draws a straight line across such a gap rather than guess one.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

from orchestrator.core.model import AttemptState, AttemptView, Outcome, TaskState, TaskView
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import JobStatus, job_status

MAX_POINTS = 120
_PAST_JOBS = 64  # jobs whose past points are kept (a few pages open at once, each polling)
_PAST: dict[tuple[object, ...], list[dict[str, Any]]] = {}
_PAST_LOCK = threading.Lock()  # the server answers requests on several threads
EPSILON_S = 1e-3  # "just before the end": the attempt still running, its bill up to that moment


def attempts_as_of(attempts: Sequence[AttemptView], t: float) -> list[AttemptView]:
    """The attempts launched by `t`, each as it stood at `t` (one that ended later: still running)."""
    out = []
    for a in attempts:
        if a.launched_at > t:
            continue
        if a.ended_at is not None and a.ended_at <= t:
            out.append(a)
            continue
        started = a.started_at if a.started_at is not None else a.launched_at
        state = AttemptState.RUNNING if started <= t and a.state is not AttemptState.LAUNCHING else a.state
        if a.state is AttemptState.ENDED and started > t:
            state = AttemptState.LAUNCHING
        out.append(dataclasses.replace(a, state=state, outcome=None, ended_at=None, exit_code=None,
                                       progress_end=None))
    return out


def tasks_as_of(tasks: Sequence[TaskView], attempts: Sequence[AttemptView], t: float) -> list[TaskView]:
    """Each task at `t`: committed progress as its attempts had recorded it, running or waiting."""
    by_task: dict[str, list[AttemptView]] = {}
    for a in attempts:
        by_task.setdefault(a.task_id, []).append(a)
    out = []
    for task in tasks:
        mine = by_task.get(task.id, [])
        progress = max([a.progress_end for a in mine if a.progress_end is not None]
                       + [a.progress_start for a in mine] + [0.0])
        if any(a.outcome is Outcome.SUCCEEDED and a.ended_at is not None for a in mine):
            state = TaskState.SUCCEEDED
        elif any(a.state is not AttemptState.ENDED for a in mine):
            state = TaskState.RUNNING
        else:
            state = TaskState.PENDING
        out.append(dataclasses.replace(task, state=state, progress_committed=progress,
                                       progress_reported=progress))
    return out


def moments(attempts: Sequence[AttemptView], *, start: float, end: float) -> list[float]:
    """When to sample: the job's start, just after each launch and just before each end, then `end`."""
    marks = {start}
    for a in attempts:
        if a.unbilled:
            continue
        marks.add(a.launched_at + EPSILON_S)
        if a.ended_at is not None:
            marks.add(max(a.launched_at, a.ended_at - EPSILON_S))
    inside = sorted(m for m in marks if start <= m < end)
    if len(inside) > MAX_POINTS - 1:
        step = len(inside) / (MAX_POINTS - 1)
        inside = [inside[int(i * step)] for i in range(MAX_POINTS - 1)]
    return [*inside, end]


def cost_history(status: JobStatus, *, spec: JobSpec, created_at: float, now: float) -> list[dict[str, Any]]:
    """Points of (time, spent, projected, on-demand only, committed progress), oldest first; the last
    is `status` itself. A finished job's line ends when its last attempt did."""
    attempts = list(status.attempts)
    finished = status.state not in ("pending", "running", "preempted")
    last_end = max((a.ended_at for a in attempts if a.ended_at is not None), default=None)
    end = last_end if finished and last_end is not None else now
    # The past points depend on the attempts only (the tasks' own progress is taken from them), so a
    # page that polls a job which has not moved gets them from here: only the live point is new.
    key = (status.job_id, created_at, status.attempts, tuple(t.id for t in status.tasks), end if finished else None)
    with _PAST_LOCK:
        past = _PAST.get(key)
    if past is None:
        past = []
        for t in moments(attempts, start=created_at, end=end)[:-1]:
            cut = attempts_as_of(attempts, t)
            then = job_status(job_id=status.job_id, name=status.name, spec=spec, created_at=created_at,
                              deadline_at=status.deadline_at, tasks=tasks_as_of(status.tasks, cut, t),
                              attempts=cut, offers=[], now=t)
            past.append(_point(t, then))
        with _PAST_LOCK:
            if len(_PAST) >= _PAST_JOBS:
                _PAST.pop(next(iter(_PAST)))
            _PAST[key] = past
    return [*(p for p in past if p["at"] < end), _point(end, status)]


def _point(t: float, s: JobStatus) -> dict[str, Any]:
    c = s.cost
    return {"at": round(t, 3), "spent_usd": round(c.spent_usd, 4), "projected_usd": round(c.projected_usd, 4),
            "on_demand_only_usd": round(c.on_demand_only_usd, 4), "progress": round(s.progress, 4)}


def zone_moves(attempts: Sequence[AttemptView]) -> list[dict[str, Any]]:
    """The places a job ran, in order, one entry per change of zone (refused launches left out)."""
    out: list[dict[str, Any]] = []
    for a in sorted((a for a in attempts if not a.unbilled), key=lambda a: a.launched_at):
        place = a.zone or a.region
        if out and out[-1]["zone"] == place:
            continue
        out.append({"zone": place, "region": a.region, "provider": a.provider, "at": a.launched_at,
                    "attempt": a.number})
    return out
