"""The heartbeat: how a running attempt tells the control plane it is alive, without a connection.

The agent overwrites `_orch/heartbeat.json` under the task's checkpoint URI every few seconds and once
more when the job ends (with `exit_code`). The control plane reads it in its observe step; a heartbeat
older than a few intervals means the attempt is lost, whatever the provider says.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from orchestrator.job.checkpoint.storage import ObjectNotFound, Storage

log = logging.getLogger("orch.checkpoint")

HEARTBEAT_KEY = "_orch/heartbeat.json"
HEARTBEAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """`progress` is the job's *reported* progress (None until it reports any); `newest_checkpoint`
    the sequence number of the newest manifest the agent saw. `rebalance` is an optional extension:
    the provider recommended moving off this instance (AWS), which is a warning, not a reclamation.
    """

    attempt: int
    at: float
    progress: float | None = None
    newest_checkpoint: int | None = None
    exit_code: int | None = None
    pid: int | None = None
    interrupted: bool = False
    rebalance: bool = False
    version: int = HEARTBEAT_VERSION

    @property
    def finished(self) -> bool:
        return self.exit_code is not None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Heartbeat:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != HEARTBEAT_VERSION:
            raise ValueError("not a version 1 heartbeat")
        return cls(
            attempt=int(doc["attempt"]),
            at=float(doc["at"]),
            progress=None if doc.get("progress") is None else float(doc["progress"]),
            newest_checkpoint=None if doc.get("newest_checkpoint") is None else int(doc["newest_checkpoint"]),
            exit_code=None if doc.get("exit_code") is None else int(doc["exit_code"]),
            pid=None if doc.get("pid") is None else int(doc["pid"]),
            interrupted=bool(doc.get("interrupted", False)),
            rebalance=bool(doc.get("rebalance", False)),
        )


def write_heartbeat(storage: Storage, heartbeat: Heartbeat) -> None:
    storage.put_bytes(HEARTBEAT_KEY, heartbeat.to_json())


def read_heartbeat(storage: Storage) -> Heartbeat | None:
    """None when there is none yet or it cannot be parsed (logged): a bad heartbeat is a missing one.

    Storage failures other than a missing object propagate: "could not look" is not "not alive".
    """
    try:
        data = storage.get_bytes(HEARTBEAT_KEY)
    except ObjectNotFound:
        return None
    try:
        return Heartbeat.from_json(data)
    except (ValueError, TypeError, KeyError) as e:
        log.warning("%s/%s: unreadable heartbeat: %s", storage.uri, HEARTBEAT_KEY, e)
        return None
