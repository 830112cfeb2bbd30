"""Where a campaign's new workers go, and how fast its items are seen to run: the rules as rules.

`core.campaign_zones`: a new spot worker of a campaign with time to spare launches only in a zone whose
spot has settled (up for `SETTLE_OVERHEADS` restart overheads since it came back or reclaimed one of
the campaign's workers), and there only where the campaign has the fewest spot workers. Without these
rules bench/campaign.py's 24 h campaign where spot runs out cost 1.194 x the all-spot bound (73
reclamations, nearly all in zones minutes after they came back); tests/test_bench_campaign.py checks
the effect through the real loop. `core.campaign_plan`: the rate per GPU type from the store sizes the
workers.
"""

from __future__ import annotations

import dataclasses
import json
import math

from orchestrator.core.campaign_plan import (
    CampaignFacts,
    offers_for_items,
    rates_by_gpu,
    seconds_per_item,
    time_to_spare,
    worker_work_hours,
    workers_wanted,
)
from orchestrator.core.campaign_zones import ZoneAges, hold_back, observe_zones, spot_zones_for_new_worker
from orchestrator.core.model import AttemptState, AttemptView, Outcome
from orchestrator.job.item_records import ItemCounts
from orchestrator.job.items_format import ParsedItem
from orchestrator.loop.task_facts import observe_campaign
from orchestrator.store import Store
from orchestrator.store.items import ItemStore, insert_items
from tests.test_totals import SPEC
from vocab import Market, Offer

H = 3600.0
SETTLE_H = 0.25  # 2.5 x the 0.1 h restart overhead


def _offer(zone: str, available: bool | None, market: Market = Market.SPOT, gpu: str = "V100",
           price: float = 1.0) -> Offer:
    return Offer(provider="sim", region=zone[:-1], zone=zone, instance_type=f"it-{gpu}", market=market,
                 price_per_hour=price, gpu=gpu, gpu_count=1, gpu_memory_gb=16, architecture="volta",
                 on_demand_price_per_hour=3.0, available=available)


def _ages(*steps: tuple[float, dict[str, bool | None]]) -> ZoneAges:
    ages = None
    for at, flags in steps:
        ages = observe_zones(ages, [_offer(z, f) for z, f in flags.items()], at)
    assert ages is not None
    return ages


def test_a_zone_up_at_first_sight_is_settled_and_one_seen_coming_back_must_settle() -> None:
    ages = _ages((0.0, {"a1": True, "b1": False}))
    assert ages.age_h("a1", 0.0) == math.inf  # age unknown: a run met at random is likely long
    assert ages.age_h("b1", 0.0) is None  # down
    ages = observe_zones(ages, [_offer("a1", False), _offer("b1", True)], 1 * H)
    assert ages.age_h("a1", 1 * H) is None and ages.age_h("b1", 1 * H) == 0.0  # b1 just came back
    ages = observe_zones(ages, [_offer("a1", True), _offer("b1", True)], 1.5 * H)
    assert ages.age_h("a1", 1.5 * H) == 0.0 and ages.age_h("b1", 1.5 * H) == 0.5


def test_a_reclamation_restarts_its_zones_run_once_even_where_the_provider_gives_no_flag() -> None:
    ages = _ages((0.0, {"a1": None}))
    assert ages.age_h("a1", 0.0) == math.inf  # no flag: up as far as anyone knows
    ages = observe_zones(ages, [_offer("a1", None)], 2 * H, reclaimed={"a1": 2 * H - 30})
    assert ages.age_h("a1", 2 * H) == 0.0  # it just took a worker back: settle again
    ages = observe_zones(ages, [_offer("a1", None)], 3 * H, reclaimed={"a1": 2 * H - 30})
    assert ages.age_h("a1", 3 * H) == 1.0  # the same reclamation is not counted twice


def test_new_workers_go_to_settled_zones_not_refused_and_least_occupied() -> None:
    ages = ZoneAges({"a1": -math.inf, "b1": 0.0, "c1": 0.0, "d1": 0.9 * H}, frozenset({"a1", "b1", "c1", "d1"}))
    now = 1.0 * H
    zones = ["a1", "b1", "c1", "d1"]
    # b1 and c1 came up at 0 h (settled by 1 h); d1 at 0.9 h (not yet).
    assert spot_zones_for_new_worker(ages, zones, {}, now=now, settle_h=SETTLE_H) == {"a1", "b1", "c1"}
    assert spot_zones_for_new_worker(ages, zones, {"a1": 2, "b1": 1}, now=now, settle_h=SETTLE_H) == {"c1"}
    assert spot_zones_for_new_worker(ages, zones, {"a1": 2, "b1": 1}, now=now, settle_h=SETTLE_H,
                                     refused={"c1"}) == {"b1"}
    assert spot_zones_for_new_worker(ages, ["d1"], {}, now=now, settle_h=SETTLE_H) == set()
    offers = [_offer("a1", True), _offer("d1", True), _offer("a1", None, Market.ON_DEMAND)]
    held = hold_back(offers, {"a1"})
    assert [(o.zone, o.market, o.available) for o in held] == [
        ("a1", Market.SPOT, True), ("d1", Market.SPOT, False), ("a1", Market.ON_DEMAND, None)]


