"""One task's view of its zones for the multi-zone policy, across the calls of one step.

The pure rules are in `orchestrator.core.policy.multizone_live` (the same calling sequence that
`tests/test_multizone_live.py` drives and `bench/policy.py --multi` measures); this gathers the loop's
observations for them: the task's running or just-reclaimed instance, the shared capacity memory's
refusals, the providers' availability flags, and what every other instance of the tick's listings
shows (`ZoneEvidence`, gathered once per tick for all tasks of all jobs). Zones are observed once per
step, however often the step asks the policy, and the observation is folded into the task's memory
when the step ends.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from orchestrator.core.model import AttemptView, Outcome, TaskView
from orchestrator.core.placement import OfferSummary
from orchestrator.core.policy import Situation
from orchestrator.core.policy.base import SpotHistory
from orchestrator.core.policy.multizone import get_multi_policy, multi_policy_names
from orchestrator.core.policy.multizone_base import MoveCosts, Placement, Rates, Zone, ZoneSeen, move_costs
from orchestrator.core.policy.multizone_live import end_tick, observe
from orchestrator.core.policy.multizone_live import situation as zone_situation
from orchestrator.loop.executor import Executor
from orchestrator.loop.observation import Observation
from orchestrator.loop.snapshot import JobSnapshot
from providers.base import Provider, zone_signals
from providers.catalog import Catalog, load_catalog
from vocab import CapacityMemory, Clock, EndReason, Instance, InstanceState, Market, NoticeKind, Offer, ProviderError

log = logging.getLogger("orch.reconciler")


class ZoneContext(Protocol):
    """What a task's zone view reads of the tick around it (the `Reconciler` is one)."""

    @property
    def providers(self) -> Mapping[str, Provider]: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def capacity(self) -> CapacityMemory: ...

    @property
    def executor(self) -> Executor: ...

    @property
    def tick_seconds(self) -> float: ...

    @property
    def zone_evidence(self) -> ZoneEvidence: ...

    @property
    def zone_memory(self) -> dict[str, tuple[tuple[str, ...], tuple[ZoneSeen, ...], SpotHistory | None]]: ...

    def offer_summary(self, offers: list[Offer]) -> OfferSummary: ...



# What evidence is about: a spot instance type in a zone (an offer key's parts, without building the
# key's string for every offer of every task).
Where = tuple[str, str, str | None, str]


def _where(inst: Instance | Offer) -> Where:
    return inst.provider, inst.region, inst.zone, inst.instance_type


@dataclass(frozen=True, slots=True)
class ZoneEvidence:
    """What one tick's listings show of spot capacity, by offer key, for every task of every job.

    A running spot instance of any job (or of another installation sharing the account) shows that
    its instance type has spot capacity in its zone now; one reclaimed since the last tick, or under
    an interruption notice, shows that capacity going. A task considering that zone for the same
    instance type learns it without running there. Gathered once per tick from the tick's one
    listing (`Reconciler.observe`), never per task; failed launches need no gathering, as they reach
    every task at once through the shared `CapacityMemory`.
    """

    up: frozenset[Where] = frozenset()
    down: frozenset[Where] = frozenset()

    @classmethod
    def of(cls, obs: Observation) -> ZoneEvidence:
        """The evidence in one tick's listing. Only a RUNNING instance counts as up (a pending one may
        still be refused); a reclaimed one counts only while its attempt is live here, i.e. in the
        one tick that ends it (ended instances stay listed for an hour on EC2: old news)."""
        up: set[Where] = set()
        down: set[Where] = set()
        noticed = {a for a, n in obs.notices.items() if n.kind is NoticeKind.INTERRUPTION}
        for attempt_id, inst in obs.instances.items():
            if inst.market is not Market.SPOT or inst.zone is None:
                continue
            if inst.reason is EndReason.PREEMPTED or attempt_id in noticed:
                down.add(_where(inst))
            elif inst.state is InstanceState.RUNNING:
                up.add(_where(inst))
        for _, inst in obs.orphans:
            if inst.market is Market.SPOT and inst.zone is not None and inst.state is InstanceState.RUNNING:
                up.add(_where(inst))
        return cls(frozenset(up), frozenset(down))

    def zones(self, offers: Sequence[Offer]) -> tuple[set[str], set[str]]:
        """(zones shown up, zones shown down) among `offers`' spot zones: a zone is shown so when any of
        its spot offers' instance types is."""
        up: set[str] = set()
        down: set[str] = set()
        if not (self.up or self.down):
            return up, down
        for o in offers:
            if o.market is not Market.SPOT or o.zone is None:
                continue
            where = _where(o)
            if where in self.up:
                up.add(o.zone)
            if where in self.down:
                down.add(o.zone)
        return up, down


NO_EVIDENCE = ZoneEvidence()


def priced_moves(zones: tuple[Zone, ...], offers: Sequence[Offer], catalog: Catalog | None = None) -> MoveCosts:
    """What a move between the task's zones costs, with the egress fee at the catalog's list price per GB
    from the checkpoint's region to the launch's (`Catalog.offer_egress_usd_per_gb`: the provider's own
    price, or for `local` and `sim` offers the price of their instance type's provider; 0 within a
    region), in spot-price hours of the cheapest spot offer (the unit of the policy's price ratio).

    The job has no checkpoint size estimate yet, so the checkpoint is `Rates`' 50 GB (SkyNomad's), and the
    transfer time is `Rates`' bandwidth between regions. Kept per (zones, source offers, spot price):
    the same few lists come back every tick."""
    sources: dict[str, Offer] = {}
    for o in sorted((o for o in offers if o.market is Market.SPOT), key=lambda o: o.price_per_hour):
        sources.setdefault(o.region, o)
    low = min((o.price_per_hour for o in sources.values()), default=0.0)
    key = tuple(sorted(sources.values(), key=lambda o: o.region))
    return _listed_moves(zones, key, low) if catalog is None else _moves(zones, key, low, catalog)


