"""Keeping the cyclic garbage collector off the controller's long-lived state, and its full
collections out of a tick.

A controller keeps every held job's snapshot from tick to tick (`loop.snapshot.Snapshots`): at 10,000
running tasks, a few hundred thousand objects that live for hours. CPython's collector still walks
them: each tick promotes its own short-lived work (futures, contexts) into the oldest generation, and
once that has grown by a quarter, a full collection scans the whole heap. Watched with `gc.callbacks`
on one 3,000-job tick of bench/scale.py's steady state (a one-off look, not a repository command), one
full collection took most of the tick. So after each tick, what survived it is frozen (`gc.freeze`:
moved out of the collector's sight, still freed by reference counting as usual).

That still left full collections inside a tick: a tick where every task reports progress replaces
10,000 task views, whose survivors reach the oldest generation and trigger it again and again, each
time walking everything the tick had promoted so far (the same kind of look: two full collections,
~0.15 s of a ~0.8 s tick, freeing nothing). So while a tick runs (`during`) the oldest generation is
never collected; the young ones still are, so the reference cycles a tick makes in numbers (an ORM
session per launch) are freed as it goes. Turning the collector off for the tick instead saved a
little more time but let a tick of 10,000 launches keep all of their cycles until it ended: peak RSS
212 MiB instead of 172 MiB.

Every `full_every` ticks everything is unfrozen and collected once, so reference cycles that became
garbage in frozen objects or in the oldest generation are freed too, at most that many ticks late.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

NEVER = 1 << 30  # a threshold the oldest generation's count cannot reach within one tick


@dataclass
class Heap:
    full_every: int = 100  # ticks between full collections (0: leave the interpreter's collector alone)
    _ticks: int = 0

    @contextmanager
    def during(self) -> Iterator[None]:
        """One tick: no full collection while it runs (the setting is process-wide: the tick's pool
        threads too), then `after_tick`. The thresholds are put back as they were."""
        if self.full_every <= 0:
            yield
            return
        young, middle, old = gc.get_threshold()
        gc.set_threshold(young, middle, NEVER)
        try:
            yield
        finally:
            gc.set_threshold(young, middle, old)
            self.after_tick()

    def after_tick(self) -> None:
        if self.full_every <= 0:
            return
        self._ticks += 1
        if self._ticks % self.full_every == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
