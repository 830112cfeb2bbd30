"""The plan for a campaign's worker slots: pure rules over the item counts the loop reads each tick.

A campaign's tasks are worker slots (up to `[array] workers`); its items are leased from the store by
whichever worker is free. The deadline and the budget belong to the campaign, so each slot's progress
is the campaign's (items done or quarantined over all items): every slot's policy then sees the same
work left and the same slack, and goes on-demand when the campaign falls behind and back to spot when
it is ahead, the rule every other job follows. Slots launch only while there is something to lease,
never more than there are such items, and end once no item is left.

How fast an item goes is observed, per GPU type (`rates_by_gpu`, `seconds_per_item`): the work left is
the items left at the rate of the GPU the next worker would get, so a campaign whose items run slower
than estimated asks for more workers (and its workers' policies see more work) before it is late.
Where its spot workers go is `core.campaign_zones`: settled zones only while the deadline allows,
spread over them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from orchestrator.core.campaign_zones import ZoneAges, hold_back, spot_zones_for_new_worker
from orchestrator.job.item_records import ItemCounts
from vocab import Market, Offer


@dataclass
class CampaignFacts:
    """What one tick knows of a campaign: its item counts, and the workers it runs (updated as slots launch)."""

    counts: ItemCounts
    live_workers: int = 0
    # The largest GPU memory (GB) a waiting item ran out of; a worker for it needs more. None: no such item.
    memory_needed: float | None = None
    # How many workers the deadline asks for now (`workers_wanted`); the slots beyond it wait.
    wanted: int | None = None
    # Whether the deadline leaves time to wait for a zone's spot to settle (`time_to_spare`).
    spare: bool = False
    # Work hours one item takes on the GPU the next worker would get (`seconds_per_item`); None: the
    # job's estimate (`estimated_hours` over the items) is all there is.
    hours_per_item: float | None = None
    # Spot workers running per zone (kept up to date as slots launch and end): new ones spread out.
    spot_workers: dict[str, int] = field(default_factory=dict)
    # When each zone's spot came up (`campaign_zones.observe_zones`); None: nothing is held back.
    zones: ZoneAges | None = None
    # Hours a zone must have been up before a new worker pays a launch there (0: none held back).
    settle_h: float = 0.0
    now: float = 0.0
    # The capacity memory (offer key -> avoided until): a refused zone is not where a worker is sent.
    avoid: Mapping[str, float] = field(default_factory=dict)

    @property
    def progress(self) -> float:
        """The campaign's share of items settled (done, or quarantined: nothing more will be done for them)."""
        c = self.counts
        return 1.0 if c.total == 0 else (c.done + c.quarantined) / c.total

    @property
    def leasable(self) -> int:
        """Items a new worker could lease now (expired leases are returned to the queue before counting)."""
        return self.counts.queued + self.counts.failed

    def work_hours(self, estimate_h: float) -> float:
        """The whole campaign's work in GPU hours: the items at the observed rate, else the estimate."""
        if self.hours_per_item is None:
            return estimate_h
        return self.counts.total * self.hours_per_item

    @property
    def holds_back(self) -> bool:
        """Whether new spot workers wait for settled zones (`core.campaign_zones`): while the deadline
        leaves time to spare."""
        return self.zones is not None and self.settle_h > 0.0 and self.spare

    def add_worker(self, market: Market, zone: str | None) -> None:
        """A worker of the campaign runs (seen live, or just launched), on `market` in `zone`."""
        self.live_workers += 1
        if market is Market.SPOT and zone is not None:
            self.spot_workers[zone] = self.spot_workers.get(zone, 0) + 1

    def remove_worker(self, market: Market, zone: str | None) -> None:
        """A worker of the campaign ended this tick."""
        self.live_workers = max(0, self.live_workers - 1)
        if market is Market.SPOT and zone is not None and self.spot_workers.get(zone, 0) > 0:
            self.spot_workers[zone] -= 1


class SlotPlan(StrEnum):
    PLACE = "place"  # launch a worker for this slot, by the job's policy
    WAIT = "wait"  # nothing to lease that the running workers will not take
    RETIRE = "retire"  # no item left: this slot is done


# The share of the time left that the wanted workers should need; the rest is slack for each worker's
# policy to wait out spot outages before the safety net sends it to on-demand. Fewer workers lose
# less to each reclamation but stay exposed longer: bench/campaign.py measured 0.5 and 0.3 on two
# windows of the V100 traces (docs/benchmarks.md, "Campaigns"); 0.3 had the lower mean.
WORK_SHARE_OF_TIME_LEFT = 0.3


def workers_wanted(facts: CampaignFacts, *, slots: int, total_h: float, hours_left: float | None,
                   overhead_h: float) -> int:
    """Workers enough to do the items left in `WORK_SHARE_OF_TIME_LEFT` of the time left: fewer than slots when
    the deadline allows, because each reclamation costs every running worker a restart (32 workers
    in one flickering zone paid 0.1 h each per reclamation in bench/campaign.py); all of them when it
    is tight, or without a deadline (then speed is all that is asked)."""
    if hours_left is None:
        return slots
    left_h = (1.0 - facts.progress) * facts.work_hours(total_h)
    usable_h = hours_left * WORK_SHARE_OF_TIME_LEFT - overhead_h
    if usable_h <= 0.0:
        return slots
    return max(1, min(slots, math.ceil(left_h / usable_h)))


# New spot workers wait for settled zones while every slot could do the work left in this share of
# the time left. Not "while fewer workers than slots are wanted": a campaign of few slots wants them all
# long before its deadline is near, and then chased every blip (bench/campaign.py's 24 h campaign on 8
# workers where spot runs out: 1.167 x the bound; the replay of bench/_campaign_replay.py puts it at
# 1.166 against 1.060 with this rule, and finds no start of 6 h or 24 h campaigns that it makes late).
SPARE_SHARE = 0.5


