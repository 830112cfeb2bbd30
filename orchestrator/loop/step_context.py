"""What a task's step reads and writes of the tick around it, as a protocol the `Reconciler` satisfies:
the step (`reconcile_task`) and the zone view (`zones`) name it instead of importing the reconciler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.loop.zones import ZoneContext
from vocab import Abilities, Offer

if TYPE_CHECKING:
    from orchestrator.core.policy.base import SpotHistory
    from orchestrator.job.checkpoint.base import Storage
    from orchestrator.loop.gangs import GangReleases
    from orchestrator.loop.pending import PendingWrites
    from orchestrator.loop.progress_reads import ProgressReads
    from orchestrator.store import Store
    from orchestrator.store.item_source import ItemEndpoint
    from orchestrator.store.items import ItemStore
    from orchestrator.store.views import JobView


class StepContext(ZoneContext, Protocol):
    """What a task's step reads and writes of the tick around it (the `Reconciler` is one): named here
    so that the step does not import the reconciler that runs it."""

    @property
    def store(self) -> Store: ...

    @property
    def pending(self) -> PendingWrites: ...

    @property
    def progress(self) -> ProgressReads: ...

    @property
    def history(self) -> dict[str, SpotHistory]: ...

    @property
    def item_endpoint(self) -> ItemEndpoint | None: ...

    @property
    def items(self) -> ItemStore: ...

    def job_offers(self, job: JobView) -> list[Offer]: ...

    def reread_task(self, snap: JobSnapshot, task_id: str) -> None: ...

    def seen_since(self, attempt_id: str, started: float) -> float: ...

    @property
    def guessed_ends(self) -> dict[str, float]: ...

    @property
    def abilities(self) -> Mapping[str, Abilities]: ...

    @property
    def gang_releases(self) -> GangReleases: ...

    def storage(self, uri: str) -> Storage: ...
