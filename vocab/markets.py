"""What can be bought: markets, GPU architectures, resources asked for, billing rules and offers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Market(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"


# Newer architectures can run what older ones can (bf16 needs ampere or newer).
ARCHITECTURES: tuple[str, ...] = ("kepler", "volta", "turing", "ampere", "ada", "hopper", "blackwell")


def architecture_rank(name: str) -> int:
    """Position of an architecture in `ARCHITECTURES`; ValueError names the known ones."""
    try:
        return ARCHITECTURES.index(name.lower())
    except ValueError:
        raise ValueError(f"unknown GPU architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


@dataclass(frozen=True, slots=True)
class Resources:
    """What a task needs from one instance. Empty `gpus` means any GPU model."""

    gpus: tuple[str, ...] = ()
    gpu_count: int = 1
    min_gpu_memory_gb: float | None = None
    min_architecture: str | None = None

    def admits(self, gpu: str, gpu_count: int, gpu_memory_gb: float, architecture: str | None) -> bool:
        """Whether a machine with these GPUs will do. An unknown architecture (None) cannot prove
        `min_architecture`, so it is refused whenever one is asked for."""
        if self.gpus and gpu.lower() not in {g.lower() for g in self.gpus}:
            return False
        if gpu_count < self.gpu_count:
            return False
        if self.min_gpu_memory_gb is not None and gpu_memory_gb < self.min_gpu_memory_gb:
            return False
        if self.min_architecture is None:
            return True
        required = architecture_rank(self.min_architecture)  # also validates the name
        return architecture is not None and architecture_rank(architecture) >= required


@dataclass(frozen=True, slots=True)
class Billing:
    """How a provider turns seconds into a bill (AWS and GCE: per second, one minute minimum)."""

    increment_seconds: int = 1
    minimum_seconds: int = 60

    def billed_seconds(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        seconds = max(seconds, float(self.minimum_seconds))
        increments = -(-seconds // self.increment_seconds)  # ceiling without floats drifting
        return float(increments * self.increment_seconds)


@dataclass(frozen=True, slots=True)
class Offer:
    """One purchasable option: provider x region/zone x instance type x market x price."""

    provider: str
    region: str
    zone: str | None
    instance_type: str
    market: Market
    price_per_hour: float
    gpu: str
    gpu_count: int
    gpu_memory_gb: float
    architecture: str
    on_demand_price_per_hour: float
    # Where the price came from: "catalog" (list price), "api" (provider's price history), "trace".
    price_source: str = "catalog"
    # Latest knowledge of spot capacity: None means unknown (try and see).
    available: bool | None = None
    billing: Billing = field(default_factory=Billing)

    @property
    def key(self) -> str:
        """Stable identity of the offer, used to remember capacity failures."""
        return offer_key(self.provider, self.region, self.zone, self.instance_type, self.market)


def offer_key(provider: str, region: str, zone: str | None, instance_type: str, market: Market) -> str:
    return f"{provider}/{region}/{zone or '-'}/{instance_type}/{market}"
