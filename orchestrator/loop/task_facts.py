"""What a task step reads and asks of providers and checkpoint storage: small facts, kept apart from the
step itself (`reconcile_task.TaskWorker`) so that it reads as the sequence of decisions it is."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.checkpoint import Heartbeat, Manifest, Storage, StorageError, newest_manifest, read_heartbeat
from orchestrator.checkpoint.manifest import read_manifest
from orchestrator.core.model import AttemptView, Outcome
from providers.base import Provider, offer_key

if TYPE_CHECKING:
    from orchestrator.store import Store

log = logging.getLogger("orch.reconciler")


def replaces_on_notice(provider: Provider) -> bool:
    """Whether `provider` can start a replacement that waits for its predecessor (ORCH_RESUME_NOT_BEFORE)."""
    return getattr(provider, "replaces_on_notice", False) is True


def bills_from_start(provider: Provider) -> bool:
    """Whether `provider`'s instances may wait unbilled after launch (a pod pending for a node): the
    attempt then stays launching until the instance runs, and is billed from that moment."""
    return getattr(provider, "bills_from_start", False) is True


def asked_to_stop(store: Store, job_id: str, attempt_id: str) -> bool:
    """Whether the loop asked this attempt's instance to stop gracefully (its `stopping` event): the one
    record that survives a controller restart, so a successor knows not to wait out the listing grace."""
    return store.has_event(job_id, "stopping", attempt_id=attempt_id)


def stops_gracefully(provider: Provider) -> bool:
    """Whether `provider`'s terminate only asks the instance to stop (a pod deleted with a grace period),
    so that it is seen stopping, then gone: a cancelled attempt is ended then, not when asked."""
    return getattr(provider, "stops_gracefully", False) is True


def draining(attempt: AttemptView, now: float) -> bool:
    """An attempt ended on an interruption notice whose instance may still run (and save) until its deadline."""
    return attempt.outcome is Outcome.PREEMPTED and attempt.ended_at is not None and attempt.ended_at > now


@dataclass(frozen=True, slots=True)
class Seen:
    """What one look at a live attempt's heartbeat found (all empty when nothing could be read)."""

    exit_code: int | None = None
    moved: bool = False
    interrupted: bool = False
    heartbeat_at: float | None = None
    provider_progress: bool = False


class Tracked:
    """The store, noting whether a step wrote anything: only then is its task read again."""

    WRITES = frozenset({"transition", "update_progress", "begin_attempt", "attempt_instance", "attempt_running",
                        "end_attempt", "note_attempt"})

    def __init__(self, store: Store) -> None:
        self._store = store
        self.wrote = False

    def __getattr__(self, name: str) -> Any:
        if name in self.WRITES:
            self.wrote = True
        return getattr(self._store, name)


def attempt_key(a: AttemptView) -> str:
    return offer_key(a.provider, a.region, a.zone, a.instance_type, a.market)


def read_checkpoints(open_storage: Callable[[str], Storage], uri: str,
                      attempt: int) -> tuple[Heartbeat | None, Manifest | None]:
    """The attempt's heartbeat (None if another attempt wrote the newest) and the newest manifest."""
    storage = open_storage(uri)
    hb = read_heartbeat(storage)
    if hb is not None and hb.attempt != attempt:
        hb = None
    return hb, newest_manifest_of(storage, hb)


def newest_manifest_of(storage: Storage, hb: Heartbeat | None) -> Manifest | None:
    """The newest checkpoint's manifest: the one the agent's heartbeat names (one read), or, before the
    first heartbeat, found by listing the store (the agent lists it already; no need to twice a tick)."""
    if hb is not None and hb.newest_checkpoint is not None:
        try:
            return read_manifest(storage, hb.newest_checkpoint)
        except StorageError:
            pass  # pruned or damaged since the beat: fall back to the listing
    return newest_manifest(storage)
