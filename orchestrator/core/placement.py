"""Which offer a task gets, and whether a job can be placed at all (checked at submission)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.core.cost import idle_price_of
from orchestrator.core.policy.multizone_base import Zone
from orchestrator.core.policy.multizone_live import zones_of
from orchestrator.core.spec import JobSpec, SpecError
from vocab import Market, Offer


def usable(offers: Iterable[Offer], market: Market, avoid: Mapping[str, float], now: float) -> list[Offer]:
    """Offers of `market` not known to be out of capacity, cheapest first (ties: stable order)."""
    out = [o for o in offers if o.market is market and o.available is not False and avoid.get(o.key, 0.0) <= now]
    return sorted(out, key=lambda o: o.price_per_hour)


def cheapest(offers: Iterable[Offer], market: Market) -> Offer | None:
    return min((o for o in offers if o.market is market), key=lambda o: o.price_per_hour, default=None)


@dataclass(frozen=True, slots=True)
class OfferSummary:
    """What every step of every job with the same offers derives from them at one moment: worked out
    once per offer list and capacity memory state in a tick, not once per task (10,000 tasks asked
    for the same three figures 10,000 times)."""

    spot: list[Offer]  # usable spot offers, cheapest first (`usable`)
    low_spot: Offer | None  # the cheapest spot offer, usable or not
    low_on_demand: Offer | None
    zones: tuple[Zone, ...] = ()  # the zones with a spot offer (`multizone_live.zones_of`)

    def idle_price(self, spec: JobSpec) -> float | None:
        """`status.idle_price` from the cheapest offers already found (the same rule, not a second one)."""
        return idle_price_of(spec, self.low_spot, self.low_on_demand)

    @property
    def price_ratio(self) -> float:
        """On-demand over spot price, the policy's measure of what waiting for spot saves (3 without both)."""
        if self.low_spot is None or self.low_on_demand is None:
            return 3.0
        return self.low_on_demand.price_per_hour / self.low_spot.price_per_hour


def summarize(offers: Sequence[Offer], avoid: Mapping[str, float], now: float) -> OfferSummary:
    return OfferSummary(usable(offers, Market.SPOT, avoid, now), cheapest(offers, Market.SPOT),
                        cheapest(offers, Market.ON_DEMAND), zones_of(offers))


def markets_allowed(spec: JobSpec) -> tuple[Market, ...]:
    if spec.schedule.market == "spot":
        return (Market.SPOT,)
    if spec.schedule.market == "on-demand":
        return (Market.ON_DEMAND,)
    return (Market.SPOT, Market.ON_DEMAND)


def check_placeable(spec: JobSpec, offers: Sequence[Offer], *, source: str, known_gpus: set[str]) -> None:
    """Refuse, at submission, a job that no offer can run or whose budget cannot pay for any run."""
    for gpu in spec.resources.gpus:
        if gpu.lower() not in known_gpus:
            raise SpecError(source, "resources.gpu",
                            f"no offer has GPU {gpu!r} (known: {', '.join(sorted(known_gpus))})")
    allowed = markets_allowed(spec)
    candidates = [o for o in offers if o.market in allowed]
    if not candidates:
        where = ", ".join(spec.placement.regions) or "any region"
        raise SpecError(source, "resources",
                        f"no instance type of {', '.join(spec.placement.providers)} in {where} satisfies "
                        f"{_describe(spec)} on {' or '.join(allowed)}")
    budget = spec.schedule.budget_usd
    if budget is not None:
        # A gang pays every node: its work (node-hours / nodes) costs the same on fewer nodes of an elastic one.
        low = min(o.price_per_hour for o in candidates) * spec.gang.nodes
        # Every shard of an array job pays its own restart overhead on its own instance.
        shards = spec.array.shards if spec.array else 1
        hours = spec.schedule.estimated_hours + shards * spec.schedule.restart_overhead_hours
        if budget < low * hours:
            nodes = f" ({spec.gang.nodes} nodes)" if spec.gang.is_gang else ""
            raise SpecError(source, "schedule.budget_usd",
                            f"${budget:.2f} is below the cheapest possible run: {hours:g} h at "
                            f"${low:.4f}/h{nodes} = ${low * hours:.2f}")


def _describe(spec: JobSpec) -> str:
    r = spec.resources
    parts = [f"{r.gpu_count} x {'/'.join(r.gpus) or 'any GPU'}"]
    if r.min_gpu_memory_gb:
        parts.append(f">= {r.min_gpu_memory_gb:g} GB each")
    if r.min_architecture:
        parts.append(f"{r.min_architecture} or newer")
    return ", ".join(parts)
