"""What a live attempt's progress reads mean: the task's progress, the attempt's notes, and what the
heartbeat says, from plain values (the loop reads checkpoint storage; `loop.progress_reads`).

Pure, so the arithmetic that decides the measured restart overhead (`productive_at`) and which
checkpoint counts as this attempt's is tested on numbers. The records are made for every live task in
every tick, so they are plain (read-only by convention), like `core.plan.facts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.core.model import AttemptView, TaskView, clamp_progress


@dataclass(slots=True)
class ProgressRead:
    """One read of an attempt's heartbeat and newest checkpoint manifest (None where absent). `fresh`:
    read this tick (a stale read still tells the exit code and when the agent was last heard from)."""

    fresh: bool
    heartbeat_at: float | None = None
    reported: float | None = None
    exit_code: int | None = None
    interrupted: bool = False
    committed: float | None = None
    checkpoint_attempt: int | None = None  # the attempt number that wrote the newest checkpoint
    checkpoint_at: float | None = None


@dataclass(slots=True)
class Seen:
    """What one look at a live attempt found (all empty when nothing could be read)."""

    exit_code: int | None = None
    moved: bool = False
    interrupted: bool = False
    heartbeat_at: float | None = None
    provider_progress: bool = False
    # Nothing could be read yet (never read within the budget, or every read failed): silence cannot be
    # judged, and "could not look" never means "not alive".
    unread: bool = False


@dataclass(slots=True)
class Observed:
    """`seen`, and what to record: the task's progress columns and the attempt's notes."""

    seen: Seen
    task_values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, float] = field(default_factory=dict)


def progress_values(committed: float | None, reported: float | None) -> dict[str, float]:
    """The task columns one progress observation sets (clamped to [0, 1]; None leaves a column)."""
    values: dict[str, float] = {}
    if committed is not None:
        values["progress_committed"] = clamp_progress(committed)
    if reported is not None:
        values["progress_reported"] = clamp_progress(reported)
    return values


def observe(task: TaskView, live: AttemptView, *, provider_progress: float | None, read: ProgressRead | None,
            work_hours: float, now: float) -> Observed:
    """Progress and the newest checkpoint, if they moved; what the heartbeat says.

    `provider_progress`: progress the provider reports itself (simulations), read instead of storage.
    `read`: None when storage was never read for this attempt (or every read failed): nothing is
    observed, never "nothing happened". A stale read tells only the heartbeat's exit code and age.
    """
    committed: float | None
    reported: float | None
    own: float | None
    if provider_progress is not None:
        committed = reported = own = provider_progress
        checkpoint_at: float | None = now
        heartbeat_at, exit_code, interrupted = None, None, False
    else:
        if read is None:
            return Observed(Seen(unread=True))
        if not read.fresh:
            return Observed(Seen(exit_code=read.exit_code, interrupted=read.interrupted,
                                 heartbeat_at=read.heartbeat_at))
        reported, committed = read.reported, read.committed
        heartbeat_at, exit_code, interrupted = read.heartbeat_at, read.exit_code, read.interrupted
        # A predecessor's final save (written during its notice window, after this attempt was
        # launched to replace it) is the task's progress, not work this attempt has done.
        own = committed if read.checkpoint_attempt is not None and read.checkpoint_attempt >= live.number else None
        checkpoint_at = read.checkpoint_at
        if checkpoint_at is not None and checkpoint_at < live.launched_at:
            checkpoint_at = None
    moved = (committed is not None and committed != task.progress_committed) or (
        reported is not None and reported != task.progress_reported)
    values = progress_values(committed, reported) if moved else {}
    notes: dict[str, float] = {}
    seen = max(x for x in (own, reported, 0.0) if x is not None)
    if live.productive_at is None and seen > live.progress_start:
        # Progress is seen a tick late: back-date the moment work began by the work done since, at the
        # estimated rate, so the measured restart overhead does not grow with the tick.
        work_s = (seen - live.progress_start) * work_hours * 3600.0
        notes["productive_at"] = max(live.launched_at, now - work_s)
    if checkpoint_at is not None and checkpoint_at != live.last_checkpoint_at and (
            provider_progress is None or moved):
        notes["last_checkpoint_at"] = checkpoint_at
    if committed is not None and committed != live.progress_end:
        notes["progress_end"] = committed
    return Observed(Seen(exit_code=exit_code, moved=moved or bool(notes), interrupted=interrupted,
                         heartbeat_at=heartbeat_at, provider_progress=provider_progress is not None),
                    values, notes)
