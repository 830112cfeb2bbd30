"""A campaign's progress as `orch status` shows it: items done of total, rate, ETA, $ per item.

Pure: given the item counts and timings the store read, and the job's `JobStatus` (whose money comes
from `orchestrator.core.cost.job_cost` through `orchestrator.core.status`, the one cost arithmetic in
orch), it derives the campaign's figures. Dollars per item are those totals divided by item counts,
never an estimate of their own, so they always agree with the job's spent and projected figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.core.cost import money
from orchestrator.core.status import JobStatus
from orchestrator.job.item_records import ItemCounts, QuarantinedItem

__all__ = ["RATE_WINDOW_S", "CampaignStatus", "campaign_status"]

# The rate is measured over the last half hour (or since submission, if sooner): recent enough to
# follow workers coming and going, long enough to hold many items at ~14 s each.
RATE_WINDOW_S = 1800.0


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    counts: ItemCounts
    rate_per_hour: float | None  # items done per hour over the window; None before the first
    eta_at: float | None  # when the items left are done at that rate; None without a rate or when done
    deadline_at: float | None
    on_time: bool | None  # the ETA is at or before the deadline; None without either
    spent_usd_per_item: float | None  # spent so far / items done
    projected_usd_per_item: float | None  # projected total / items that will be done (not quarantined)
    quarantined: tuple[QuarantinedItem, ...]

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None, n: int = 4) -> float | None:
            return None if v is None else round(v, n)

        return {**self.counts.to_dict(), "rate_per_hour": r(self.rate_per_hour, 2), "eta_at": r(self.eta_at, 1),
                "on_time": self.on_time, "spent_usd_per_item": money(self.spent_usd_per_item),
                "projected_usd_per_item": money(self.projected_usd_per_item),
                "quarantined_items": [{"index": q.index, "key": q.key, "failures": q.failures, "reason": q.reason}
                                      for q in self.quarantined]}


def campaign_status(status: JobStatus, counts: ItemCounts, *, done_in_window: int, window_s: float,
                    quarantined: Sequence[QuarantinedItem], now: float) -> CampaignStatus:
    """`done_in_window`: items done in the last `window_s` seconds (at most `RATE_WINDOW_S`, less for a
    campaign submitted more recently than that)."""
    rate = done_in_window * 3600.0 / window_s if done_in_window and window_s > 0 else None
    eta = None
    if rate is not None and counts.left:
        eta = now + counts.left / rate * 3600.0
    on_time = None if eta is None or status.deadline_at is None else eta <= status.deadline_at
    will_be_done = counts.total - counts.quarantined
    return CampaignStatus(
        counts=counts, rate_per_hour=rate, eta_at=eta, deadline_at=status.deadline_at, on_time=on_time,
        spent_usd_per_item=status.cost.spent_usd / counts.done if counts.done else None,
        projected_usd_per_item=status.cost.projected_usd / will_be_done if will_be_done else None,
        quarantined=tuple(quarantined),
    )