def _campaign(ages: ZoneAges, *, spare: bool = True, now: float = 1.0 * H) -> CampaignFacts:
    return CampaignFacts(ItemCounts(queued=10_000), spare=spare, zones=ages, settle_h=SETTLE_H, now=now)


def test_with_time_to_spare_a_zone_that_just_came_back_is_shown_unavailable_and_workers_spread() -> None:
    ages = ZoneAges({"a1": 0.0, "b1": 0.0, "c1": 0.95 * H}, frozenset({"a1", "b1", "c1"}))
    offers = [_offer("a1", True), _offer("b1", True), _offer("c1", True), _offer("a1", None, Market.ON_DEMAND)]
    facts = _campaign(ages)
    assert facts.holds_back

    def spot_up() -> set[str | None]:
        return {o.zone for o in offers_for_items(offers, facts) if o.market is Market.SPOT and o.available}

    assert spot_up() == {"a1", "b1"}  # c1 came back 3 minutes ago
    facts.add_worker(Market.SPOT, "a1")  # one launched in a1 this tick: the next goes to b1
    assert spot_up() == {"b1"}
    facts.add_worker(Market.SPOT, "b1")
    facts.add_worker(Market.ON_DEMAND, "a1")  # on-demand workers are not reclaimed with the zone
    assert spot_up() == {"a1", "b1"} and facts.live_workers == 3
    facts.remove_worker(Market.SPOT, "b1")
    assert spot_up() == {"b1"} and facts.live_workers == 2
    facts.avoid = {_offer("b1", True).key: 2 * H}  # b1 refused a launch for capacity: a1 then
    assert spot_up() == {"a1"}
    assert len(offers_for_items(offers, facts)) == len(offers)  # nothing removed, only shown unavailable


def test_with_time_to_spare_a_new_worker_buys_no_on_demand() -> None:
    """Every slot could do the work left in half the time left: a new worker waits for spot rather
    than buy on-demand (issue 25's campaigns bought on-demand hours with 10 h to spare)."""
    ages = ZoneAges({"a1": 0.0}, frozenset({"a1", "b1"}))
    offers = [_offer("a1", False), _offer("b1", False), _offer("a1", None, Market.ON_DEMAND)]
    shown = offers_for_items(offers, _campaign(ages))
    assert [o.available for o in shown if o.market is Market.ON_DEMAND] == [False]
    assert offers_for_items(offers, _campaign(ages, spare=False)) == tuple(offers)  # tight: on-demand is there


def test_a_tight_deadline_or_none_holds_nothing_back() -> None:
    ages = ZoneAges({"a1": 0.95 * H}, frozenset({"a1"}))
    offers = [_offer("a1", True), _offer("a1", None, Market.ON_DEMAND)]
    for facts in (_campaign(ages, spare=False), dataclasses.replace(_campaign(ages), zones=None)):
        assert not facts.holds_back
        assert offers_for_items(offers, facts) == tuple(offers)
    # 38.9 h of work: 32 slots need 1.3 h of 24 (spare), of 2 (not: more than half); no deadline: speed.
    facts = CampaignFacts(ItemCounts(queued=10_000))
    spare = {h: time_to_spare(facts, slots=32, total_h=38.9, hours_left=h, overhead_h=0.1) for h in (24.0, 2.0, None)}
    assert spare == {24.0: True, 2.0: False, None: False}
    # Few slots are not a tight deadline: 8 slots that want all 8 with 14 h left still have time to spare
    # (that campaign chased every blip where spot runs out when "fewer wanted than slots" decided).
    late = CampaignFacts(ItemCounts(queued=9_300, done=700))
    assert workers_wanted(late, slots=8, total_h=38.9, hours_left=14.0, overhead_h=0.1) == 8
    assert time_to_spare(late, slots=8, total_h=38.9, hours_left=14.0, overhead_h=0.1)
    assert not time_to_spare(late, slots=8, total_h=38.9, hours_left=8.0, overhead_h=0.1)


