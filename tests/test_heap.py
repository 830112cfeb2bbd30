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


def test_the_collector_is_off_during_a_tick_and_a_cycle_the_tick_made_is_freed_when_it_ends() -> None:
    heap = Heap(full_every=100)
    assert gc.isenabled()
    with heap.during():
        assert not gc.isenabled()
        node = Node()
        gone = weakref.ref(node)
        del node
        for _ in range(10_000):  # allocations that would trigger collections with the collector on
            Node().me = None
        assert gone() is not None, "nothing collects while the tick runs"
    assert gc.isenabled()
    assert gone() is None, "the young collection at the tick's end freed it"


def test_a_caller_that_turned_the_collector_off_keeps_it_off() -> None:
    gc.disable()
    try:
        with Heap(full_every=100).during():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_zero_does_not_turn_the_collector_off_for_a_tick() -> None:
    with Heap(full_every=0).during():
        assert gc.isenabled()
