"""The agent's heartbeat thread: what the job reported, plus the newest checkpoint, every few seconds.

It runs on its own thread because object-store writes can stall for seconds (retries, a slow link)
and the agent's main loop must keep polling for notices meanwhile: a stalled heartbeat costs a late
heartbeat, a stalled notice poll costs the job its grace period.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.job.checkpoint.heartbeat import Heartbeat, write_heartbeat
from orchestrator.job.checkpoint.manifest import newest_manifest
from orchestrator.job.checkpoint.storage import Storage

log = logging.getLogger("orch.agent")


def read_progress_file(path: Path | None) -> float | None:
    """The SDK's last `report_progress` value, or None if the job has not reported (or cannot be read)."""
    if path is None:
        return None
    try:
        doc = json.loads(path.read_bytes())
        value = doc["progress"] if isinstance(doc, dict) else None
        return float(value) if isinstance(value, int | float) else None
    except (OSError, ValueError, KeyError):
        return None


class HeartbeatPublisher:
    """Writes `_orch/heartbeat.json` every `interval` seconds until `finish(exit_code)`."""

    def __init__(
        self,
        storage: Storage,
        *,
        attempt: int,
        pid: int,
        progress_file: Path | None,
        interval: float,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.attempt = attempt
        self.pid = pid
        self.progress_file = progress_file
        self.interval = interval
        self._now = now
        self._lock = threading.RLock()  # `mark` is called from signal handlers too
        self._interrupted = False
        self._rebalance = False
        self._stop = threading.Event()
        self._write_lock = threading.Lock()  # one heartbeat write at a time; the final one last
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="orch-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def mark(self, *, interrupted: bool | None = None, rebalance: bool | None = None) -> None:
        with self._lock:
            if interrupted is not None:
                self._interrupted = interrupted
            if rebalance is not None:
                self._rebalance = rebalance

    def snapshot(self, exit_code: int | None = None) -> Heartbeat:
        manifest = newest_manifest(self.storage)
        progress = read_progress_file(self.progress_file)
        if progress is None and manifest is not None:
            progress = manifest.progress
        with self._lock:
            interrupted, rebalance = self._interrupted, self._rebalance
        return Heartbeat(
            attempt=self.attempt,
            at=self._now(),
            progress=progress,
            newest_checkpoint=None if manifest is None else manifest.seq,
            exit_code=exit_code,
            pid=self.pid,
            interrupted=interrupted,
            rebalance=rebalance,
        )

    def publish(self, exit_code: int | None = None) -> bool:
        """One heartbeat now; False (logged once per outage) if it could not be written."""
        try:
            write_heartbeat(self.storage, self.snapshot(exit_code))
        except Exception as e:  # any failure must leave the thread alive for the next beat
            if not self._failing:
                log.warning("cannot write heartbeat to %s: %s", self.storage.uri, e)
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat to %s works again", self.storage.uri)
        self._failing = False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._write_lock:
                if self._stop.is_set():
                    return  # the final beat is being written: a periodic one must not land after it
                self.publish()
            self._stop.wait(self.interval)

    def finish(self, exit_code: int) -> bool:
        """Stop the periodic beat and write the final one, which carries the exit code.

        The write lock makes the final heartbeat the last one written, even when a periodic write
        was stalled (a slow object store) when the job ended: an older beat landing afterwards would
        erase the exit code the control plane waits for.
        """
        self._stop.set()
        with self._write_lock:
            return self.publish(exit_code)