def time_to_spare(facts: CampaignFacts, *, slots: int, total_h: float, hours_left: float | None,
                  overhead_h: float) -> bool:
    """Whether the campaign can afford to wait for spot to settle: it has a deadline (without one, speed
    is what is asked), and all its slots could do the work left, after a restart, in `SPARE_SHARE` of
    the time left."""
    if hours_left is None:
        return False
    left_h = (1.0 - facts.progress) * facts.work_hours(total_h)
    return left_h / max(1, slots) + overhead_h <= SPARE_SHARE * hours_left


def worker_work_hours(facts: CampaignFacts, *, total_h: float, slots: int) -> float:
    """The campaign's work as one worker's share (for its policy's Situation): the whole (at the observed
    rate) over the workers wanted, so a worker sees the work left it must carry, however many slots wait."""
    return facts.work_hours(total_h) / max(1, facts.wanted if facts.wanted is not None else slots)


# Items' worth of the job's estimate that an observed rate is blended with: the first few items say
# little (a cold cache, one odd item), and a type seen often enough outweighs the estimate.
RATE_PRIOR_ITEMS = 20


def rates_by_gpu(done_by_worker: Mapping[str, tuple[int, float]],
                 gpu_of: Mapping[str, str]) -> dict[str, tuple[int, float]]:
    """Items done and their summed work seconds per GPU type, from `ItemStore.done_by_worker` (per
    attempt) and each attempt's GPU type. Attempts of unknown type, or that reported no work
    seconds (a worker that does not time its items), say nothing about a rate and are left out."""
    out: dict[str, tuple[int, float]] = {}
    for attempt, (items, seconds) in done_by_worker.items():
        gpu = gpu_of.get(attempt)
        if gpu is None or items <= 0 or seconds <= 0.0:
            continue
        n, s = out.get(gpu, (0, 0.0))
        out[gpu] = (n + items, s + seconds)
    return out


def seconds_per_item(rates: Mapping[str, tuple[int, float]], gpu: str | None, *, estimate_s: float) -> float:
    """Work seconds one item takes on `gpu`: what its workers took, blended with the job's estimate
    (`RATE_PRIOR_ITEMS` items of it); a GPU type not seen yet takes what every type took together."""
    items, seconds = rates.get(gpu, (0, 0.0)) if gpu is not None else (0, 0.0)
    if items == 0:
        items, seconds = sum(n for n, _ in rates.values()), sum(s for _, s in rates.values())
    return (estimate_s * RATE_PRIOR_ITEMS + seconds) / (RATE_PRIOR_ITEMS + items)


def plan_slot(facts: CampaignFacts) -> tuple[SlotPlan, str]:
    """What a waiting worker slot does this tick, and why."""
    if facts.counts.left == 0:
        return SlotPlan.RETIRE, "no item left to do"
    if facts.wanted is not None and facts.live_workers >= facts.wanted:
        return SlotPlan.WAIT, f"{facts.live_workers} worker(s) running, as many as the deadline asks for"
    if facts.leasable <= facts.live_workers:
        return SlotPlan.WAIT, (f"{facts.leasable} item(s) to lease and {facts.live_workers} worker(s) running: "
                               "no worker to add")
    return SlotPlan.PLACE, f"{facts.leasable} item(s) to lease"


def offers_for_items(offers: Sequence[Offer], facts: CampaignFacts) -> tuple[Offer, ...]:
    """Offers a new worker may use: while a waiting item ran out of GPU memory, only GPUs with more than
    it had (such a worker can take every item, a smaller one not that one); otherwise all of them. With
    no larger GPU on offer the loop quarantines those items (`ItemStore.quarantine_needing_more_than`).
    While the deadline leaves time (`holds_back`), spot offers outside the settled, least occupied
    zones are shown unavailable (`core.campaign_zones`)."""
    needed = facts.memory_needed
    out = tuple(offers)
    if needed is not None:
        out = tuple(o for o in offers if o.gpu_memory_gb > needed) or out
    if not facts.holds_back or facts.zones is None:
        return out
    # With time to spare, a new worker does not buy on-demand: every slot could still do the work left
    # in `SPARE_SHARE` of the time left, so waiting for spot costs nothing the deadline needs, and once
    # that stops holding the slots may take it (each still behind its own safety net). Without this,
    # workers bought on-demand hours with 10 h to spare (issue 25; bench/campaign_lodo.py).
    out = tuple(dataclasses.replace(o, available=False) if o.market is Market.ON_DEMAND else o for o in out)
    spot = [o for o in out if o.market is Market.SPOT and o.zone is not None]
    zones = {o.zone for o in spot if o.zone is not None}
    refused = zones - {o.zone for o in spot if o.zone is not None and facts.avoid.get(o.key, 0.0) <= facts.now}
    allowed = spot_zones_for_new_worker(facts.zones, zones, facts.spot_workers, now=facts.now,
                                        settle_h=facts.settle_h, refused=refused)
    return hold_back(out, allowed)


def gpu_of_new_worker(offers: Sequence[Offer]) -> str | None:
    """The GPU type the next worker would most likely get: the cheapest spot offer's, else the cheapest's."""
    spot = [o for o in offers if o.market is Market.SPOT]
    pick = min(spot or offers, key=lambda o: o.price_per_hour, default=None)
    return None if pick is None else pick.gpu


def largest_memory(offers: Sequence[Offer]) -> float | None:
    return max((o.gpu_memory_gb for o in offers), default=None)
