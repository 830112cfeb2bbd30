"""Keeping the cyclic garbage collector off the controller's long-lived state.

A controller keeps every held job's snapshot from tick to tick (`loop.snapshot.Snapshots`): at 10,000
running tasks, a few hundred thousand objects that live for hours. CPython's collector still walks
them: each tick promotes its own short-lived work (futures, contexts) into the oldest generation, and
once that has grown by a quarter, a full collection scans the whole heap. Watched with `gc.callbacks`
on one 3,000-job tick of bench/scale.py's steady state (a one-off look, not a repository command), one
full collection took most of the tick; with the freeze below, the figures in docs/benchmarks.md
("After the loop rebuild") include the collector's remaining work.

So after each tick, what survived it is frozen (`gc.freeze`: moved out of the collector's sight,
still freed by reference counting as usual), and a tick's collections only look at what that tick
made. Every `full_every` ticks everything is unfrozen and collected once, so reference cycles that
became garbage in frozen objects are freed too, at most that many ticks late.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass


@dataclass
class Heap:
    full_every: int = 100  # ticks between full collections (0: never freeze, the interpreter's default)
    _ticks: int = 0

    def after_tick(self) -> None:
        if self.full_every <= 0:
            return
        self._ticks += 1
        if self._ticks % self.full_every == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