@functools.lru_cache(maxsize=256)
def _listed_moves(zones: tuple[Zone, ...], sources: tuple[Offer, ...], spot_usd_per_h: float) -> MoveCosts:
    return _moves(zones, sources, spot_usd_per_h, load_catalog())


def _moves(zones: tuple[Zone, ...], sources: tuple[Offer, ...], spot_usd_per_h: float, catalog: Catalog) -> MoveCosts:
    by_region = {o.region: o for o in sources}

    def usd_per_gb(a: Zone, b: Zone) -> float | None:
        source = by_region.get(a.region)
        return None if source is None else catalog.offer_egress_usd_per_gb(source, b.region)

    rates = Rates(spot_usd_per_h=spot_usd_per_h) if spot_usd_per_h > 0 else Rates()
    return move_costs(zones, rates, usd_per_gb)


class ZoneView:
    def __init__(self, r: ZoneContext, snap: JobSnapshot, task: TaskView) -> None:
        self.r, self.snap, self.task_id = r, snap, task.id
        self._zones: tuple[Zone, ...] = ()
        self._seen: tuple[ZoneSeen, ...] | None = None

    @property
    def evidence(self) -> ZoneEvidence:
        """The tick's `ZoneEvidence`, which the Reconciler gathers once per tick (none before it does)."""
        return self.r.zone_evidence

    def placement(self, task: Situation, live: AttemptView | None,
                  offers: list[Offer]) -> tuple[Placement | None, str | None, str | None]:
        """The multi-zone policy's (placement, its zone, the checkpoint's region) when the job may run spot
        in several zones and its policy has a multi-zone form (`multi_policy_names`); all None otherwise,
        and the single-zone policy decides as before."""
        zones = self.r.offer_summary(offers).zones  # once per offer list and tick
        job = self.snap.job
        if len(zones) < 2 or job.spec.policy_name not in multi_policy_names():
            return None, None, None
        now = self.r.clock.now()
        mine = self.snap.attempts_of(self.task_id)
        home = mine[-1].zone if mine else None  # where the newest attempt ran: the checkpoint's zone
        names, seen, history = self.r.zone_memory.get(self.task_id, ((), (), None))
        if self._seen is None or self._zones != zones:
            if names != tuple(z.name for z in zones):
                seen = tuple(ZoneSeen() for _ in zones)
            newest = mine[-1] if mine else None
            reclaimed = (newest.zone if newest is not None and newest.outcome is Outcome.PREEMPTED
                         and newest.ended_at is not None and now - newest.ended_at <= self.r.tick_seconds else None)
            refused = {o.zone for o in offers if o.market is Market.SPOT and o.zone is not None
                       and self.r.capacity.avoided(o.key, now)}
            running = live.zone if live is not None and live.market is Market.SPOT else None
            up, down = self.evidence.zones(offers)
            self._zones = zones
            self._seen = observe(zones, seen, offers, at_h=(now - job.created_at) / 3600.0, reclaimed_zone=reclaimed,
                                 running_zone=running, capacity_errors=refused, up_elsewhere=up,
                                 down_elsewhere=down, signals=self._signals(offers))
        m = zone_situation(dataclasses.replace(task, history=history), zones, self._seen,
                           zone=live.zone if live is not None else None, home=home, moves=priced_moves(zones, offers))
        chosen = get_multi_policy(job.spec.policy_name)(m)
        zone = zones[chosen.zone].name if chosen.zone is not None else None
        return chosen, zone, next((z.region for z in zones if z.name == home), None)

    def _signals(self, offers: list[Offer]) -> dict[str, bool]:
        """The providers' own readings of their zones (`providers.base.SignalsZones`: AWS placement
        scores and spot prices), zone -> available, where a provider publishes one."""
        out: dict[str, bool] = {}
        for name in sorted({o.provider for o in offers}):
            provider = self.r.providers.get(name)
            if provider is None:
                continue
            mine = [o for o in offers if o.provider == name]
            try:  # bounded like every provider call: a signal that hangs costs a timeout, never the tick
                found = self.r.executor.call(partial(zone_signals, provider, mine), f"{name} zone signals")
            except ProviderError as exc:
                log.warning("zone signals from %s failed: %s", name, exc)
                continue
            out.update((zone, s.available) for zone, s in found.items() if s.available is not None)
        return out

    def close_tick(self) -> None:
        """Fold this step's observations into the task's memory (once per tick)."""
        if self._seen is None:
            return
        job = self.snap.job
        _, _, history = self.r.zone_memory.get(self.task_id, ((), (), None))
        seen, history = end_tick(self._seen, history, (self.r.clock.now() - job.created_at) / 3600.0,
                                 self.r.tick_seconds / 3600.0)
        self.r.zone_memory[self.task_id] = (tuple(z.name for z in self._zones), seen, history)
