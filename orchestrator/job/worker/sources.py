"""Where a worker's items come from: the `ItemSource` protocol, and `MemoryItemSource` for runs by hand.

A source is one worker (one lease owner) of one campaign. `orchestrator.store.item_source.SqlItemSource`
implements it on orch's database; anything else that can lease, renew, commit, fail and release items
(a queue in the checkpoint bucket, a small HTTP service) can implement it too, and `orch.items()`
works unchanged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from orchestrator.job.item_records import Lease

__all__ = ["ItemSource", "MemoryItemSource"]


class ItemSource(Protocol):
    """Where one worker's items come from and its results go: one job, one worker identity.

    Every method may be called from the worker's thread and from its lease-renewing thread.
    """

    lease_seconds: float

    def lease(self, n: int) -> list[Lease]:
        """Up to `n` items to work on, lowest index first; [] when none is waiting."""

    def start(self, lease: Lease) -> bool:
        """Note that work on this item begins; False if the lease was lost (skip the item)."""

    def renew(self, leases: Collection[Lease]) -> set[int]:
        """Extend these leases; the item ids still held."""

    def complete(self, lease: Lease, *, result: str | None, result_uri: str | None, work_seconds: float) -> bool:
        """Commit the item's result; False if another result for it is already in (this one is dropped)."""

    def fail(self, lease: Lease, *, reason: str, oom: bool) -> str | None:
        """Record a failure; the item's new state, or None if the lease was no longer this worker's."""

    def release(self, leases: Collection[Lease]) -> None:
        """Give back items this worker will not work on, without counting a failure."""

    def close(self) -> None: ...


class MemoryItemSource:
    """Items in this process: a worker run by hand, and the tests. Results are kept in `results`."""

    def __init__(self, payloads: Sequence[Any], *, max_failures: int = 3, lease_seconds: float = 60.0) -> None:
        self.lease_seconds = lease_seconds
        self.max_failures = max_failures
        self._payloads = [json.dumps(p) for p in payloads]
        self._waiting = list(range(len(payloads)))
        self._leases: dict[int, int] = {}
        self.results: dict[int, Any] = {}
        self.failures: dict[int, list[str]] = {}
        self.quarantined: set[int] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str, fmt: str | None = None, **options: Any) -> MemoryItemSource:
        """Parse an items file as `orch submit` would (FASTA, text or JSONL by extension or `fmt`): a worker
        run by hand, on the user's own file."""
        from pathlib import Path

        from orchestrator.job.items_format import format_for, parse_items

        items = parse_items(Path(path).read_text(encoding="utf-8"), format_for(path, fmt), source=path)
        return cls([json.loads(it.payload) for it in items], **options)

    def lease(self, n: int) -> list[Lease]:
        with self._lock:
            taken, self._waiting = self._waiting[:n], self._waiting[n:]
            for i in taken:
                self._leases[i] = self._leases.get(i, 0) + 1
            return [Lease(i, i, None, self._payloads[i], self._leases[i]) for i in taken]

    def start(self, lease: Lease) -> bool:
        return True

    def renew(self, leases: Collection[Lease]) -> set[int]:
        return {x.item_id for x in leases}

    def complete(self, lease: Lease, *, result: str | None, result_uri: str | None, work_seconds: float) -> bool:
        with self._lock:
            if lease.item_id in self.results:
                return False
            self.results[lease.item_id] = None if result is None else json.loads(result)
            return True

    def fail(self, lease: Lease, *, reason: str, oom: bool) -> str | None:
        with self._lock:
            seen = self.failures.setdefault(lease.item_id, [])
            seen.append(reason)
            if len(seen) > self.max_failures:
                self.quarantined.add(lease.item_id)
                return "quarantined"
            self._waiting.append(lease.item_id)
            return "failed"

    def release(self, leases: Collection[Lease]) -> None:
        with self._lock:
            self._waiting[:0] = [x.item_id for x in leases]

    def close(self) -> None:
        pass
