"""Placement: which offers are usable now, cheapest first, which markets a job may use, and the
refusals at submission (check_placeable) of the example job.toml of test_spec."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.core.placement import cheapest, check_placeable, markets_allowed, usable
from orchestrator.core.spec import JobSpec, PlacementSpec, ScheduleSpec, SpecError
from providers.catalog import catalog_offers, load_catalog
from tests.test_spec import GOOD, SOURCE, edit, parse
from vocab import Market, Offer, Resources


def catalog(resources: Resources, regions: tuple[str, ...] = ()) -> list[Offer]:
    cat = load_catalog()
    return catalog_offers(provider="local", types=cat.types, resources=resources, regions=regions,
                          billing=cat.billing_for("aws"))


def job(market: str = "auto", gpus: tuple[str, ...] = ("A100",), regions: tuple[str, ...] = ()) -> JobSpec:
    return JobSpec(name="j", command=("x",), resources=Resources(gpus=gpus),
                   schedule=ScheduleSpec(estimated_hours=5.0, market=market),
                   placement=PlacementSpec(regions=regions))


def test_usable_is_cheapest_first_and_skips_what_cannot_work() -> None:
    offers = catalog(Resources(gpus=("A100",)))
    spot = usable(offers, Market.SPOT, {}, now=0.0)
    assert spot and all(o.market is Market.SPOT for o in spot)
    assert [o.price_per_hour for o in spot] == sorted(o.price_per_hour for o in spot)
    first = spot[0]
    # A capacity failure hides the offer until its retry time; `available=False` hides it outright.
    assert first not in usable(offers, Market.SPOT, {first.key: 10.0}, now=5.0)
    assert first in usable(offers, Market.SPOT, {first.key: 10.0}, now=10.0)
    gone = [replace(o, available=False) for o in offers]
    assert usable(gone, Market.SPOT, {}, now=0.0) == []


def test_cheapest_by_market() -> None:
    offers = catalog(Resources(gpus=("V100",)))
    low_spot, low_od = cheapest(offers, Market.SPOT), cheapest(offers, Market.ON_DEMAND)
    assert low_spot is not None and low_od is not None
    assert low_spot.price_per_hour == min(o.price_per_hour for o in offers if o.market is Market.SPOT)
    assert low_spot.price_per_hour < low_od.price_per_hour
    assert cheapest([], Market.SPOT) is None


def test_markets_allowed() -> None:
    assert markets_allowed(job("auto")) == (Market.SPOT, Market.ON_DEMAND)
    assert markets_allowed(job("spot")) == (Market.SPOT,)
    assert markets_allowed(job("on-demand")) == (Market.ON_DEMAND,)


def test_regions_narrow_the_offers_and_an_empty_region_is_refused() -> None:
    spec = job(regions=("us-west-2",))
    offers = catalog(spec.resources, spec.placement.regions)
    assert offers and {o.region for o in offers} == {"us-west-2"}
    check_placeable(spec, offers, source="j.toml", known_gpus=load_catalog().gpu_models())
    nowhere = job(regions=("mars-north-1",))
    with pytest.raises(SpecError, match="in mars-north-1 satisfies 1 x A100"):
        check_placeable(nowhere, catalog(nowhere.resources, nowhere.placement.regions), source="j.toml",
                        known_gpus=load_catalog().gpu_models())


def test_gpu_names_are_matched_without_case() -> None:
    spec = job(gpus=("a100",))
    offers = catalog(spec.resources)
    assert offers
    check_placeable(spec, offers, source="j.toml", known_gpus=load_catalog().gpu_models())


# --- the example at submission ---------------------------------------------------------------


def _offers(spec: JobSpec) -> list[Offer]:
    catalog = load_catalog()
    return catalog_offers(provider="local", types=catalog.types, resources=spec.resources,
                          regions=spec.placement.regions, billing=catalog.billing_for("aws"))


def test_check_placeable_accepts_the_example() -> None:
    spec = parse(GOOD)
    offers = _offers(spec)
    assert {o.gpu for o in offers} == {"V100"}
    check_placeable(spec, offers, source=SOURCE, known_gpus=load_catalog().gpu_models())


def test_check_placeable_refuses_a_budget_below_the_cheapest_run() -> None:
    spec = parse(edit("budget_usd = 80", "budget_usd = 10"))
    offers = _offers(spec)
    low = min(o.price_per_hour for o in offers)
    assert low * 39.1 > 10  # the premise: even the cheapest spot V100 costs more than $10
    with pytest.raises(SpecError) as info:
        check_placeable(spec, offers, source=SOURCE, known_gpus=load_catalog().gpu_models())
    assert info.value.field == "schedule.budget_usd"
    assert f"${low * 39.1:.2f}" in str(info.value)


def test_check_placeable_prices_one_restart_per_shard() -> None:
    spec = parse(GOOD)
    low = min(o.price_per_hour for o in _offers(spec))
    # Enough for the work and one restart, not for the ten restarts of ten shards.
    budget = low * (39 + 0.1 * 5)
    array = parse(edit("budget_usd = 80", f"budget_usd = {budget}") + "[array]\ncount = 10\nshard_size = 1\n")
    check_placeable(parse(edit("budget_usd = 80", f"budget_usd = {budget}")), _offers(spec), source=SOURCE,
                    known_gpus=load_catalog().gpu_models())
    with pytest.raises(SpecError, match="below the cheapest possible run"):
        check_placeable(array, _offers(spec), source=SOURCE, known_gpus=load_catalog().gpu_models())


def test_check_placeable_refuses_a_gpu_no_offer_has() -> None:
    spec = parse(edit('gpu = "V100"', 'gpu = "Z9000"'))
    assert _offers(spec) == []
    with pytest.raises(SpecError) as info:
        check_placeable(spec, _offers(spec), source=SOURCE, known_gpus=load_catalog().gpu_models())
    assert info.value.field == "resources.gpu"
    assert "'Z9000'" in str(info.value)


def test_check_placeable_refuses_resources_no_instance_meets() -> None:
    spec = parse(edit("gpu_count = 1", "gpu_count = 64"))
    with pytest.raises(SpecError) as info:
        check_placeable(spec, _offers(spec), source=SOURCE, known_gpus=load_catalog().gpu_models())
    assert info.value.field == "resources"
    assert "64 x V100" in str(info.value)


def test_check_placeable_respects_the_market() -> None:
    spec = parse(edit('policy = "uniform-progress"\n', "", edit('market = "auto"', 'market = "on-demand"')))
    spot_only = [o for o in _offers(spec) if o.market is Market.SPOT]
    with pytest.raises(SpecError, match="on-demand"):
        check_placeable(spec, spot_only, source=SOURCE, known_gpus=load_catalog().gpu_models())
