"""The `Provider` contract, stated once and run against every provider (design.md, "Providers").

The reconciler relies on exactly these promises, whatever the cloud: offers that say what they sell
and at what price, a launch that is idempotent on the attempt id and tags what it makes, one listing
that shows each instance once, a terminate that can be repeated, a reclamation reported as
PREEMPTED (so the task resumes instead of counting a failure), and no error that is not one of
`providers.base`'s. Where a provider misses one, the gap is listed in `KNOWN_GAPS` and the test is a
strict xfail: it turns red the day the gap is closed, so the entry gets removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import Provider
from providers.catalog import load_catalog
from tests.conformance_support import World, build, fields_of
from vocab import (
    Abilities,
    EndReason,
    Instance,
    LaunchRequest,
    Market,
    Notice,
    Offer,
    PermanentError,
    ProviderError,
    Resources,
    architecture_rank,
)

PROVIDERS = ["local", "aws", "kubernetes", "gcp", "sim"]

# (test name, provider) -> why the provider fails it today, and the exception it fails with (any other
# failure is a real one). Each is a strict xfail, reported to the lead.
KNOWN_GAPS: dict[tuple[str, str], tuple[str, type[BaseException]]] = {}


@pytest.fixture(params=PROVIDERS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with build(request.param, request, tmp_path) as w:
        gap = KNOWN_GAPS.get((request.node.originalname, w.name))
        if gap is not None:
            request.applymarker(pytest.mark.xfail(reason=gap[0], raises=gap[1], strict=True))
        try:
            yield w
        finally:
            w.terminate_everything()


def offer_for(world: World, market: Market = Market.SPOT) -> Offer:
    offers = world.provider.offers(Resources(gpus=(world.gpu,)), world.regions)
    return min((o for o in offers if o.market is market), key=lambda o: o.key)


def request_for(world: World, attempt: str = "conf-att-1", market: Market = Market.SPOT) -> LaunchRequest:
    return LaunchRequest(job_id="conf-job", task_id="conf-task", attempt_id=attempt, attempt_number=0,
                         offer=offer_for(world, market), command=world.command, env={"CONFORMANCE": "1"},
                         checkpoint_uri=world.checkpoint_uri, grace_seconds=2.0, estimated_hours=1.0)


def listed(world: World, instance_id: str) -> list[Instance]:
    return [i for i in world.provider.instances() if i.instance_id == instance_id]


def satisfies(offer: Offer, r: Resources) -> bool:
    if r.gpus and offer.gpu.lower() not in {g.lower() for g in r.gpus}:
        return False
    if offer.gpu_count < r.gpu_count:
        return False
    if r.min_gpu_memory_gb is not None and offer.gpu_memory_gb < r.min_gpu_memory_gb:
        return False
    return r.min_architecture is None or architecture_rank(offer.architecture) >= architecture_rank(r.min_architecture)


# What each provider says it can do (`providers.base.Abilities`): the loop reads only this record.
ABILITIES = {
    "aws": Abilities(replaces_on_notice=True, max_gang_nodes=128),
    "kubernetes": Abilities(bills_from_start=True, stops_gracefully=True, max_gang_nodes=128),
    "local": Abilities(offers_per_job=True, max_gang_nodes=128),
    "gcp": Abilities(max_gang_nodes=128),
    "sim": Abilities(),
}


def test_declares_its_abilities_in_one_typed_record(world: World) -> None:
    assert type(world.provider.abilities) is Abilities
    assert world.provider.abilities == ABILITIES[world.name]


def test_an_instance_that_does_not_stop_gracefully_is_gone_once_terminated(world: World) -> None:
    """`stops_gracefully` False promises the loop that a terminated instance is no longer alive in the
    next listing (the attempt ends when asked); True, that it is seen stopping, then gone."""
    inst = world.provider.launch(request_for(world, "conf-att-stop"))
    world.provider.terminate(inst)
    after = listed(world, inst.instance_id)
    if not world.provider.abilities.stops_gracefully:
        assert not any(i.alive for i in after), after


# --- offers ----------------------------------------------------------------------------------------


def test_is_a_provider_named_as_its_offers(world: World) -> None:
    assert isinstance(world.provider, Provider)
    assert world.provider.name == world.name
    assert {o.provider for o in world.provider.offers(Resources(), [])} == {world.name}


def test_offers_match_the_resources(world: World) -> None:
    everything = world.provider.offers(Resources(), [])
    assert everything, "no offers at all"
    narrowed = False
    for wanted in (Resources(gpus=(world.gpu,)), Resources(gpus=(world.gpu.lower(),)), Resources(gpu_count=4),
                   Resources(min_gpu_memory_gb=20.0), Resources(min_architecture="ampere")):
        got = world.provider.offers(wanted, [])
        assert all(satisfies(o, wanted) for o in got), f"{wanted}: {[o.key for o in got if not satisfies(o, wanted)]}"
        assert {o.key for o in got} == {o.key for o in everything if satisfies(o, wanted)}, wanted
        narrowed = narrowed or len(got) < len(everything)
    assert narrowed, "no filter excluded anything: the test proves nothing for this world"
    assert world.provider.offers(Resources(gpus=(world.gpu,)), world.regions), f"no {world.gpu} in {world.regions}"
    assert world.provider.offers(Resources(gpus=("NoSuchGPU",)), []) == []
    assert world.provider.offers(Resources(), ["no-such-region-1"]) == []


def test_offers_describe_their_type_as_the_catalog_does(world: World) -> None:
    for offer in world.provider.offers(Resources(), []):
        itype = load_catalog().find(offer.instance_type)
        if itype is not None:
            assert fields_of(offer) == {"gpu": itype.gpu, "gpu_count": itype.gpu_count,
                                        "gpu_memory_gb": itype.gpu_memory_gb,
                                        "architecture": itype.architecture}, offer.key


def test_offers_carry_both_markets_priced_and_the_on_demand_list_price(world: World) -> None:
    places: dict[tuple[str, str | None, str], dict[Market, Offer]] = {}
    for offer in world.provider.offers(Resources(), []):
        by_market = places.setdefault((offer.region, offer.zone, offer.instance_type), {})
        assert offer.market not in by_market, f"{offer.key} offered twice"
        by_market[offer.market] = offer
    assert places
    for place, by_market in places.items():
        assert set(by_market) == {Market.SPOT, Market.ON_DEMAND}, place
        spot, on_demand = by_market[Market.SPOT], by_market[Market.ON_DEMAND]
        assert spot.price_per_hour > 0 and on_demand.price_per_hour > 0, place
        expected = world.list_price(on_demand)
        assert on_demand.price_per_hour == pytest.approx(expected), place
        assert on_demand.on_demand_price_per_hour == pytest.approx(expected), place
        assert spot.on_demand_price_per_hour == pytest.approx(expected), place


def test_offers_take_the_job_id_the_reconciler_passes(world: World) -> None:
    plain = world.provider.offers(Resources(gpus=(world.gpu,)), world.regions)
    for_job = world.provider.offers(Resources(gpus=(world.gpu,)), world.regions, job_id="conf-job")
    assert {o.key for o in for_job} == {o.key for o in plain}


# --- launch and list -------------------------------------------------------------------------------


def test_launch_returns_an_alive_instance_tagged_with_its_ids(world: World) -> None:
    request = request_for(world)
    inst = world.provider.launch(request)
    assert inst.alive, inst
    assert (inst.provider, inst.job_id, inst.task_id, inst.attempt_id) == (
        world.name, "conf-job", "conf-task", "conf-att-1")
    assert (inst.market, inst.instance_type) == (Market.SPOT, request.offer.instance_type)
    assert inst.instance_id


def test_a_second_launch_of_the_attempt_returns_the_same_instance(world: World) -> None:
    first = world.provider.launch(request_for(world))
    again = world.provider.launch(request_for(world))
    assert again.instance_id == first.instance_id
    assert again.alive
    mine = [i for i in world.provider.instances() if i.attempt_id == "conf-att-1"]
    assert [i.instance_id for i in mine] == [first.instance_id], "a second instance was made"


def test_instances_list_each_launch_once_with_its_attempt(world: World) -> None:
    a = world.provider.launch(request_for(world, "conf-att-1"))
    b = world.provider.launch(request_for(world, "conf-att-2", Market.ON_DEMAND))
    assert a.instance_id != b.instance_id
    seen = world.provider.instances()
    ids = [i.instance_id for i in seen]
    assert sorted(ids) == sorted({*ids}), f"listed twice: {ids}"
    by_id = {i.instance_id: i for i in seen}
    assert by_id[a.instance_id].attempt_id == "conf-att-1" and by_id[a.instance_id].market is Market.SPOT
    assert by_id[b.instance_id].attempt_id == "conf-att-2" and by_id[b.instance_id].market is Market.ON_DEMAND
    assert by_id[a.instance_id].alive and by_id[b.instance_id].alive
    assert by_id[a.instance_id].job_id == "conf-job" and by_id[a.instance_id].task_id == "conf-task"


# --- terminate -------------------------------------------------------------------------------------


def test_terminate_is_idempotent_and_ends_the_instance(world: World) -> None:
    inst = world.provider.launch(request_for(world))
    world.provider.terminate(inst)
    world.provider.terminate(inst)
    after = listed(world, inst.instance_id)  # a provider may forget a terminated instance at once
    assert len(after) <= 1 and not any(i.alive for i in after), after
    assert all(i.reason is not EndReason.PREEMPTED for i in after), "orch's own terminate read as a reclamation"
    world.provider.terminate(inst)  # and once more, now that it is gone


def test_terminating_an_instance_never_made_is_not_an_error(world: World) -> None:
    world.provider.terminate(world.unknown)
    assert listed(world, world.unknown.instance_id) == []


# --- reclamation -----------------------------------------------------------------------------------


def test_a_reclaimed_spot_instance_is_reported_preempted(world: World) -> None:
    survivor = world.provider.launch(request_for(world, "conf-att-od", Market.ON_DEMAND))
    inst = world.provider.launch(request_for(world))
    world.reclaim(inst)
    [seen] = listed(world, inst.instance_id)
    assert not seen.alive and seen.reason is EndReason.PREEMPTED, seen
    assert seen.attempt_id == "conf-att-1"
    [other] = listed(world, survivor.instance_id)
    assert other.alive, "reclaiming spot capacity ended an on-demand instance"
    assert all(isinstance(n, Notice) and n.provider == world.name for n in world.provider.notices())
    world.provider.terminate(seen)  # what the reconciler does next: release what is left, quietly


# --- errors ----------------------------------------------------------------------------------------


def test_an_offer_of_another_provider_is_refused_permanently(world: World) -> None:
    foreign = dataclasses.replace(offer_for(world), provider="elsewhere")
    request = dataclasses.replace(request_for(world), offer=foreign)
    with pytest.raises(PermanentError):
        world.provider.launch(request)
    assert [i for i in world.provider.instances() if i.alive] == []


def test_an_offer_outside_the_provider_raises_only_provider_errors(world: World) -> None:
    own = offer_for(world)
    nowhere = dataclasses.replace(own, region="nowhere-1", zone="nowhere-1a")
    try:
        world.provider.launch(dataclasses.replace(request_for(world), offer=nowhere))
    except ProviderError:
        pass  # refusing is right; anything else (KeyError, a vendor exception) escapes the seam
    else:
        pytest.fail(f"{world.name} launched an offer in a region it does not have")
