"""The plan for a campaign's worker slots: pure rules over the item counts the loop reads each tick.

A campaign's tasks are worker slots (up to `[array] workers`); its items are leased from the store by
whichever worker is free. The deadline and the budget belong to the campaign, so each slot's progress
is the campaign's (items done or quarantined over all items): every slot's policy then sees the same
work left and the same slack, and goes on-demand when the campaign falls behind and back to spot when
it is ahead, the rule every other job follows. Slots launch only while there is something to lease,
never more than there are such items, and end once no item is left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.core.item_records import ItemCounts
from providers.base import Offer


@dataclass
class CampaignFacts:
    """What one tick knows of a campaign: its item counts, and the workers it runs (updated as slots launch)."""

    counts: ItemCounts
    live_workers: int = 0
    # The largest GPU memory (GB) a waiting item ran out of; a worker for it needs more. None: no such item.
    memory_needed: float | None = None
    # How many workers the deadline asks for now (`workers_wanted`); the slots beyond it wait.
    wanted: int | None = None

    @property
    def progress(self) -> float:
        """The campaign's share of items settled (done, or quarantined: nothing more will be done for them)."""
        c = self.counts
        return 1.0 if c.total == 0 else (c.done + c.quarantined) / c.total

    @property
    def leasable(self) -> int:
        """Items a new worker could lease now (expired leases are returned to the queue before counting)."""
        return self.counts.queued + self.counts.failed


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
    left_h = (1.0 - facts.progress) * total_h
    usable_h = hours_left * WORK_SHARE_OF_TIME_LEFT - overhead_h
    if usable_h <= 0.0:
        return slots
    return max(1, min(slots, math.ceil(left_h / usable_h)))


def worker_work_hours(facts: CampaignFacts, *, total_h: float, slots: int) -> float:
    """The campaign's work as one worker's share (for its policy's Situation): the whole over the workers
    wanted, so a worker sees the work left it must carry, however many slots wait."""
    return total_h / max(1, facts.wanted if facts.wanted is not None else slots)


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
    no larger GPU on offer the loop quarantines those items (`ItemStore.quarantine_needing_more_than`)."""
    needed = facts.memory_needed
    if needed is None:
        return tuple(offers)
    bigger = tuple(o for o in offers if o.gpu_memory_gb > needed)
    return bigger or tuple(offers)


def largest_memory(offers: Sequence[Offer]) -> float | None:
    return max((o.gpu_memory_gb for o in offers), default=None)
