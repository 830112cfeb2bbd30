"""What the `local` provider keeps on disk, so that a new provider object sees everything an old one did.

Layout under the provider's home:

    instances/<instance_id>/instance.json   the record below (written before the process starts)
    instances/<instance_id>/notice.json     written by the market, read by the agent
    instances/<instance_id>/status.json     written by the agent when the job ends
    instances/<instance_id>/output.log      the agent's and the job's stdout and stderr
    instances/<instance_id>/.lock           flock: one writer per instance across processes
    launch.lock                             flock: one launch at a time decides whether to create
    markets/<job>.json                      a job's market epoch and resolved settings
    market-default.json                     the epoch of the market shown to callers without a job

Every JSON file is replaced atomically (write a temporary file, then rename), so a reader never
sees half a record, and a record is only rewritten while its lock is held.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.local.settings import LocalSettings
from vocab import EndReason, PermanentError


class Gone(Exception):
    """The folder of the lock is gone: the instance was collected (or never existed)."""


@dataclass(slots=True)
class InstanceRecord:
    """One attempt's instance. Only `LocalProvider` mutates it, and only under the instance lock."""

    instance_id: str
    attempt_id: str
    job_id: str
    task_id: str
    attempt_number: int
    market: str
    zone: str
    instance_type: str
    offer: dict[str, Any]
    launched_at: float
    reclaim_at: float | None
    notice_seconds: float
    terminate_grace_seconds: float
    workdir: str | None = None
    pid: int | None = None
    pid_start_time: int | None = None
    notice_at: float | None = None  # the reclamation moment the notice announces
    notice_deadline: float | None = None
    notice_written_at: float | None = None
    terminate_requested_at: float | None = None
    killed_at: float | None = None  # SIGKILL at the notice deadline: capacity taken back
    ended_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.reason is not None

    def end(self, reason: EndReason, at: float, exit_code: int | None = None) -> None:
        self.reason = reason.value
        self.ended_at = at
        self.exit_code = exit_code

    def finish(self, status: object, now: float, *, agent_exit: int | None = None) -> None:
        """Record how the attempt ended, from what we did to it and the agent's status.json (if any).

        Our own actions win: a terminate is TERMINATED, a kill at the notice deadline PREEMPTED. A job
        that stopped after the notice because of it (the agent says "interrupted") was preempted too;
        one that finished by itself EXITED; one that vanished without a status is LOST. A job the agent
        could not start at all (it says `"started": false`) is FAILED_TO_START, without an exit status:
        nothing ran, so the attempt is never billed.

        `agent_exit`: the agent's own exit status, when this provider started it and saw it end. An
        agent that exited with an error without writing a status (it could not even import orch: the
        job's Python has no orch) is EXITED without an exit status, which the loop counts as a failure:
        as LOST it was relaunched every tick for ever. One killed by a signal from outside stays LOST.
        """
        info = status if isinstance(status, dict) else None
        if info is not None and info.get("started") is False and self.terminate_requested_at is None:
            stated = info.get("ended_at")
            at = stated if isinstance(stated, int | float) and not isinstance(stated, bool) else now
            self.end(EndReason.FAILED_TO_START, float(at))
            return
        if self.terminate_requested_at is not None:
            reason = EndReason.TERMINATED
        elif self.killed_at is not None or (self.notice_at is not None and (info is None or info.get("interrupted"))):
            reason = EndReason.PREEMPTED
        else:
            failed_agent = info is None and agent_exit is not None and agent_exit > 0  # killed by a signal: lost
            reason = EndReason.EXITED if info is not None or failed_agent else EndReason.LOST
        exit_code = info.get("exit_code") if info else None
        ended_at = info.get("ended_at") if info else None
        if self.killed_at is not None or isinstance(ended_at, bool) or not isinstance(ended_at, int | float):
            ended_at = now
        valid_code = isinstance(exit_code, int) and not isinstance(exit_code, bool)
        self.end(reason, float(ended_at), exit_code if valid_code else None)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class InstanceDir:
    """The files of one instance; the paths are fixed so that the agent's argv names them."""

    def __init__(self, root: Path, instance_id: str) -> None:
        self.instance_id = instance_id
        self.path = root / instance_id
        self.record_path = self.path / "instance.json"
        self.notice_path = self.path / "notice.json"
        self.status_path = self.path / "status.json"
        self.log_path = self.path / "output.log"
        self.lock_path = self.path / ".lock"

    def load(self) -> InstanceRecord | None:
        data = read_json(self.record_path)
        return InstanceRecord.from_json(data) if isinstance(data, dict) else None

    def save(self, record: InstanceRecord) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.record_path, record.to_json())

    def lock(self, *, blocking: bool = True) -> contextlib.AbstractContextManager[bool]:
        """Hold the instance's lock; yields False (holding nothing) if it is busy and not `blocking`."""
        return locked(self.lock_path, blocking=blocking)


@contextlib.contextmanager
def locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive flock on `path`, which excludes other processes and other threads alike."""
    try:
        handle = open(path, "a+b")  # noqa: SIM115 - closed below, after the lock is released
    except FileNotFoundError:
        raise Gone(str(path.parent)) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def instance_id_for(attempt_id: str) -> str:
    """The instance id is derived from the attempt id: that is what makes `launch` idempotent."""
    return "local-" + hashlib.sha256(attempt_id.encode()).hexdigest()[:16]


def read_json(path: Path) -> Any:
    """The decoded file, or None when it does not exist or is not (yet) valid JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def create_json_once(path: Path, data: Any) -> Any:
    """Write `data` unless the file exists; returns what is in the file afterwards (first writer wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.link(tmp, path)  # fails if another writer got there first
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return read_json(path)


@dataclass(frozen=True, slots=True)
class JobMarketRecord:
    job_id: str
    epoch: float
    settings: LocalSettings


class MarketFiles:
    """Per-job market epochs and settings: fixed by a job's first launch, reused ever after."""

    def __init__(self, home: Path) -> None:
        self.root = home / "markets"
        self.default_path = home / "market-default.json"

    def path(self, job_id: str) -> Path:
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", job_id):
            return self.root / f"{job_id}.json"
        return self.root / f"job-{hashlib.sha256(job_id.encode()).hexdigest()[:24]}.json"

    def load(self, job_id: str) -> JobMarketRecord | None:
        path = self.path(job_id)
        data = read_json(path)
        return None if data is None else self._parse(path, data)

    def create(self, job_id: str, epoch: float, settings: LocalSettings) -> JobMarketRecord:
        path = self.path(job_id)
        data = create_json_once(path, {"job_id": job_id, "epoch": epoch, "settings": settings.to_dict()})
        return self._parse(path, data)

    def default_epoch(self, now: float) -> float:
        data = create_json_once(self.default_path, {"epoch": now})
        return float(data["epoch"]) if isinstance(data, dict) else now

    @staticmethod
    def _parse(path: Path, data: Any) -> JobMarketRecord:
        try:
            return JobMarketRecord(str(data["job_id"]), float(data["epoch"]),
                                   LocalSettings.from_dict(data["settings"]))
        except (KeyError, TypeError, ValueError, PermanentError) as exc:
            raise PermanentError(f"local market file {path} is damaged: {exc}", provider="local") from None
