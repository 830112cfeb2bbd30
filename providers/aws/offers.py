"""AWS offers: catalog GPU types, narrowed to the zones that have them, priced by the spot market.

The catalog says which instance types carry which GPUs and what they list at; EC2 says which zones
offer each type (`describe_instance_type_offerings`) and what spot costs there now
(`describe_spot_price_history`, the newest entry per zone). When EC2 answers no usable price the
catalog's typical spot price stands in, and the offer says so (`price_source="catalog"`), because a
schedule built on a guessed price should be visibly one.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from providers.catalog import InstanceType
from vocab import Billing, CapacityMemory, Market, Offer, Resources

PROVIDER = "aws"
# "Linux/UNIX (Amazon VPC)" is the same product in accounts old enough to have EC2-Classic.
LINUX = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")


def zone_offerings(ec2: Any, names: Sequence[str]) -> dict[str, set[str]]:
    """Instance type -> zones of the client's region that offer it (all pages)."""
    zones: dict[str, set[str]] = {name: set() for name in names}
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": list(names)}]
    )
    for page in pages:
        for item in page.get("InstanceTypeOfferings", []):
            zones.setdefault(item["InstanceType"], set()).add(item["Location"])
    return zones


def spot_history(ec2: Any, names: Sequence[str], start: dt.datetime) -> list[dict[str, Any]]:
    """Spot price entries from `start` on: AWS includes the price in effect at `start` for each zone."""
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=list(names), ProductDescriptions=["Linux/UNIX"], StartTime=start
    )
    return [entry for page in pages for entry in page.get("SpotPriceHistory", [])]


def newest_spot_prices(history: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """(instance type, zone) -> the newest usable Linux spot price; unusable entries are skipped."""
    newest: dict[tuple[str, str], tuple[dt.datetime, float]] = {}
    for entry in history:
        if entry.get("ProductDescription", "Linux/UNIX") not in LINUX:
            continue
        try:
            price = float(entry["SpotPrice"])
            key = (str(entry["InstanceType"]), str(entry["AvailabilityZone"]))
            stamp = _timestamp(entry["Timestamp"])
        except (KeyError, TypeError, ValueError):
            continue
        if not math.isfinite(price) or price <= 0:
            continue
        if key not in newest or stamp > newest[key][0]:
            newest[key] = (stamp, price)
    return {key: price for key, (_, price) in newest.items()}


def _timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def region_offers(
    *,
    region: str,
    types: Sequence[InstanceType],
    zones_by_type: Mapping[str, set[str]],
    spot_prices: Mapping[tuple[str, str], float],
    allowed_zones: set[str] | None,
    billing: Billing,
) -> list[Offer]:
    """Spot and on-demand offers of one region, one per (type, zone that offers it)."""
    out: list[Offer] = []
    for t in types:
        listed = t.region(region)
        if listed is None:
            continue
        for zone in sorted(zones_by_type.get(t.name, ())):
            if allowed_zones is not None and zone not in allowed_zones:
                continue
            api_price = spot_prices.get((t.name, zone))
            spot = t.offer(provider=PROVIDER, region=region, zone=zone, market=Market.SPOT, price=listed,
                           billing=billing, spot_price=api_price,
                           price_source="api" if api_price is not None else "catalog")
            base = t.offer(provider=PROVIDER, region=region, zone=zone, market=Market.ON_DEMAND, price=listed,
                           billing=billing)
            out.extend((spot, base))
    return out


@dataclass(slots=True)
class _Entry:
    at: float
    offers: list[Offer]


class OfferCache:
    """Offers per (resources, regions) for `ttl` seconds, and offers that just failed for capacity.

    The reconciler asks for offers every tick; EC2 prices move hourly at most, so a short cache
    saves two API calls per region per tick. A capacity failure marks its offer unavailable until
    its `retry_after` has passed, whatever the cache holds.
    """

    def __init__(self, now: Callable[[], float], ttl: float, capacity: CapacityMemory | None = None) -> None:
        self._now, self._ttl = now, ttl
        self._entries: dict[tuple[Resources, tuple[str, ...]], _Entry] = {}
        # Shared with the loop when it hands its memory over (`AwsProvider.share_capacity`).
        self.capacity = capacity if capacity is not None else CapacityMemory()
        self._lock = threading.Lock()  # launches may run in parallel threads

    def get(self, resources: Resources, regions: tuple[str, ...]) -> list[Offer] | None:
        with self._lock:
            entry = self._entries.get((resources, regions))
            if entry is None or self._now() - entry.at >= self._ttl:
                return None
            return self._mark(entry.offers)

    def put(self, resources: Resources, regions: tuple[str, ...], offers: list[Offer]) -> list[Offer]:
        with self._lock:
            self._entries[(resources, regions)] = _Entry(self._now(), offers)
            return self._mark(offers)

    def capacity_failed(self, offer: Offer, retry_after: float) -> None:
        self.capacity.refuse(offer.key, self._now() + retry_after)

    def _mark(self, offers: list[Offer]) -> list[Offer]:
        now = self._now()
        return [replace(o, available=False) if self.capacity.avoided(o.key, now) else o for o in offers]
