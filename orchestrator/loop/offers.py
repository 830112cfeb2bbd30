"""The tick's offers: each provider asked once per tick for every job wanting the same resources, the
lists shared between the jobs that want the same, what is derived from each list kept for the tick,
and prices recorded when they move (`core.plan.job.prices_to_record`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.core.placement import OfferSummary, summarize
from orchestrator.core.plan.job import prices_to_record
from orchestrator.store import Store
from orchestrator.store.views import JobView
from providers.base import Provider
from vocab import CapacityMemory, Clock, Offer, ProviderError, Resources

log = logging.getLogger("orch.reconciler")
OfferKey = tuple[str, Resources, tuple[str, ...], str]


@dataclass
class OfferBook:
    store: Store
    providers: Mapping[str, Provider]
    clock: Clock
    capacity: CapacityMemory
    _offers: dict[OfferKey, list[Offer]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key_locks: dict[OfferKey, threading.Lock] = field(default_factory=dict)
    # This tick's offer list per set of offer keys, and what is derived from each (`summary`).
    _job_offers: dict[tuple[OfferKey, ...], list[Offer]] = field(default_factory=dict)
    _summaries: dict[tuple[int, int], tuple[list[Offer], OfferSummary]] = field(default_factory=dict)
    _recorded: dict[str, tuple[float, bool | None, float]] = field(default_factory=dict)

    def new_tick(self) -> None:
        self._offers.clear()
        self._job_offers.clear()
        self._summaries.clear()
        self._key_locks.clear()

    def offers(self, provider: str, resources: Resources, regions: tuple[str, ...], job_id: str,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        """Offers, fetched once per tick per (provider, resources, regions) and recorded as prices.

        A provider whose market is the job's own (`offers_per_job`: the local simulated market, shaped
        by the job's `options`) is asked once per job; every other provider once for all the jobs
        that want the same resources where it is, so 1,000 jobs cost one call, not 1,000.
        """
        key = self._key(provider, resources, regions, job_id)
        # One lock per key, so that job workers wanting the same offers make one call between them,
        # while a slow provider (bounded by the executor's call timeout) holds up only its own key.
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._offers:
                try:
                    found = self.providers[provider].offers(resources, regions, job_id=job_id, options=options)
                except ProviderError as exc:
                    log.warning("offers from %s failed: %s", provider, exc)
                    found = []
                self._offers[key] = found
                self._record(found)
            return self._offers[key]

    def _key(self, provider: str, resources: Resources, regions: tuple[str, ...], job_id: str) -> OfferKey:
        per_job = self.providers[provider].abilities.offers_per_job
        return (provider, resources, regions, job_id if per_job else "")

    def _record(self, offers: list[Offer]) -> None:
        now = self.clock.now()
        fresh = prices_to_record(offers, self._recorded, now)
        for o in fresh:
            self._recorded[o.key] = (o.price_per_hour, o.available, now)
        self.store.record_prices(fresh, now)

    def job_offers(self, job: JobView) -> list[Offer]:
        """Every offer of the job's providers this tick (each fetched once, see `offers`); jobs that want
        the same offers get the same list, so what is derived from it is derived once (`summary`)."""
        spec = job.spec
        names = [name for name in spec.placement.providers if name in self.providers]
        key = tuple(self._key(name, spec.resources, spec.placement.regions, job.id) for name in names)
        found = self._job_offers.get(key)
        if found is None:
            found = [o for name in names for o in self.offers(name, spec.resources, spec.placement.regions, job.id,
                                                               spec.placement.options.get(name))]
            found = self._job_offers.setdefault(key, found)
        return found

    def summary(self, offers: list[Offer]) -> OfferSummary:
        """`placement.summarize` of one of this tick's offer lists, kept for the tick while the capacity
        memory stays as it was."""
        key = (id(offers), self.capacity.generation)
        found = self._summaries.get(key)
        if found is None:
            # The list is kept with its summary: while it lives, no other list can have its id.
            found = self._summaries[key] = (offers, summarize(offers, self.capacity, self.clock.now()))
        return found[1]
