"""EC2's published readings of spot capacity per zone, through the real boto3 client against moto.

moto implements `describe_spot_price_history` (at one fixed price) and `describe_availability_zones`,
but not `get_spot_placement_scores`: an answer EC2 would give is served on the client's `before-send`
event as an HTTP response that botocore parses like any other, so the provider's own parsing runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from botocore.awsrequest import AWSResponse

from providers.aws.provider import AwsProvider
from providers.aws.settings import parse_aws_settings
from providers.aws.signals import score_signal
from providers.base import zone_signals
from tests.aws_support import REGION, AwsWorld
from vocab import Market, Offer, Resources, ZoneSignal

A10G = Resources(gpus=("A10G",))
EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"


class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def answer(client: Any, operation: str, items: str, set_name: str) -> list[int]:
    """Answer `operation` on `client` with EC2's XML holding `items`; returns a list that counts the answers."""
    served: list[int] = []

    def before_send(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        if event_name.split(".")[2] != operation:
            return None
        served.append(1)
        body = (f'<{operation}Response xmlns="{EC2_XMLNS}"><requestId>t</requestId>'
                f"<{set_name}>{items}</{set_name}></{operation}Response>")
        return AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, _Body(body.encode()))  # type: ignore[arg-type]

    client.meta.events.register("before-send", before_send)
    return served


def _provider(world: AwsWorld, **changes: Any) -> AwsProvider:
    settings = dataclasses.replace(world.settings, **changes)
    return AwsProvider(world.clock, settings, client_factory=world.factory)


def test_the_aws_provider_publishes_signals(aws_world: AwsWorld) -> None:
    offers = aws_world.provider.offers(A10G, [REGION])
    # moto's spot price (0.00001 $/h) is far below on-demand: no signal either way, and no call made.
    calls = sum(aws_world.faults.calls.values())
    assert zone_signals(aws_world.provider, offers) == {}
    assert sum(aws_world.faults.calls.values()) == calls


def test_a_spot_price_at_on_demand_reads_as_no_capacity(aws_world: AwsWorld) -> None:
    item = ("<item><instanceType>g5.xlarge</instanceType><productDescription>Linux/UNIX</productDescription>"
            "<spotPrice>9.5</spotPrice><timestamp>2026-12-01T00:00:00.000Z</timestamp>"
            "<availabilityZone>us-east-1a</availabilityZone></item>")
    answer(aws_world.client("ec2", REGION), "DescribeSpotPriceHistory", item, "spotPriceHistorySet")
    offers = aws_world.provider.offers(A10G, [REGION])
    spot_a = next(o for o in offers if o.market is Market.SPOT and o.zone == "us-east-1a"
                  and o.instance_type == "g5.xlarge")
    assert spot_a.price_source == "api" and spot_a.price_per_hour == 9.5 > spot_a.on_demand_price_per_hour
    signals = zone_signals(aws_world.provider, offers)
    assert set(signals) == {"us-east-1a"} and signals["us-east-1a"].available is False
    assert signals["us-east-1a"].source == "spot-price"
    # A catalog price (no price from EC2) is only a typical figure: it never signals.
    catalog = [dataclasses.replace(o, price_source="catalog") for o in offers]
    assert zone_signals(aws_world.provider, catalog) == {}


def _zone_ids(world: AwsWorld) -> dict[str, str]:
    reply = world.client("ec2", REGION).describe_availability_zones()
    return {z["ZoneName"]: z["ZoneId"] for z in reply["AvailabilityZones"]}


def test_placement_scores_are_read_by_zone_id_and_cached(aws_world: AwsWorld) -> None:
    provider = _provider(aws_world, placement_scores=True, placement_score_cache_seconds=600.0)
    ids = _zone_ids(aws_world)
    items = "".join(f"<item><region>{REGION}</region><availabilityZoneId>{ids[z]}</availabilityZoneId>"
                    f"<score>{score}</score></item>" for z, score in (("us-east-1a", 9), ("us-east-1b", 2)))
    served = answer(provider.client("ec2", REGION), "GetSpotPlacementScores", items, "spotPlacementScoreSet")
    offers = provider.offers(A10G, [REGION])
    signals = zone_signals(provider, offers)
    assert {z: s.available for z, s in signals.items()} == {"us-east-1a": True, "us-east-1b": False}
    assert signals["us-east-1a"] == ZoneSignal(True, "spot-placement-score", "us-east-1a: 9/10")
    # Every task of every tick asks; EC2 is asked once per period.
    for _ in range(5):
        zone_signals(provider, offers)
    assert len(served) == 1
    aws_world.clock.advance(601.0)
    zone_signals(provider, provider.offers(A10G, [REGION]))
    assert len(served) == 2


def test_placement_scores_are_off_unless_asked_for(aws_world: AwsWorld) -> None:
    served = answer(aws_world.client("ec2", REGION), "GetSpotPlacementScores", "", "spotPlacementScoreSet")
    zone_signals(aws_world.provider, aws_world.provider.offers(A10G, [REGION]))
    assert served == []


def test_scores_ec2_will_not_give_cost_one_call_a_period(aws_world: AwsWorld) -> None:
    """moto does not implement the call (as an account without the permission would refuse it): no
    signal, no failure, and no second call until the period is over."""
    provider = _provider(aws_world, placement_scores=True)
    offers = provider.offers(A10G, [REGION])
    assert zone_signals(provider, offers) == {}
    asked = aws_world.faults.calls["GetSpotPlacementScores"]
    assert asked >= 1
    zone_signals(provider, offers)
    assert aws_world.faults.calls["GetSpotPlacementScores"] == asked


def test_the_middle_of_the_scale_says_nothing() -> None:
    assert [score_signal("z", s).available for s in range(1, 11)] == [False] * 3 + [None] * 4 + [True] * 3


def test_other_providers_offers_are_not_read(aws_world: AwsWorld) -> None:
    offers = aws_world.provider.offers(A10G, [REGION])
    foreign: list[Offer] = [dataclasses.replace(o, provider="gcp", price_per_hour=99.0, price_source="api")
                            for o in offers]
    assert zone_signals(aws_world.provider, foreign) == {}


def test_settings_turn_placement_scores_on() -> None:
    doc = {"region": {"us-east-1": {"ami": "ami-1"}}, "placement_scores": True, "placement_score_cache_seconds": 60}
    settings = parse_aws_settings(doc)
    assert settings.placement_scores is True and settings.placement_score_cache_seconds == 60.0
    assert parse_aws_settings({"region": {"us-east-1": {"ami": "ami-1"}}}).placement_scores is False
