"""Checkpoint storage for the scale benchmark: objects in memory, every read paying an object store's latency.

In production a running task's progress is its agent's heartbeat and its newest manifest, in the job's
bucket (`orchestrator.loop.progress_reads` reads them). The `sim` provider reports progress itself, so
without this the benchmark never paid for those reads. `Agents` plays every running task's agent:
a heartbeat each tick and a checkpoint every `CKPT_TICKS` ticks (staggered), written without cost
(they are the jobs' writes); the controller's GETs sleep `latency_s` each and are counted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from orchestrator.job.checkpoint import ObjectNotFound
from orchestrator.job.checkpoint.heartbeat import Heartbeat, write_heartbeat
from orchestrator.job.checkpoint.manifest import Manifest, manifest_key
from orchestrator.store import Store

LATENCY_S = 0.02  # an S3 or GCS GET from the same region: 10-30 ms
CKPT_TICKS = 10  # a checkpoint every ten ticks (ten minutes at the benchmark's 60 s ticks)


class SlowStorage:
    """The `Storage` protocol over a shared dict; reads sleep, and count."""

    def __init__(self, uri: str, objects: dict[str, bytes], counter: Counter) -> None:
        self.uri, self._objects, self._counter = uri, objects, counter

    def put_bytes(self, key: str, data: bytes) -> None:
        self._objects[f"{self.uri}/{key}"] = bytes(data)

    def put_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, path.read_bytes())

    def get_bytes(self, key: str) -> bytes:
        self._counter.add()
        time.sleep(self._counter.latency_s)
        try:
            return self._objects[f"{self.uri}/{key}"]
        except KeyError:
            raise ObjectNotFound(f"{self.uri}/{key}") from None

    def get_file(self, key: str, path: Path) -> None:
        path.write_bytes(self.get_bytes(key))

    def list(self, prefix: str = "") -> list[str]:
        self._counter.add()
        time.sleep(self._counter.latency_s)
        head = f"{self.uri}/{prefix}"
        return sorted(k[len(self.uri) + 1:] for k in self._objects if k.startswith(head))

    def delete(self, key: str) -> None:
        self._objects.pop(f"{self.uri}/{key}", None)


class Counter:
    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.gets = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.gets += 1


class Agents:
    """Every running task's agent: its heartbeat each tick, a new checkpoint every `CKPT_TICKS` ticks."""

    def __init__(self, store: Store, latency_s: float = LATENCY_S) -> None:
        self.objects: dict[str, bytes] = {}
        self.counter = Counter(latency_s)
        self.store = store
        self.ticks = 0
        self.live: list[tuple[str, int, int]] = []  # (checkpoint uri, attempt number, stagger) per task

    def storage(self, uri: str) -> SlowStorage:
        return SlowStorage(uri, self.objects, self.counter)

    def follow(self) -> None:
        """Note every live attempt (the running tasks do not change while measured): read once, untimed."""
        jobs = [j.id for j in self.store.jobs()]
        tasks = {t.id: t for ts in self.store.tasks_of(jobs).values() for t in ts}
        self.live = [(tasks[a.task_id].checkpoint_uri, a.number, i) for i, a in
                     enumerate(a for atts in self.store.attempts_of(jobs).values() for a in atts if a.live)]

    def beat(self, now: float) -> None:
        """One tick of every live attempt's agent: a heartbeat, and now and then a checkpoint (untimed)."""
        self.ticks += 1
        for uri, number, i in self.live:
            s = self.storage(uri)
            seq = (self.ticks + i) // CKPT_TICKS
            progress = min(0.99, self.ticks * 1e-4)
            if seq and f"{s.uri}/{manifest_key(seq)}" not in self.objects:
                m = Manifest(seq=seq, created_at=now, attempt=number, progress=progress, files=())
                s.put_bytes(manifest_key(seq), m.to_json())
            write_heartbeat(s, Heartbeat(attempt=number, at=now, progress=progress, newest_checkpoint=seq or None))
