"""The standing rules for a live attempt (orchestrator.core.live), as rules: no store, no provider."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.core.decide import Action, Stop, Wait
from orchestrator.core.live import (
    HEARTBEAT_TIMEOUT_S,
    LISTING_GRACE_S,
    Listing,
    exited_ok_but_alive,
    keep_or_stop,
    read_listing,
    silent,
)
from orchestrator.core.model import LOST, Outcome, Transition


@pytest.mark.parametrize(("listed", "present", "alive", "age", "expected"), [
    (False, False, False, 10_000.0, Listing.UNKNOWN),  # an unlisted provider says nothing, however old
    (True, False, False, LISTING_GRACE_S - 1, Listing.SETTLING),
    (True, False, False, LISTING_GRACE_S, Listing.ENDED),
    (True, True, False, 0.0, Listing.ENDED),
    (True, True, True, 0.0, Listing.RUNNING),
])
def test_what_a_listing_says(listed: bool, present: bool, alive: bool, age: float, expected: Listing) -> None:
    assert read_listing(listed=listed, present=present, alive=alive, since=1000.0, now=1000.0 + age) is expected


def test_only_a_zero_exit_settles_a_live_instance() -> None:
    assert exited_ok_but_alive(0) and not exited_ok_but_alive(1) and not exited_ok_but_alive(None)


def test_silence_counts_from_the_last_heartbeat_or_the_start() -> None:
    assert not silent(heartbeat_at=None, provider_progress=False, since=0.0, now=HEARTBEAT_TIMEOUT_S)
    assert silent(heartbeat_at=None, provider_progress=False, since=0.0, now=HEARTBEAT_TIMEOUT_S + 1)
    assert not silent(heartbeat_at=500.0, provider_progress=False, since=0.0, now=HEARTBEAT_TIMEOUT_S + 1)
    assert not silent(heartbeat_at=None, provider_progress=True, since=0.0, now=1e9)  # simulations


SWITCH = Stop(Outcome.SWITCHED, (Transition.SWITCH,), "policy: switch")


def _asked(answer: Action) -> tuple[list[int], Callable[[], Action]]:
    calls: list[int] = []

    def policy() -> Action:
        calls.append(1)
        return answer
    return calls, policy


def test_cancel_comes_first_and_costs_no_policy_call() -> None:
    calls, policy = _asked(SWITCH)
    stop = keep_or_stop(number=1, cancel_requested=True, policy=policy, is_silent=True)
    assert stop is not None and stop.outcome is Outcome.CANCELLED and calls == []


def test_the_policy_comes_before_a_missing_heartbeat_and_silence_before_going_on() -> None:
    _, switch = _asked(SWITCH)
    assert keep_or_stop(number=1, cancel_requested=False, policy=switch, is_silent=True) is SWITCH
    _, wait = _asked(Wait("spot is fine"))
    lost = keep_or_stop(number=3, cancel_requested=False, policy=wait, is_silent=True)
    assert lost is not None and lost.outcome is Outcome.LOST and lost.transitions == LOST and "attempt 3" in lost.reason
    assert keep_or_stop(number=3, cancel_requested=False, policy=wait, is_silent=False) is None
