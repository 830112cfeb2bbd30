"""What EC2 publishes about spot capacity per zone, as `ZoneSignal`s for the multi-zone policy.

Two signals, both free of charge and neither a launch:

- **The spot price** (from `describe_spot_price_history`, already read for the offers): a zone whose
  spot price has reached its on-demand price is a market clearing at the cap, i.e. short of spot
  capacity; that is read as "not available". A lower price says nothing either way (since 2017 EC2
  prices move slowly and rarely track capacity), so it gives no signal.
- **Spot placement scores** (`get_spot_placement_scores`, opt-in with `placement_scores = true`):
  EC2's own 1-10 estimate that a spot request of one instance of the type succeeds in a zone
  (10: "highly likely", 1: "not likely"). A score of `SCORE_UP` or more reads as available, one of
  `SCORE_DOWN` or less as not; between, no signal. EC2 limits how many distinct requests an account
  may make a day, so answers are cached for `placement_score_cache_seconds` (an hour by default),
  failures too: a refused or throttled call costs one call per period, never one per tick.

EC2 answers scores by zone id (`use1-az4`), which differs between accounts; each region's
`describe_availability_zones` maps ids to the names offers carry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vocab import Market, Offer, ProviderError, ZoneSignal

log = logging.getLogger(__name__)
PROVIDER = "aws"
# Thresholds on EC2's 1-10 placement score; nothing published fixes them: 8 and 3 leave the middle
# of the scale, which EC2 describes as neither likely nor unlikely, as no signal.
SCORE_UP, SCORE_DOWN = 8, 3


def price_signals(offers: Sequence[Offer]) -> dict[str, ZoneSignal]:
    """Zones whose spot price (from EC2's price history, not the catalog's typical price) is at or above
    on-demand: not available."""
    out: dict[str, ZoneSignal] = {}
    for o in offers:
        if (o.provider != PROVIDER or o.market is not Market.SPOT or o.zone is None or o.price_source != "api"
                or o.on_demand_price_per_hour <= 0):
            continue
        if o.price_per_hour >= o.on_demand_price_per_hour:
            out[o.zone] = ZoneSignal(False, "spot-price", f"{o.instance_type} spot {o.price_per_hour:g} $/h "
                                     f">= on-demand {o.on_demand_price_per_hour:g} $/h")
    return out


def score_signal(zone: str, score: int) -> ZoneSignal:
    available = True if score >= SCORE_UP else False if score <= SCORE_DOWN else None
    return ZoneSignal(available, "spot-placement-score", f"{zone}: {score}/10")


def read_scores(ec2: Any, types: Sequence[str], regions: Sequence[str]) -> dict[tuple[str, str], int]:
    """(region, zone id) -> the best score EC2 gives any of `types` for one instance there."""
    pages = ec2.get_paginator("get_spot_placement_scores").paginate(
        InstanceTypes=list(types), TargetCapacity=1, TargetCapacityUnitType="units",
        SingleAvailabilityZone=True, RegionNames=list(regions))
    out: dict[tuple[str, str], int] = {}
    for page in pages:
        for item in page.get("SpotPlacementScores", []):
            try:
                key, score = (str(item["Region"]), str(item["AvailabilityZoneId"])), int(item["Score"])
            except (KeyError, TypeError, ValueError):
                continue
            out[key] = max(out.get(key, 0), score)
    return out


def zone_names(ec2: Any) -> dict[str, str]:
    """Zone id -> zone name in the client's region."""
    reply = ec2.describe_availability_zones()
    return {str(z["ZoneId"]): str(z["ZoneName"]) for z in reply.get("AvailabilityZones", [])
            if "ZoneId" in z and "ZoneName" in z}


class PlacementScores:
    """Placement-score signals per (types, regions), each read at most once per `ttl` seconds."""

    def __init__(self, now: Callable[[], float], ttl: float, client: Callable[[str], Any],
                 call: Callable[[Callable[[], Any], str, str], Any]) -> None:
        self._now, self._ttl, self._client, self._call = now, ttl, client, call
        self._cache: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[float, dict[str, ZoneSignal]]] = {}
        self._names: dict[str, dict[str, str]] = {}  # region -> zone id -> name (never changes)
        self._lock = threading.Lock()

    def signals(self, offers: Sequence[Offer]) -> dict[str, ZoneSignal]:
        spot = [o for o in offers if o.provider == PROVIDER and o.market is Market.SPOT and o.zone is not None]
        if not spot:
            return {}
        key = (tuple(sorted({o.instance_type for o in spot})), tuple(sorted({o.region for o in spot})))
        with self._lock:  # one reader per period: the tasks of a tick wait for it instead of calling too
            found = self._cache.get(key)
            if found is None or self._now() - found[0] >= self._ttl:
                found = self._cache[key] = (self._now(), self._read(*key))
        wanted = {o.zone for o in spot}
        return {zone: s for zone, s in found[1].items() if zone in wanted}

    def _read(self, types: tuple[str, ...], regions: tuple[str, ...]) -> dict[str, ZoneSignal]:
        home = regions[0]
        try:
            scores = self._call(lambda: read_scores(self._client(home), types, regions),
                                "GetSpotPlacementScores", home)
            out: dict[str, ZoneSignal] = {}
            for (region, zone_id), score in scores.items():
                if region not in regions:
                    continue
                names = self._zone_names(region)
                if zone_id in names:
                    out[names[zone_id]] = score_signal(names[zone_id], score)
            return out
        except ProviderError as exc:
            log.warning("no spot placement scores from EC2 this period: %s", exc)
            return {}

    def _zone_names(self, region: str) -> Mapping[str, str]:
        if region not in self._names:
            self._names[region] = self._call(lambda: zone_names(self._client(region)), "DescribeAvailabilityZones",
                                             region)
        return self._names[region]
