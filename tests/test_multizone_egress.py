"""The live loop prices a move's egress at the catalog's list price between the two regions.

`loop/zones.priced_moves` builds the multi-zone policy's `MoveCosts` from the catalog
(`Catalog.offer_egress_usd_per_gb`) instead of `Rates`' flat figures: a move to another region costs
the checkpoint (`Rates`' 50 GB: the job has no size estimate) at that pair's $/GB, in spot-price
hours of the cheapest spot offer; a move within a region costs nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.policy.multizone_base import MultiPolicy, MultiSituation, Placement, Rates
from orchestrator.core.policy.multizone_live import zones_of
from orchestrator.loop import zones as loop_zones
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace
from orchestrator.store import Store
from providers.catalog import load_catalog
from providers.sim import SimClock, SimProvider
from tests.test_zone_evidence import _job
from vocab import Market, Offer

GB = Rates().checkpoint_gb


def _spot(region: str, zone: str, price: float) -> Offer:
    return Offer(provider="aws", region=region, zone=zone, instance_type="p3.2xlarge", market=Market.SPOT,
                 price_per_hour=price, gpu="V100", gpu_count=1, gpu_memory_gb=16.0, architecture="volta",
                 on_demand_price_per_hour=3.06)


def test_a_move_costs_the_catalogs_egress_between_the_regions_and_nothing_within_one() -> None:
    offers = [_spot("us-east-1", "us-east-1a", 0.95), _spot("us-east-1", "us-east-1b", 0.92),
              _spot("us-east-2", "us-east-2a", 1.0), _spot("sa-east-1", "sa-east-1a", 1.1)]
    zones = zones_of(offers)
    moves = loop_zones.priced_moves(zones, offers)
    east1a, east1b, east2a, sa = range(4)
    spot_usd = 0.92  # the cheapest spot offer: the policy's unit
    catalog = load_catalog()
    assert moves.fee(east1a, east1b) == 0.0 and moves.transfer(east1a, east1b) == 0.0
    # AWS lists us-east-1 <-> us-east-2 at 0.01 $/GB, and prices copies out of sa-east-1 at 0.138:
    # neither is Rates' flat 0.02 / 0.08.
    assert catalog.egress_usd_per_gb("aws", "us-east-1", "us-east-2") == 0.01
    assert moves.fee(east1a, east2a) == pytest.approx(GB * 0.01 / spot_usd)
    assert moves.fee(sa, east1b) == pytest.approx(GB * 0.138 / spot_usd)
    assert moves.fee(east2a, sa) == pytest.approx(GB * 0.02 / spot_usd)
    assert moves.transfer(east1a, east2a) > 0.0
    assert moves.fee(None, sa) == 0.0  # the first launch copies nothing


GAP = 600.0
ZONES = {"us-east-1a": "us-east-1", "us-east-1b": "us-east-1", "us-east-2a": "us-east-2"}


def test_the_loops_policy_sees_the_priced_moves(sqlite_store: Store, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a tick of the real loop (sim provider, catalog type p3.2xlarge at AWS's prices): the
    multi-zone policy is handed the catalog's egress between us-east-1 and us-east-2 (AWS lists the pair at
    0.01 $/GB, half `Rates`' figure), none inside us-east-1."""
    seen: list[MultiSituation] = []
    real = loop_zones.get_multi_policy

    def spy(name: str) -> MultiPolicy:
        policy = real(name)

        def decide(m: MultiSituation) -> Placement:
            seen.append(m)
            return policy(m)

        return decide

    monkeypatch.setattr(loop_zones, "get_multi_policy", spy)
    clock = SimClock(1_700_000_000.0)
    sim = SimProvider(clock, {z: Trace(GAP, (1,) * 10) for z in ZONES}, zone_regions=ZONES)
    r = Reconciler(sqlite_store, {"sim": sim}, clock, tick_seconds=GAP, lease_seconds=1e12)
    job_id = _job(sqlite_store, tmp_path, regions=["us-east-1", "us-east-2"], market="auto", now=clock.now())
    job = sqlite_store.job(job_id)
    assert job is not None
    spec = job.spec
    r.tick()
    assert seen
    m = seen[0]
    names = [z.name for z in m.zones]
    a, b, west = names.index("us-east-1a"), names.index("us-east-1b"), names.index("us-east-2a")
    spot_usd = min(o.price_per_hour for o in sim.offers(spec.resources, []) if o.market is Market.SPOT)
    listed = load_catalog().egress_usd_per_gb("aws", "us-east-1", "us-east-2")
    assert listed == 0.01
    assert m.moves.fee(a, west) == pytest.approx(GB * listed / spot_usd)
    assert m.moves.fee(west, b) == pytest.approx(GB * listed / spot_usd)
    assert m.moves.fee(a, b) == 0.0
