"""Progress from checkpoint storage, read within a per-tick budget: the cost of a tick follows what
changed, not how many tasks run.

In production a running task's progress comes from its agent's heartbeat and the newest checkpoint's
manifest, two objects in the job's bucket. Read for every running task on every tick, that was 20,000
object-store GETs a tick at 10,000 tasks, one after another. Instead, before the tasks are stepped:

- an attempt whose instance the listing shows ended is always read (its final heartbeat holds the exit
  code that tells success from failure);
- otherwise each attempt is read at most once every `interval_s`, oldest read first, at most
  `per_tick` attempts a tick (attempts never read come first), so every running task is read at least
  every `ceil(running / per_tick)` ticks;
- the manifest is read again only when the heartbeat names a newer checkpoint than the one in hand,
  so a task whose job has not saved since costs one GET;
- the reads of a tick run at once (`Executor.gather`), each bounded by the call timeout.

A task not read this tick is stepped on what was read last: its heartbeat's time still feeds the
silence rule, and nothing is observed as moved. A task never read yet (a controller just started
beside 10,000 running tasks) is never judged silent: it is read within the bound above. A read that
fails means "nothing observed", never "nothing done": the last read stands, and the task is read again
first at the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from orchestrator.core.model import AttemptState
from orchestrator.job.checkpoint import Heartbeat, Manifest, Storage, read_heartbeat
from orchestrator.loop.executor import Executor
from orchestrator.loop.task_facts import newest_manifest_of

if TYPE_CHECKING:
    from orchestrator.loop.observation import Observation
    from orchestrator.loop.snapshot import JobSnapshot

log = logging.getLogger("orch.reconciler")
PER_TICK = 256
INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class Want:
    """A live attempt whose progress the tick would like: its task's checkpoint URI and number."""

    attempt_id: str
    task_id: str
    uri: str
    number: int
    ended: bool = False  # the listing shows its instance ended: read now, whatever the budget


def must_read(w: Want, retry: Collection[str]) -> bool:
    return w.ended or w.attempt_id in retry


@dataclass(frozen=True, slots=True)
class Read:
    at: float
    heartbeat: Heartbeat | None
    manifest: Manifest | None


@dataclass
class ProgressReads:
    per_tick: int = PER_TICK
    interval_s: float = INTERVAL_S
    _last: dict[str, Read] = field(default_factory=dict)  # attempt id -> its newest read
    _fresh: set[str] = field(default_factory=set)  # read this tick
    _retry: set[str] = field(default_factory=set)  # the last read failed: first in line next tick
    reads: int = 0  # GETs made by the last `refresh` (for the benchmarks)

    def due(self, wanted: Sequence[Want], now: float) -> list[Want]:
        """What this tick reads: every ended one, then never-read ones, then the stalest past the interval."""
        must = [w for w in wanted if w.ended or w.attempt_id in self._retry]
        never = [w for w in wanted if not must_read(w, self._retry) and w.attempt_id not in self._last]
        stale = sorted((w for w in wanted if not must_read(w, self._retry) and w.attempt_id in self._last
                        and now - self._last[w.attempt_id].at >= self.interval_s),
                       key=lambda w: self._last[w.attempt_id].at)
        return must + (never + stale)[: max(0, self.per_tick - len(must))]

    def refresh(self, executor: Executor, storage: Callable[[str], Storage], wanted: Sequence[Want],
                now: float) -> None:
        """Read this tick's share of `wanted` (all at once); forget attempts no longer wanted."""
        keep = {w.attempt_id for w in wanted}
        self._last = {k: v for k, v in self._last.items() if k in keep}
        self._retry &= keep
        self._fresh = set()
        self.reads = 0
        due = self.due(wanted, now)
        results = executor.gather([partial(self._read, storage, w, now) for w in due])
        for w, got in zip(due, results, strict=True):
            if isinstance(got, Exception):
                # Nothing observed: the last read stands (silence is judged on its heartbeat), and the
                # attempt is read again next tick, first.
                log.warning("checkpoint storage of task %s unreadable: %s", w.task_id, got)
                self._retry.add(w.attempt_id)
                continue
            self._retry.discard(w.attempt_id)
            read, gets = got
            self.reads += gets
            self._last[w.attempt_id] = read
            self._fresh.add(w.attempt_id)

    def of(self, attempt_id: str) -> tuple[Read, bool] | None:
        """The attempt's newest read and whether it was made this tick; None when there is none."""
        read = self._last.get(attempt_id)
        return None if read is None else (read, attempt_id in self._fresh)

    def forget(self, attempt_ids: Collection[str]) -> None:
        for a in attempt_ids:
            self._last.pop(a, None)

    def _read(self, storage: Callable[[str], Storage], w: Want, now: float) -> tuple[Read, int]:
        store = storage(w.uri)
        hb = read_heartbeat(store)
        if hb is not None and hb.attempt != w.number:
            hb = None  # another attempt wrote the newest: not this one's
        held = self._last.get(w.attempt_id)
        if (hb is not None and hb.newest_checkpoint is not None and held is not None and held.manifest is not None
                and held.manifest.seq == hb.newest_checkpoint):
            return Read(now, hb, held.manifest), 1  # no newer checkpoint than the one in hand
        return Read(now, hb, newest_manifest_of(store, hb)), 2


def wanted(obs: Observation, snapshots: Mapping[str, JobSnapshot]) -> list[Want]:
    """The running attempts whose heartbeat and manifest this tick may read (those whose provider reports
    progress itself need none)."""
    out = []
    for snap in snapshots.values():
        for t in snap.tasks:
            a = snap.live_attempt(t.id)
            inst = obs.instances.get(a.id) if a is not None else None
            if a is None or inst is None or inst.progress is not None or a.state is not AttemptState.RUNNING:
                continue
            out.append(Want(a.id, t.id, t.checkpoint_uri, a.number, ended=not inst.alive))
    return out
