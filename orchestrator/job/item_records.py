"""The records of a campaign's items, shared by the store, the job-side SDK, `orch status` and `orch results`.

Pure values with no database behind them, so that the SDK (which a job imports) and the pure core can
use them without SQLAlchemy; `orchestrator.store.items` is what reads and writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["OPEN", "WAITING", "ItemCounts", "ItemResult", "ItemState", "Lease", "QuarantinedItem"]


class ItemState(StrEnum):
    QUEUED = "queued"  # waiting, never failed
    LEASED = "leased"  # held by a worker until its lease expires
    DONE = "done"  # its one result is in (terminal)
    FAILED = "failed"  # waiting for a retry after a failure (or for a GPU with more memory)
    QUARANTINED = "quarantined"  # failed too often, or needs more GPU memory than is on offer (terminal)


WAITING = (ItemState.QUEUED, ItemState.FAILED)
OPEN = (ItemState.QUEUED, ItemState.FAILED, ItemState.LEASED)


@dataclass(frozen=True, slots=True)
class Lease:
    """An item handed to a worker. `lease_no` (the item's lease count) tells this lease from later ones."""

    item_id: int
    index: int
    key: str | None
    payload: str  # JSON text
    lease_no: int


@dataclass(frozen=True, slots=True)
class ItemCounts:
    queued: int = 0
    leased: int = 0
    done: int = 0
    failed: int = 0
    quarantined: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.leased + self.done + self.failed + self.quarantined

    @property
    def left(self) -> int:
        """Items still to do: waiting or held (not done, not quarantined)."""
        return self.queued + self.leased + self.failed

    def to_dict(self) -> dict[str, int]:
        return {"total": self.total, "done": self.done, "queued": self.queued, "leased": self.leased,
                "failed": self.failed, "quarantined": self.quarantined}


@dataclass(frozen=True, slots=True)
class ItemResult:
    index: int
    key: str | None
    result: str | None  # JSON text
    result_uri: str | None
    done_at: float
    done_by: str | None

    def to_record(self) -> dict[str, Any]:
        """One line of `orch results --json` and of a campaign's `output` file: the same record in both."""
        result = None if self.result is None else json.loads(self.result)
        return {"index": self.index, "key": self.key, "result": result, "result_uri": self.result_uri,
                "done_at": self.done_at}


@dataclass(frozen=True, slots=True)
class QuarantinedItem:
    index: int
    key: str | None
    failures: int
    reason: str | None  # the newest
