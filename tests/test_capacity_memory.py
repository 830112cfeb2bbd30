"""The one capacity memory: the loop's avoidance and the adapters' stockouts in one place."""

from __future__ import annotations

from orchestrator.core.placement import usable
from vocab import CapacityMemory, Market, Offer


def _offer(zone: str, market: Market = Market.SPOT) -> Offer:
    return Offer(provider="p", region="r", zone=zone, instance_type="t", market=market, price_per_hour=1.0,
                 gpu="V100", gpu_count=1, gpu_memory_gb=16, architecture="volta", on_demand_price_per_hour=3.0)


def test_the_longer_avoidance_wins_and_expires() -> None:
    m = CapacityMemory()
    m.refuse("a", 100.0)
    m.refuse("a", 50.0)  # a shorter, later report does not shorten what is known
    assert m["a"] == 100.0 and m.avoided("a", 99.0) and not m.avoided("a", 100.0)
    m.forget_before(100.0)
    assert len(m) == 0 and "a" not in m


def test_the_pure_core_reads_it_as_a_mapping() -> None:
    a, b = _offer("a"), _offer("b")
    m = CapacityMemory()
    m.refuse_all([a.key], 10.0)
    assert usable([a, b], Market.SPOT, m, now=5.0) == [b]
    assert usable([a, b], Market.SPOT, m, now=10.0) == [a, b]
