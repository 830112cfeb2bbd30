"""What a market policy sees and what it answers.

A policy is a pure function `Situation -> Choice`, called once per task per reconcile tick (live) or
per trace tick (simulation and benchmarks). The same functions serve both, so the policy that ships
is the policy that is measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from providers.base import Market


class Choice(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"
    WAIT = "wait"

    @property
    def market(self) -> Market | None:
        return None if self is Choice.WAIT else Market(self.value)


@dataclass(frozen=True, slots=True)
class Situation:
    """One task at one moment, in hours since submission (the paper's notation in brackets)."""

    elapsed_h: float  # t
    deadline_h: float | None  # R0: submission to deadline; None = no deadline
    work_h: float  # C0: total work
    done_h: float  # work done and safe (committed in a checkpoint)
    overhead_h: float  # d: restart overhead of one launch
    price_ratio: float  # k: on-demand price / spot price
    current: Market | None  # market of the live attempt; None when idle
    spot_available: bool  # can spot be had now (in some allowed zone)?
    tick_h: float = 0.0  # decision period, a margin for the safety net
    # Work still owed to the restart overhead of the live attempt (0 when it is already productive).
    overhead_left_h: float = 0.0

    @property
    def remaining_work_h(self) -> float:  # C
        return max(0.0, self.work_h - self.done_h)

    @property
    def time_left_h(self) -> float | None:  # R
        return None if self.deadline_h is None else self.deadline_h - self.elapsed_h


Policy = Callable[[Situation], Choice]