def test_the_rate_per_gpu_type_sizes_the_workers() -> None:
    done = {"w1": (100, 2800.0), "w2": (100, 2800.0), "w3": (50, 500.0), "w4": (7, 0.0), "w5": (3, 30.0)}
    gpus = {"w1": "V100", "w2": "V100", "w3": "A100", "w4": "V100"}  # w5: type unknown
    rates = rates_by_gpu(done, gpus)
    assert rates == {"V100": (200, 5600.0), "A100": (50, 500.0)}  # w4 timed nothing: no rate from it
    # 28 s an item on V100 observed, 14 s estimated: blended with 20 items of the estimate.
    assert seconds_per_item(rates, "V100", estimate_s=14.0) == (14.0 * 20 + 5600.0) / 220
    assert seconds_per_item(rates, "T4", estimate_s=14.0) == (14.0 * 20 + 6100.0) / 270  # unseen: all types
    assert seconds_per_item({}, "V100", estimate_s=14.0) == 14.0

    facts = CampaignFacts(ItemCounts(queued=9_800, done=200))
    estimate = workers_wanted(facts, slots=32, total_h=38.9, hours_left=24.0, overhead_h=0.1)
    facts.hours_per_item = seconds_per_item(rates, "V100", estimate_s=14.0) / H  # items run ~2x slower
    slower = workers_wanted(facts, slots=32, total_h=38.9, hours_left=24.0, overhead_h=0.1)
    assert estimate == 6 and slower == 11
    facts.wanted = slower
    assert math.isclose(worker_work_hours(facts, total_h=38.9, slots=32), 10_000 * facts.hours_per_item / slower)


def _attempt(aid: str, zone: str, outcome: Outcome | None, ended_at: float | None, gpu: str = "V100") -> AttemptView:
    fields = {f.name: None for f in dataclasses.fields(AttemptView)}
    fields.update(id=aid, task_id="t", number=1, provider="sim", region=zone[:-1], zone=zone,
                  instance_type=f"it-{gpu}", market=Market.SPOT, price_per_hour=1.0, on_demand_price_per_hour=3.0,
                  billing_increment_s=1, billing_minimum_s=0,
                  state=AttemptState.ENDED if outcome is not None else AttemptState.RUNNING, outcome=outcome,
                  launched_at=0.0, started_at=0.0, ended_at=ended_at, progress_start=0.0, unbilled=False)
    return AttemptView(**fields)  # type: ignore[arg-type]


def test_the_loop_reads_the_rate_per_gpu_type_from_the_store_and_the_reclaimed_zones(sqlite_store: Store) -> None:
    job_id = sqlite_store.submit(SPEC, source="job.toml", now=0.0, checkpoint_uri="file:///tmp/orch-z")
    with sqlite_store.engine.begin() as conn:
        insert_items(conn, job_id, [ParsedItem(i, None, json.dumps(i)) for i in range(40)], 0.0)
    items = ItemStore(sqlite_store.engine)
    for worker, seconds in (("v", 30.0), ("a", 10.0)):
        for lease in items.lease(job_id, worker, 10, now=1.0, lease_seconds=600.0):
            assert items.start(job_id, worker, lease, now=1.0)
            assert items.complete(job_id, worker, lease, now=2.0, result="1", work_seconds=seconds)
    attempts = [_attempt("v", "a1", Outcome.PREEMPTED, 500.0), _attempt("a", "b1", None, None, gpu="A100")]
    offers = [_offer("a1", True, gpu="V100", price=0.9), _offer("b1", True, gpu="A100", price=1.5)]
    facts = CampaignFacts(items.counts(job_id))
    memory = observe_campaign(None, facts, job_id=job_id, estimate_h=40 * 20.0 / H, overhead_h=0.1, slots=8,
                              attempts=attempts, offers=offers, items=items, avoid={}, now=600.0,
                              hours_left=24.0)  # a deadline 24 h away
    assert memory.rates == {"V100": (10, 300.0), "A100": (10, 100.0)}
    assert facts.hours_per_item is not None  # the cheapest spot offer is a V100: its rate, blended
    assert math.isclose(facts.hours_per_item * H, (20.0 * 20 + 300.0) / 30)
    assert facts.zones is not None and facts.zones.age_h("a1", 600.0) == 0.0  # it reclaimed "v": settle again
    assert facts.zones.age_h("b1", 600.0) == math.inf
    assert facts.settle_h == 0.25 and facts.spare and facts.holds_back
