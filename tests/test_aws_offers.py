"""AWS offers against moto over HTTP: catalog types narrowed to offering zones, priced by spot history."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from providers.aws.offers import newest_spot_prices
from providers.catalog import load_catalog
from tests.aws_support import OTHER_REGION, REGION, AwsWorld
from vocab import Market, Resources

A10G = Resources(gpus=("A10G",))


def test_offers_are_narrowed_to_zones_that_have_the_type(aws_world: AwsWorld) -> None:
    offers = aws_world.provider.offers(A10G, [REGION, OTHER_REGION])
    types = {o.instance_type for o in offers}
    assert types == {"g5.xlarge", "g5.12xlarge"} & types and "g5.xlarge" in types
    east = {o.zone for o in offers if o.region == REGION}
    # us-east-1 is configured with subnets in two zones: offers elsewhere could not be launched.
    assert east == {"us-east-1a", "us-east-1b"}
    west = {o.zone for o in offers if o.region == OTHER_REGION}
    assert west and all(z is not None and z.startswith(OTHER_REGION) for z in west)
    ec2 = aws_world.client("ec2", OTHER_REGION)
    listed = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["g5.xlarge"]}]
    )["InstanceTypeOfferings"]
    assert {o.zone for o in offers if o.region == OTHER_REGION and o.instance_type == "g5.xlarge"} == {
        item["Location"] for item in listed
    }


def test_types_ec2_does_not_offer_in_a_region_are_left_out(aws_world: AwsWorld) -> None:
    # moto's offering data (like some real regions) has no p3.2xlarge in us-east-1; the catalog does.
    assert load_catalog().get("aws", "p3.2xlarge") is not None
    offers = aws_world.provider.offers(Resources(gpus=("V100",)), [REGION])
    assert "p3.2xlarge" not in {o.instance_type for o in offers}


def test_spot_is_priced_by_the_api_and_on_demand_by_the_catalog(aws_world: AwsWorld) -> None:
    offers = aws_world.provider.offers(A10G, [REGION])
    listed = load_catalog().get("aws", "g5.xlarge")
    assert listed is not None
    region_price = listed.region(REGION)
    assert region_price is not None
    spot = [o for o in offers if o.instance_type == "g5.xlarge" and o.market is Market.SPOT]
    on_demand = [o for o in offers if o.instance_type == "g5.xlarge" and o.market is Market.ON_DEMAND]
    assert len(spot) == len(on_demand) == 2
    assert all(o.price_source == "api" and o.price_per_hour == pytest.approx(0.00001) for o in spot)
    assert all(o.price_source == "catalog" and o.price_per_hour == region_price.on_demand for o in on_demand)
    assert all(o.on_demand_price_per_hour == region_price.on_demand for o in spot)


def test_catalog_prices_stand_in_when_the_api_answers_nothing(aws_world: AwsWorld) -> None:
    aws_world.faults.empty("DescribeSpotPriceHistory")
    offers = aws_world.provider.offers(A10G, [REGION])
    spot = [o for o in offers if o.market is Market.SPOT]
    assert spot and all(o.price_source == "catalog" for o in spot)
    listed = load_catalog().get("aws", "g5.xlarge")
    assert listed is not None and listed.region(REGION) is not None
    g5 = next(o for o in spot if o.instance_type == "g5.xlarge")
    assert g5.price_per_hour == listed.region(REGION).spot  # type: ignore[union-attr]


def test_catalog_prices_stand_in_when_prices_may_not_be_read(aws_world: AwsWorld) -> None:
    aws_world.faults.fail("DescribeSpotPriceHistory", "UnauthorizedOperation", status=403)
    offers = aws_world.provider.offers(A10G, [REGION])
    assert offers and all(o.price_source == "catalog" for o in offers)


def test_offers_are_cached_for_a_short_time(aws_world: AwsWorld) -> None:
    first = aws_world.provider.offers(A10G, [REGION])
    calls = sum(aws_world.faults.calls.values())
    assert calls == 2  # offerings and spot prices, one page each
    assert aws_world.provider.offers(A10G, [REGION]) == first
    assert sum(aws_world.faults.calls.values()) == calls
    aws_world.clock.advance(aws_world.settings.offer_cache_seconds + 1)
    aws_world.provider.offers(A10G, [REGION])
    assert sum(aws_world.faults.calls.values()) == 2 * calls


def test_unconfigured_regions_get_no_offers(aws_world: AwsWorld) -> None:
    assert aws_world.provider.offers(A10G, ["eu-west-1"]) == []
    assert sum(aws_world.faults.calls.values()) == 0


def test_newest_spot_price_per_zone_wins() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    history: list[dict[str, Any]] = [
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "a", "SpotPrice": "0.50", "Timestamp": t0},
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "a", "SpotPrice": "0.40", "Timestamp": t0 + dt.timedelta(1)},
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "a", "SpotPrice": "0.45", "Timestamp": t0 - dt.timedelta(1)},
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "b", "SpotPrice": "0.60", "Timestamp": "2026-01-01T00:00Z"},
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "c", "SpotPrice": "0", "Timestamp": t0},
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "d", "SpotPrice": "nan", "Timestamp": t0},
        {
            "InstanceType": "g5.xlarge",
            "AvailabilityZone": "e",
            "SpotPrice": "0.3",
            "Timestamp": t0,
            "ProductDescription": "Windows",
        },
        {"InstanceType": "g5.xlarge", "SpotPrice": "0.3", "Timestamp": t0},
    ]
    assert newest_spot_prices(history) == {("g5.xlarge", "a"): 0.40, ("g5.xlarge", "b"): 0.60}
