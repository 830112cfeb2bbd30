"""Where a campaign's next worker may launch on spot: zones whose spot has settled, spread over them.

Why. A campaign's workers are many tasks deciding in the same tick on the same observations, so
without this they all launch into the zone that has just come up, and every reclamation there costs
each of them a restart (the launch overhead, ~0.1 h, before the first item). bench/campaign.py, where
spot runs out (trace tick 11,475), lost 7.4 of 46.4 billed hours that way: 73 reclamations, nearly
all in zones that had come back minutes before and went again within 0.1-0.6 h. The public traces'
availability runs are heavy-tailed: a run that has lasted a while is likely to last, one that has just
begun is often a blip shorter than the launch overhead. So, while the deadline leaves room:

- **settle**: a new worker launches spot only in a zone seen up for `SETTLE_OVERHEADS` restart
  overheads since it came back (or since it reclaimed one of the campaign's workers). A zone already
  up when first seen counts as settled: its age is unknown, and a run met at a random moment is
  likely a long one (the inspection paradox), so a fresh controller does not idle at the start.
- **spread**: among settled zones, it launches where the campaign has the fewest spot workers, so
  one reclamation hits a part of them, not all.

The rest is the policy's, unchanged: the offers of held-back zones are shown to it as unavailable
(not removed: the multi-zone policy's memory is keyed by the zones offered), so with no settled zone
it waits. While the deadline leaves time to spare, on-demand is shown unavailable to new workers too
(`campaign_plan.offers_for_items`, issue 25): it is bought only once the slots could no longer do the
work left in half the time left. When the deadline is tight (every slot wanted) or absent, nothing is
held back: then speed is what is asked.

Measured by `bench/campaign.py` (docs/benchmarks.md, "Campaigns"). 2.5 overheads was chosen on a
replay of the same model over 46 start times of the V100 week (`python -m bench._campaign_replay`:
mean 1.068 -> 1.050 x the all-spot bound, worst 1.205 -> 1.113) and held on 38 start times of the
other AWS week, aws-04-19 (mean 1.041 -> 1.034, worst 1.164 -> 1.090).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from vocab import Market, Offer

# A zone's spot must have been up this many restart overheads before a new worker pays one there.
SETTLE_OVERHEADS = 2.5


@dataclass(frozen=True, slots=True)
class ZoneAges:
    """When each zone's current run of spot availability began, as this controller saw it.

    `up_since[zone]`: the start of the run (-inf: already up when first seen, age unknown); a zone
    absent from it is down. `seen`: zones observed at least once. `reclaims_folded`: the newest end
    time of a reclaimed worker already counted, so a reclamation restarts its zone's run once.
    """

    up_since: Mapping[str, float] = dataclasses.field(default_factory=dict)
    seen: frozenset[str] = frozenset()
    reclaims_folded: float = -math.inf

    def age_h(self, zone: str, now: float) -> float | None:
        """Hours the zone's spot has been up (inf when up at first sight); None when down."""
        since = self.up_since.get(zone)
        return None if since is None else (now - since) / 3600.0


def observe_zones(prev: ZoneAges | None, offers: Sequence[Offer], now: float,
                  reclaimed: Mapping[str, float] | None = None) -> ZoneAges:
    """The ages after this tick's offers and the campaign's reclaimed workers (zone -> newest end time).

    A zone is up when one of its spot offers says available, down when all say unavailable; offers
    with no flag (None: the provider does not say) leave it up, so only the campaign's own
    reclamations restart such a zone's run. A reclamation newer than `prev.reclaims_folded` restarts
    its zone's run now, whatever the flags say: the zone has just shown it can take spot back."""
    prev = prev or ZoneAges()
    flags: dict[str, set[bool | None]] = {}
    for o in offers:
        if o.market is Market.SPOT and o.zone is not None:
            flags.setdefault(o.zone, set()).add(o.available)
    fresh = {z: t for z, t in (reclaimed or {}).items() if t > prev.reclaims_folded}
    up: dict[str, float] = {}
    for zone, flag in flags.items():
        if flag == {False}:
            continue
        if zone in fresh:
            up[zone] = now
        elif zone in prev.up_since:
            up[zone] = prev.up_since[zone]
        else:
            up[zone] = -math.inf if zone not in prev.seen else now
    folded = max([prev.reclaims_folded, *fresh.values()])
    return ZoneAges(up, prev.seen | frozenset(flags), folded)


def spot_zones_for_new_worker(ages: ZoneAges, zones: Collection[str], workers_by_zone: Mapping[str, int], *,
                              now: float, settle_h: float, refused: Collection[str] = ()) -> set[str]:
    """The zones where a new worker may launch spot: settled ones (up for `settle_h`), not refused
    for capacity, and of those only the ones holding the fewest of the campaign's spot workers."""
    settled = {z for z in zones if z not in refused and (age := ages.age_h(z, now)) is not None
               and age >= settle_h - 1e-9}
    if not settled:
        return set()
    fewest = min(workers_by_zone.get(z, 0) for z in settled)
    return {z for z in settled if workers_by_zone.get(z, 0) == fewest}


def hold_back(offers: Sequence[Offer], allowed: Collection[str]) -> tuple[Offer, ...]:
    """`offers` with every spot offer outside `allowed` zones shown unavailable (kept, in order)."""
    return tuple(dataclasses.replace(o, available=False)
                 if o.market is Market.SPOT and o.zone is not None and o.zone not in allowed else o
                 for o in offers)
