"""The seam between the live loop and the multi-zone policies: offers in, a `MultiSituation`; a
`Placement` out, the offer to launch.

The live loop knows zones through offers (provider x region x zone x market x price, with
`available` when the provider can tell), through launch results (a `CapacityError` for a zone), and
through what other jobs' instances show. These functions turn that into the policy's view and back,
so the loop, `orch simulate` and the benchmark feed the same rule. Pure: records in, records out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from orchestrator.core.policy.base import Choice, Situation, SpotHistory
from orchestrator.core.policy.multizone_base import (
    MoveCosts,
    MultiSituation,
    Placement,
    Rates,
    Zone,
    ZoneSeen,
    any_history,
    move_costs,
)
from vocab import Market, Offer


def zones_of(offers: Sequence[Offer]) -> tuple[Zone, ...]:
    """The allowed zones: every zone with a spot offer, in the order the offers come (the job's)."""
    out: dict[tuple[str, str], Zone] = {}
    for o in offers:
        if o.market is Market.SPOT and o.zone is not None:
            out.setdefault((o.region, o.zone), Zone(o.zone, o.region))
    return tuple(out.values())


def observe(zones: Sequence[Zone], seen: Sequence[ZoneSeen], offers: Sequence[Offer], *,
            running_zone: str | None = None, reclaimed_zone: str | None = None, at_h: float = 0.0,
            capacity_errors: Collection[str] = (), up_elsewhere: Collection[str] = (),
            down_elsewhere: Collection[str] = (), signals: Mapping[str, bool] | None = None) -> tuple[ZoneSeen, ...]:
    """This tick's observations of each zone, first one wins: the task's reclaimed instance (down), its
    running one (up), capacity errors of this controller's launches there (the shared capacity memory:
    down), other jobs' spot instances reclaimed or under notice there (down: the newer news), other
    jobs' running spot instances there (up), an offer's `available` flag when the provider gives one,
    and last the provider's published reading of the zone (`signals`: AWS spot placement scores, the
    spot price at on-demand; see `providers.base.ZoneSignal`). Nothing: the zone stays unobserved."""
    flags = {o.zone: o.available for o in offers if o.market is Market.SPOT and o.zone is not None}
    out = []
    for zone, s in zip(zones, seen, strict=True):
        if zone.name == reclaimed_zone:
            s = s.lost(at_h)
        if zone.name == running_zone:
            s = s.look(True)
        if zone.name in capacity_errors:
            s = s.look(False)
        if zone.name in down_elsewhere:
            s = s.look(False)
        if zone.name in up_elsewhere:
            s = s.look(True)
        flag = flags.get(zone.name)
        if flag is not None:
            s = s.look(flag)
        signal = signals.get(zone.name) if signals else None
        if signal is not None:
            s = s.look(signal)
        out.append(s)
    return tuple(out)


def situation(task: Situation, zones: tuple[Zone, ...], seen: tuple[ZoneSeen, ...], *, zone: str | None,
              home: str | None, moves: MoveCosts | None = None, rates: Rates | None = None,
              probe_cost: float = 1.0 / 60.0) -> MultiSituation:
    """The policy's view: `task` as for the single-zone policies (its `spot_available` is replaced by
    "some zone not seen unavailable"), the live attempt's zone and the checkpoint's zone by name."""
    names = [z.name for z in zones]
    spot = any(s.now is not False for s in seen)
    return MultiSituation(
        task=replace(task, spot_available=spot), zones=zones, seen=seen,
        zone=names.index(zone) if zone in names else None, home=names.index(home) if home in names else None,
        moves=moves if moves is not None else move_costs(zones, rates or Rates()), probe_cost=probe_cost)


def end_tick(seen: Sequence[ZoneSeen], history: SpotHistory | None, elapsed_h: float,
             tick_h: float) -> tuple[tuple[ZoneSeen, ...], SpotHistory | None]:
    """After the tick's decision: fold its observations into the per-zone and "spot somewhere" memory."""
    return tuple(s.close_tick(elapsed_h, tick_h) for s in seen), any_history(history, seen, tick_h)


def offer_for(p: Placement, zones: Sequence[Zone], offers: Sequence[Offer], home: str | None) -> Offer | None:
    """The offer that carries out `p`: spot in its zone, on-demand in the checkpoint's region (any
    region before the first launch); the cheapest if several. None: wait, or nothing fits."""
    if p.choice is Choice.WAIT:
        return None
    if p.choice is Choice.SPOT:
        if p.zone is None:
            return None
        want = zones[p.zone]
        fits = [o for o in offers if o.market is Market.SPOT and o.zone == want.name and o.region == want.region]
    else:
        region = next((z.region for z in zones if z.name == home), None)
        fits = [o for o in offers if o.market is Market.ON_DEMAND and (region is None or o.region == region)]
    return min(fits, key=lambda o: o.price_per_hour, default=None)
