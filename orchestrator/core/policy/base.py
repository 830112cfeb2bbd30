"""What a market policy sees and what it answers.

A policy is a pure function `Situation -> Choice`, called once per task per reconcile tick (live) or
per trace tick (simulation and benchmarks). The same functions serve both, so the policy that ships
is the policy that is measured.

Time is in hours since the task was submitted. The letters in brackets are those of Wu et al.,
"Can't Be Late: Optimizing Spot Instance Savings under Deadlines" (NSDI 2024): C0 total work, R0 time
from submission to deadline, C(t) work left, R(t) time left, d restart (changeover) overhead, k the
on-demand to spot price ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from vocab import Market

# Comparisons of hours computed along different paths (t * C0 / R0 against a sum of tick lengths)
# must not flip on the last bit: the paper's simulator does them in exact seconds.
EPS_H = 1e-9
# `SpotHistory.recent_available` forgets with this half-life: long enough to average over the short
# blips of a probe trace, short enough to follow the day-long regimes of the public traces.
RECENT_HALF_LIFE_H = 6.0
# ...and starts from this, the mean availability of the public 1-node traces, so that the first hours
# of a task without history lean on what is typical rather than on one observation.
RECENT_PRIOR = 0.6


class Choice(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"
    WAIT = "wait"

    @property
    def market(self) -> Market | None:
        return None if self is Choice.WAIT else Market(self.value)


MAX_RUNS = 64


@dataclass(frozen=True, slots=True)
class SpotHistory:
    """What has been seen of spot availability so far, summarised so that building it is O(1) a tick.

    The live loop builds it from its own observations of the zone (plus the zone's history when the
    user gives one); the simulator builds it from the trace up to now, never beyond. Completed runs
    are kept as lengths so that a policy can fit a distribution, not only a mean: outage lengths in
    the public traces are heavy-tailed, and the age of the current outage says much about its rest.
    """

    observed_h: float = 0.0
    available_h: float = 0.0
    # The run in progress: whether spot is available in it, and for how long it has lasted.
    in_available_run: bool = False
    current_run_h: float = 0.0
    # Completed runs, oldest first.
    available_runs_h: tuple[float, ...] = ()
    outage_runs_h: tuple[float, ...] = ()
    # Exponentially weighted fraction of time available, half-life `RECENT_HALF_LIFE_H`.
    recent_available: float = RECENT_PRIOR

    @property
    def fraction_available(self) -> float | None:
        return None if self.observed_h <= 0 else self.available_h / self.observed_h

    def observe(self, available: bool, hours: float) -> SpotHistory:
        """The summary after `hours` more of observing `available` (a run ends when the state flips)."""
        runs_a, runs_u = self.available_runs_h, self.outage_runs_h
        run = self.current_run_h
        if self.observed_h > 0 and available != self.in_available_run:
            # The newest MAX_RUNS completed runs only: a job watched for weeks must not grow this
            # summary (and the copy made at every flip) without bound.
            if self.in_available_run:
                runs_a = (*runs_a[-(MAX_RUNS - 1):], run)
            else:
                runs_u = (*runs_u[-(MAX_RUNS - 1):], run)
            run = 0.0
        keep = 0.5 ** (hours / RECENT_HALF_LIFE_H)
        return SpotHistory(
            observed_h=self.observed_h + hours,
            available_h=self.available_h + (hours if available else 0.0),
            in_available_run=available,
            current_run_h=run + hours,
            available_runs_h=runs_a,
            outage_runs_h=runs_u,
            recent_available=self.recent_available * keep + (1.0 - keep) * (1.0 if available else 0.0),
        )


@dataclass(frozen=True, slots=True)
class Situation:
    """One task at one moment, in hours since submission (the paper's notation in brackets).

    `current` is the market of the live attempt after this tick's reclamations: a spot instance that
    was just taken back reads as None (idle), as in the paper's simulator.
    """

    elapsed_h: float  # t
    deadline_h: float | None  # R0: submission to deadline; None = no deadline
    work_h: float  # C0: total work
    done_h: float  # C0 - C(t): work done and safe (committed in a checkpoint)
    overhead_h: float  # d: restart overhead of one launch
    price_ratio: float  # k: on-demand price / spot price
    current: Market | None  # market of the live attempt; None when idle
    spot_available: bool  # can spot be had now (in some allowed zone)?
    # Decision period. When > 0, deadline arithmetic is done in whole ticks (time left rounded down,
    # time needed rounded up), which is both the paper's simulator and a margin for the live loop.
    tick_h: float = 0.0
    # Restart overhead the live attempt still owes before it makes progress (0 once productive).
    overhead_left_h: float = 0.0
    # Availability seen so far (None: the caller keeps none; policies then fall back to fixed rules).
    history: SpotHistory | None = None

    @property
    def remaining_work_h(self) -> float:  # C(t)
        return max(0.0, self.work_h - self.done_h)

    @property
    def time_left_h(self) -> float | None:  # R(t)
        return None if self.deadline_h is None else self.deadline_h - self.elapsed_h

    @property
    def finished(self) -> bool:
        return self.remaining_work_h <= EPS_H

    @property
    def productive(self) -> bool:
        """A live attempt that has paid its restart overhead."""
        return self.current is not None and self.overhead_left_h <= 1e-3 / 3600.0


Policy = Callable[[Situation], Choice]
