"""The plan for a campaign's worker slots: pure rules over the item counts the loop reads each tick.

A campaign's tasks are worker slots (up to `[array] workers`); its items are leased from the store by
whichever worker is free. The deadline and the budget belong to the campaign, so each slot's progress
is the campaign's (items done or quarantined over all items): every slot's policy then sees the same
work left and the same slack, and goes on-demand when the campaign falls behind and back to spot when
it is ahead, the rule every other job follows. Slots launch only while there is something to lease,
never more than there are such items, and end once no item is left.
"""

from __future__ import annotations

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


def plan_slot(facts: CampaignFacts) -> tuple[SlotPlan, str]:
    """What a waiting worker slot does this tick, and why."""
    if facts.counts.left == 0:
        return SlotPlan.RETIRE, "no item left to do"
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
