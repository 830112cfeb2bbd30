"""The standing rules for a live attempt, before and around the policy: pure, so they are tested as rules.

The loop gathers the facts (was the provider listed, is the instance there and alive, what the
heartbeat says) and acts; what those facts mean is decided here. Before, these rules lived in the
I/O class, mixed with the calls they decided about.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from orchestrator.core.decide import Action, Stop
from orchestrator.core.model import LOST, Outcome, Transition

# A running attempt missing from a listing this soon after it started is not yet declared lost:
# listings are eventually consistent, and a just-launched instance may not show yet.
LISTING_GRACE_S = 180.0
# An attempt whose agent has not written a heartbeat for this long is stopped and requeued (the
# agent writes one every few seconds; this allows for a slow boot and an image pull).
HEARTBEAT_TIMEOUT_S = 1200.0


class Listing(StrEnum):
    """What this tick's provider listing says about a live attempt."""

    UNKNOWN = "unknown"  # the provider could not be listed: decide nothing about its attempts
    SETTLING = "settling"  # missing, but within the listing grace: wait
    ENDED = "ended"  # gone, or present and no longer alive: settle it (`decide.judge_ended`)
    RUNNING = "running"  # present and alive: observe it, then keep or stop it


def read_listing(*, listed: bool, present: bool, alive: bool, since: float, now: float) -> Listing:
    """`since`: when the attempt started (or was launched, if it never started)."""
    if not listed:
        return Listing.UNKNOWN
    if not present:
        return Listing.SETTLING if now - since < LISTING_GRACE_S else Listing.ENDED
    return Listing.RUNNING if alive else Listing.ENDED


def exited_ok_but_alive(exit_code: int | None) -> bool:
    """The job says it is done but its instance lives on (shutdown disabled or failed): record the
    success now and stop the instance. A non-zero exit waits for the provider, which knows whether
    the instance was reclaimed (a preemption is not the job's failure)."""
    return exit_code == 0


def silent(*, heartbeat_at: float | None, provider_progress: bool, since: float, now: float) -> bool:
    """A live instance whose agent has not been heard from for too long (never booted, hung)."""
    if heartbeat_at is None and provider_progress:
        return False  # the provider reports progress itself (simulations): there is no heartbeat to miss
    last = heartbeat_at if heartbeat_at is not None else since
    return now - last > HEARTBEAT_TIMEOUT_S


def keep_or_stop(*, number: int, cancel_requested: bool, policy: Callable[[], Action], is_silent: bool) -> Stop | None:
    """Whether a running attempt goes on (None) or stops, and why. Precedence: the user's cancel over
    the policy (budget, market switch) over a missing heartbeat. `policy` is asked only when no cancel
    is pending, so a cancelled job costs no offer lookups."""
    if cancel_requested:
        return Stop(Outcome.CANCELLED, (Transition.CANCEL,), "cancelled by the user")
    action = policy()
    if isinstance(action, Stop):
        return action
    if is_silent:
        return Stop(Outcome.LOST, LOST, f"attempt {number}: no heartbeat for {HEARTBEAT_TIMEOUT_S / 60:.0f} min; "
                                        "the instance is stopped and the task requeued")
    return None
