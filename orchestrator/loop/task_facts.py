"""Small reads a task's step and the tick need from the store and checkpoint storage, and the campaign's
memory from tick to tick, kept apart from the step (`reconcile_task`) and the plan (`core.plan`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.core.campaign_plan import (
    CampaignFacts,
    gpu_of_new_worker,
    rates_by_gpu,
    seconds_per_item,
    time_to_spare,
)
from orchestrator.core.campaign_zones import SETTLE_OVERHEADS, ZoneAges, observe_zones
from orchestrator.core.model import AttemptView, Outcome
from orchestrator.job.checkpoint import Heartbeat, Manifest, Storage, StorageError, newest_manifest
from orchestrator.job.checkpoint.manifest import read_manifest
from vocab import Market, Offer

if TYPE_CHECKING:
    from orchestrator.store import Store
    from orchestrator.store.items import ItemStore

log = logging.getLogger("orch.reconciler")


def asked_to_stop(store: Store, job_id: str, attempt_id: str) -> bool:
    """Whether the loop asked this attempt's instance to stop gracefully (its `stopping` event): the one
    record that survives a controller restart, so a successor knows not to wait out the listing grace."""
    return store.has_event(job_id, "stopping", attempt_id=attempt_id)


def newest_manifest_of(storage: Storage, hb: Heartbeat | None) -> Manifest | None:
    """The newest checkpoint's manifest: the one the agent's heartbeat names (one read), or, before the
    first heartbeat, found by listing the store (the agent lists it already; no need to twice a tick)."""
    if hb is not None and hb.newest_checkpoint is not None:
        try:
            return read_manifest(storage, hb.newest_checkpoint)
        except StorageError:
            pass  # pruned or damaged since the beat: fall back to the listing
    return newest_manifest(storage)


# How often a campaign's rate per GPU type is read again (one grouped query over its done items).
RATE_READ_S = 300.0


@dataclass(frozen=True, slots=True)
class CampaignMemory:
    """What the loop carries from tick to tick for one campaign (in memory, as the spot history: a
    restarted controller starts afresh): when each zone's spot came up, and the rate per GPU type."""

    zones: ZoneAges = field(default_factory=ZoneAges)
    rates: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    rates_at: float = -math.inf


def observe_campaign(memory: CampaignMemory | None, facts: CampaignFacts, *, job_id: str, estimate_h: float,
                     overhead_h: float, slots: int, attempts: Iterable[AttemptView], offers: list[Offer],
                     items: ItemStore, avoid: Mapping[str, float], now: float,
                     hours_left: float | None = None) -> CampaignMemory:
    """Fill this tick's campaign facts that need more than the item counts, and return the memory to keep.

    - zones: fold the job's offers and its workers' reclamations into the zone ages
      (`core.campaign_zones`); a zone must stay up `SETTLE_OVERHEADS` overheads before a new worker goes,
      while the deadline leaves time to spare (`core.campaign_plan.time_to_spare`).
    - rate: the items done per GPU type (re-read every `RATE_READ_S`), as work hours per item on the GPU
      a new worker would get (`core.campaign_plan.seconds_per_item`).
    Live workers are not counted here: the caller adds each one (`CampaignFacts.add_worker`)."""
    memory = memory or CampaignMemory()
    attempts = list(attempts)
    reclaimed: dict[str, float] = {}
    for a in attempts:
        if (a.outcome is Outcome.PREEMPTED and a.market is Market.SPOT and a.zone is not None
                and a.ended_at is not None):
            reclaimed[a.zone] = max(reclaimed.get(a.zone, -math.inf), min(a.ended_at, now))
    zones = observe_zones(memory.zones, offers, now, reclaimed)
    rates, rates_at = memory.rates, memory.rates_at
    if facts.counts.done and now - rates_at >= RATE_READ_S:
        gpu_by_type = {(o.provider, o.instance_type): o.gpu for o in offers}
        gpu_of = {a.id: gpu_by_type.get((a.provider, a.instance_type), a.instance_type) for a in attempts}
        rates, rates_at = rates_by_gpu(items.done_by_worker(job_id), gpu_of), now
    total = facts.counts.total
    if rates and total:
        facts.hours_per_item = seconds_per_item(rates, gpu_of_new_worker(offers),
                                                estimate_s=estimate_h * 3600.0 / total) / 3600.0
    facts.zones, facts.settle_h, facts.now, facts.avoid = zones, SETTLE_OVERHEADS * overhead_h, now, avoid
    facts.spare = time_to_spare(facts, slots=slots, total_h=estimate_h, overhead_h=overhead_h, hours_left=hours_left)
    return CampaignMemory(zones, rates, rates_at)
