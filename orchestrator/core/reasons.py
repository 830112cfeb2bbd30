"""Why the loop chose what it chose, in the words a person checks: slack, price, availability, budget.

A job that starts on on-demand with no word of why costs trust in the first hour: every market decision
gets its reason in the launch or switch event, and a campaign's worker count in a `workers` event when
it changes ("1 of 4 slots: the deadline needs 1"). The figures are the ones the decision was made on
(the `Situation` the policy saw, the offers it chose from); nothing here decides anything.
"""

from __future__ import annotations

from orchestrator.core.policy.base import Choice, Situation
from vocab import Market


def _slack_h(s: Situation) -> float | None:
    """Time to spare: the time left less the work left and one restart overhead (None: no deadline)."""
    left = s.time_left_h
    return None if left is None else left - s.remaining_work_h - s.overhead_h


def market_reason(s: Situation, choice: Choice, *, asked: str) -> str:
    """The reason for launching on `choice` (the event names the offer and its price); `asked` is the
    job file's market (`auto`, `spot` or `on-demand`)."""
    if asked in ("spot", "on-demand"):
        return f"the job asks for {asked}"
    slack = _slack_h(s)
    deadline = "" if slack is None else (
        f"; {slack:.2f} h to spare before the deadline for {s.remaining_work_h:.2f} h of work")
    if choice is Choice.SPOT:
        return f"spot capacity is available, {s.price_ratio:.1f}x cheaper than on-demand{deadline}"
    if choice is Choice.ON_DEMAND:
        if not s.spot_available:
            return f"no spot capacity is usable now and the deadline will not wait{deadline}"
        return f"the deadline needs on-demand{deadline} (restart overhead {s.overhead_h:.2f} h)"
    return "waiting for spot capacity"


def switch_reason(s: Situation, current: Market, choice: Choice) -> str:
    """Why a running attempt leaves its market (`current`) for `choice` (spot, on-demand, or idle)."""
    slack = _slack_h(s)
    ahead = "" if slack is None else f" ({slack:.2f} h to spare before the deadline)"
    if choice is Choice.WAIT:
        return f"leave {current} and wait for spot{ahead}"
    if choice is Choice.SPOT:
        return f"switch from {current} to spot: capacity is back and the deadline allows it{ahead}"
    return f"switch from {current} to on-demand: the deadline needs it{ahead}"


def workers_reason(wanted: int, slots: int, *, left_h: float, hours_left: float | None) -> str:
    """Why a campaign wants `wanted` of its `slots` workers now (`core.campaign_plan.workers_wanted`)."""
    if hours_left is None:
        return f"{wanted} of {slots} worker slots: no deadline, so every slot works"
    if wanted >= slots:
        return (f"{wanted} of {slots} worker slots: {left_h:.2f} h of items left and {hours_left:.2f} h to the "
                "deadline need them all")
    return (f"{wanted} of {slots} worker slots: the deadline needs {wanted} ({left_h:.2f} h of items left, "
            f"{hours_left:.2f} h to the deadline); fewer workers lose less to each reclamation")
