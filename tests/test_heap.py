"""The collector is kept off what outlives a tick, and reference cycles are still freed, a little late."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from orchestrator.loop.heap import Heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_what_survived_a_tick_is_frozen_and_a_cycle_is_freed_at_the_next_full_collection() -> None:
    heap = Heap(full_every=3)
    node = Node()
    gone = weakref.ref(node)
    heap.after_tick()  # the node survived the tick: frozen
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert gone() is not None, "a frozen cycle is out of the collector's sight"
    heap.after_tick()
    assert gone() is not None
    heap.after_tick()  # the third: everything is unfrozen and collected once
    assert gone() is None


class Leaf:
    """No cycle: reference counting frees it the moment its last reference goes."""


def test_reference_counting_still_frees_frozen_objects_at_once() -> None:
    heap = Heap(full_every=100)
    leaf = Leaf()
    gone = weakref.ref(leaf)
    heap.after_tick()
    del leaf
    assert gone() is None


def test_zero_leaves_the_interpreters_collector_alone() -> None:
    gc.unfreeze()
    Heap(full_every=0).after_tick()
    assert gc.get_freeze_count() == 0


def test_during_a_tick_the_oldest_generation_is_never_collected_and_the_young_ones_still_are() -> None:
    heap = Heap(full_every=100)
    before = gc.get_threshold()
    full: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(watch)
    try:
        with heap.during():
            assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] > 1_000_000
            node = Node()
            gone = weakref.ref(node)
            del node
            kept = [[] for _ in range(300_000)]  # survivors enough to trigger full collections otherwise
            assert gone() is None, "a young collection freed the tick's cycle while it ran"
            del kept
        assert full == [], "no full collection inside the tick"
    finally:
        gc.callbacks.remove(watch)
    assert gc.get_threshold() == before


def test_a_tick_that_raises_still_puts_the_thresholds_back() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), Heap(full_every=100).during():
        raise RuntimeError("the tick failed")
    assert gc.get_threshold() == before


def test_zero_leaves_the_thresholds_alone_for_a_tick() -> None:
    before = gc.get_threshold()
    with Heap(full_every=0).during():
        assert gc.get_threshold() == before
