"""Keeping the cyclic garbage collector off the controller's long-lived state, and out of a tick.

A controller keeps every held job's snapshot from tick to tick (`loop.snapshot.Snapshots`): at 10,000
running tasks, a few hundred thousand objects that live for hours. CPython's collector still walks
them: each tick promotes its own short-lived work (futures, contexts) into the oldest generation, and
once that has grown by a quarter, a full collection scans the whole heap. Watched with `gc.callbacks`
on one 3,000-job tick of bench/scale.py's steady state (a one-off look, not a repository command), one
full collection took most of the tick. So after each tick, what survived it is frozen (`gc.freeze`:
moved out of the collector's sight, still freed by reference counting as usual).

That still left the collector running inside a tick: a tick where every task reports progress
replaces 10,000 task views, so the young generations fill and spill into the old one over and over,
and each of those collections walks everything the tick has made so far (at 10,000 progress reports,
a few hundred young and two full collections, about a fifth of the tick, reclaiming nothing: the loop
makes no cycles in normal work). Instead the collector is off for the tick (`during`), and once it
ends one young collection walks what the tick made exactly once (freeing any cycle a tick did make,
an exception's traceback say), before that is frozen in turn. A tick's cyclic garbage thus lives at
most until the tick ends.

Every `full_every` ticks everything is unfrozen and collected once, so reference cycles that became
garbage in frozen objects are freed too, at most that many ticks late.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Heap:
    full_every: int = 100  # ticks between full collections (0: leave the interpreter's collector alone)
    _ticks: int = 0

    @contextmanager
    def during(self) -> Iterator[None]:
        """One tick: the collector off while it runs (process-wide: the tick's pool threads too), then
        `after_tick`. Restores the collector's previous state, so a caller that disabled it keeps it off."""
        if self.full_every <= 0:
            yield
            return
        enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if enabled:
                gc.enable()
            self.after_tick()

    def after_tick(self) -> None:
        if self.full_every <= 0:
            return
        self._ticks += 1
        if self._ticks % self.full_every == 0:
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(1)  # what this tick made (and anything made between ticks), walked once
        gc.freeze()
