"""The GPU catalog: instance types of AWS and GCP with their GPUs and public list prices.

The catalog is data (`providers/data/catalog.json`), read once. It is the one place prices come
from when no provider API answers, and the price list of the `local` and `sim` providers, so a run on
this machine costs what the real instance would. Matching a job's `Resources` against an instance type
lives here too, because every provider offers catalog types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources as importlib_resources
from typing import Any

from vocab import Billing, Market, Offer, Resources


@dataclass(frozen=True, slots=True)
class RegionPrice:
    region: str
    on_demand: float
    spot: float
    zones: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InstanceType:
    provider: str
    name: str
    gpu: str
    gpu_count: int
    gpu_memory_gb: float
    architecture: str
    vcpus: int
    memory_gb: float
    regions: tuple[RegionPrice, ...]

    def offer(self, *, provider: str, region: str, zone: str | None, market: Market, price: RegionPrice,
              billing: Billing, spot_price: float | None = None, price_source: str = "catalog",
              available: bool | None = None) -> Offer:
        """This type as an offer at `price`'s list prices (`spot_price`: a price from the provider's API)."""
        listed = price.spot if market is Market.SPOT else price.on_demand
        return Offer(
            provider=provider, region=region, zone=zone, instance_type=self.name, market=market,
            price_per_hour=spot_price if spot_price is not None and market is Market.SPOT else listed,
            gpu=self.gpu, gpu_count=self.gpu_count, gpu_memory_gb=self.gpu_memory_gb,
            architecture=self.architecture, on_demand_price_per_hour=price.on_demand,
            price_source=price_source, available=available, billing=billing,
        )

    def satisfies(self, resources: Resources) -> bool:
        return resources.admits(self.gpu, self.gpu_count, self.gpu_memory_gb, self.architecture)

    def region(self, name: str) -> RegionPrice | None:
        return next((r for r in self.regions if r.region == name), None)


@dataclass(frozen=True, slots=True)
class EgressPrices:
    """One provider's list prices, USD per GB, for copying data from one of its regions to another."""

    within_continent: float
    between_continents: float
    from_region: dict[str, float] = field(default_factory=dict)  # priced by the source region (AWS)
    pairs: dict[frozenset[str], float] = field(default_factory=dict)  # either direction


@dataclass(frozen=True, slots=True)
class Catalog:
    types: tuple[InstanceType, ...]
    billing: dict[str, Billing]
    as_of: str
    egress: dict[str, EgressPrices] = field(default_factory=dict)
    continents: dict[str, str] = field(default_factory=dict)  # a region name's first part -> continent

    def of(self, provider: str) -> list[InstanceType]:
        return [t for t in self.types if t.provider == provider]

    def get(self, provider: str, name: str) -> InstanceType | None:
        return next((t for t in self.types if t.provider == provider and t.name == name), None)

    def find(self, name: str) -> InstanceType | None:
        """An instance type by name alone (names do not collide between AWS and GCP)."""
        return next((t for t in self.types if t.name == name), None)

    def gpu_models(self) -> set[str]:
        return {t.gpu.lower() for t in self.types}

    def billing_for(self, provider: str) -> Billing:
        return self.billing.get(provider, Billing())

    def continent(self, region: str) -> str:
        """A region's continent from its name's first part (`europe-west1`, `eu-west-1`: europe)."""
        head = region.split("-")[0]
        return self.continents.get(head, head)

    def egress_usd_per_gb(self, provider: str, source: str, destination: str) -> float | None:
        """What copying one GB from region `source` to region `destination` of `provider` costs (the
        checkpoint's transfer on a move between regions); 0 within a region; None when the catalog has
        no egress prices for the provider (`local`, `sim`: ask for the provider whose prices they use)."""
        if source == destination:
            return 0.0
        prices = self.egress.get(provider)
        if prices is None:
            return None
        pair = prices.pairs.get(frozenset((source, destination)))
        if pair is not None:
            return pair
        if source in prices.from_region:
            return prices.from_region[source]
        same = self.continent(source) == self.continent(destination)
        return prices.within_continent if same else prices.between_continents

    def offer_egress_usd_per_gb(self, offer: Offer, destination: str) -> float | None:
        """`egress_usd_per_gb` from the offer's region to `destination`, for the provider whose prices the
        offer carries: its own, or for `local` and `sim` (catalog types at a real provider's prices) the
        provider of its instance type. None: no recorded price."""
        provider = offer.provider
        if provider not in self.egress:
            listed = self.find(offer.instance_type)
            provider = listed.provider if listed is not None else provider
        return self.egress_usd_per_gb(provider, offer.region, destination)


def _parse(doc: dict[str, Any]) -> Catalog:
    types = tuple(
        InstanceType(
            provider=t["provider"],
            name=t["name"],
            gpu=t["gpu"],
            gpu_count=int(t["gpu_count"]),
            gpu_memory_gb=float(t["gpu_memory_gb"]),
            architecture=t["architecture"],
            vcpus=int(t["vcpus"]),
            memory_gb=float(t["memory_gb"]),
            regions=tuple(
                RegionPrice(r, float(p["on_demand"]), float(p["spot"]), tuple(p.get("zones", ())))
                for r, p in t["regions"].items()
            ),
        )
        for t in doc["instance_types"]
    )
    billing = {p: Billing(int(b["increment_seconds"]), int(b["minimum_seconds"])) for p, b in doc["billing"].items()}
    egress_doc = doc.get("egress", {})
    egress = {
        name: EgressPrices(
            within_continent=float(e["within_continent"]), between_continents=float(e["between_continents"]),
            from_region={r: float(v) for r, v in e.get("from_region", {}).items()},
            pairs={frozenset(p["regions"]): float(p["usd_per_gb"]) for p in e.get("pairs", [])},
        )
        for name, e in egress_doc.items() if name not in ("about", "continents")
    }
    return Catalog(types=types, billing=billing, as_of=str(doc.get("as_of", "")), egress=egress,
                   continents=dict(egress_doc.get("continents", {})))


@cache
def load_catalog() -> Catalog:
    text = importlib_resources.files("providers").joinpath("data/catalog.json").read_text()
    return _parse(json.loads(text))


def catalog_offers(
    *,
    provider: str,
    types: Iterable[InstanceType],
    resources: Resources,
    regions: Sequence[str],
    billing: Billing,
) -> list[Offer]:
    """Offers at list prices for every matching type, region (all when `regions` is empty), zone and market."""
    return [
        t.offer(provider=provider, region=rp.region, zone=zone, market=market, price=rp, billing=billing)
        for t in types if t.satisfies(resources)
        for rp in t.regions if not regions or rp.region in regions
        for zone in (rp.zones or (None,))
        for market in (Market.SPOT, Market.ON_DEMAND)
    ]


_GCP_ZONE = re.compile(r"^(.+\d)-[a-z]$")
_AWS_ZONE = re.compile(r"^(.+-\d+)[a-z]$")


def region_of_zone(zone: str) -> str:
    """The region of a zone name: GCP `us-central1-a` -> `us-central1`, AWS `us-east-1f` -> `us-east-1`;
    a name of neither form is its own region."""
    gcp = _GCP_ZONE.match(zone)
    if gcp:
        return gcp.group(1)
    aws = _AWS_ZONE.match(zone)
    return aws.group(1) if aws else zone
