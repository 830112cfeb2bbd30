"""What a provider can do beyond the protocol's calls, and the capacity memory the loop and the
adapters share."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Abilities:
    """What a provider can do beyond the protocol's five calls: the loop asks this record, never the type.

    Every provider declares one (`abilities = Abilities(...)`); the conformance suite checks each.
    """

    # A replacement may start while its predecessor drains an interruption notice: the provider holds
    # the new job back until ORCH_RESUME_NOT_BEFORE (AWS does, in the user data).
    replaces_on_notice: bool = False
    # A launched instance may wait unbilled (a pod pending for a node): its attempt stays launching, and
    # is billed from the moment it is seen running.
    bills_from_start: bool = False
    # `terminate` only asks (a pod's grace period): the instance is seen stopping, then gone, and a
    # cancelled attempt ends then, not when asked.
    stops_gracefully: bool = False
    # Offers depend on the job (the local provider's simulated market is configured per job).
    offers_per_job: bool = False
    # The most nodes `launch_gang` starts as one all-or-nothing gang (1: no gangs; providers.base.LaunchesGangs).
    max_gang_nodes: int = 1


class CapacityMemory(Mapping[str, float]):
    """Where capacity was lately refused or is being reclaimed: offer key -> until when to avoid it.

    One memory per controller, shared by the loop and every adapter that falls back between zones
    itself (AWS launches try the next zone on a capacity error): a refusal learnt by either is seen by
    both, so the loop does not send a launch to a zone the adapter just found empty, nor the adapter
    back to one the loop saw reclaimed. Before, the reconciler, the AWS adapter and the GCP adapter
    each kept their own and could disagree for minutes. Thread-safe: launches may run in parallel.

    It is a read-only `Mapping` for the pure core (`placement.usable` reads `avoid.get(key)`); only
    `refuse`/`refuse_all` write, and an entry never moves earlier (the longer avoidance wins).
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        # Moves whenever an entry is added, lengthened or dropped: what was derived from the memory at
        # one generation (a tick's usable offers, cached per offer list) holds until it moves.
        self.generation = 0

    def refuse(self, key: str, until: float) -> None:
        with self._lock:
            if until > self._until.get(key, 0.0):
                self._until[key] = until
                self.generation += 1

    def refuse_all(self, keys: Sequence[str], until: float) -> None:
        for key in keys:
            self.refuse(key, until)

    def avoided(self, key: str, now: float) -> bool:
        return self._until.get(key, 0.0) > now

    def forget_before(self, now: float) -> None:
        """Drop what has expired, so a long-lived controller's memory stays the size of what matters."""
        with self._lock:
            kept = {k: u for k, u in self._until.items() if u > now}
            if len(kept) != len(self._until):
                self._until = kept
                self.generation += 1

    def __getitem__(self, key: str) -> float:
        return self._until[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._until))

    def __len__(self) -> int:
        return len(self._until)


@dataclass(frozen=True, slots=True)
class ZoneSignal:
    """A provider's own published reading of spot capacity in one zone, got without launching there.

    `available` is what the multi-zone policy takes as this tick's observation of the zone when
    nothing more direct (a running or reclaimed instance, a failed launch, an offer's flag) speaks for
    it; None: the signal says nothing either way. `source` names it ("spot-placement-score",
    "spot-price"), `detail` the figure behind it, for events and docs.
    """

    available: bool | None
    source: str
    detail: str = ""
