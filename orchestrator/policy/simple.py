"""The reference policies: on-demand, spot-only, greedy and Uniform Progress.

Sources: Wu et al., "Can't Be Late: Optimizing Spot Instance Savings under Deadlines", NSDI 2024,
section 5 (greedy, the safety net) and section 5.2 (Uniform Progress with hysteresis).
"""

from __future__ import annotations

from orchestrator.policy import register
from orchestrator.policy.base import Choice, Situation
from providers.base import Market


def must_go_on_demand(s: Situation) -> bool:
    """The safety net (Wu et al. section 5): with slack `R - C` below `2d` plus a tick, only on-demand is safe.

    Two overheads: one for the launch now, one for a possible switch later. Once an attempt is on
    on-demand, it is only productive time that counts, so its outstanding overhead is added to C.
    """
    left = s.time_left_h
    if left is None:
        return False
    if s.current is Market.ON_DEMAND:
        needed = s.remaining_work_h + s.overhead_left_h
    else:
        needed = s.remaining_work_h + s.overhead_h
    return left - needed < s.overhead_h + s.tick_h


@register("on-demand")
def on_demand(s: Situation) -> Choice:
    """Always on-demand: the most expensive schedule, and the surest."""
    return Choice.ON_DEMAND


@register("spot-only")
def spot_only(s: Situation) -> Choice:
    """Spot whenever available, otherwise wait; never on-demand, whatever the deadline."""
    return Choice.SPOT if s.spot_available else Choice.WAIT


@register("greedy")
def greedy(s: Situation) -> Choice:
    """Greedy (Wu et al. section 5): spot when available, else wait, until the safety net says on-demand.

    Once on-demand it stays there: leaving would pay a second overhead that the slack no longer has.
    """
    if s.current is Market.ON_DEMAND or must_go_on_demand(s):
        return Choice.ON_DEMAND
    return Choice.SPOT if s.spot_available else Choice.WAIT


@register("uniform-progress")
def uniform_progress(s: Situation) -> Choice:
    """Uniform Progress with hysteresis (Wu et al. section 5.2).

    Take spot whenever it is available. When idle (no spot) and behind the straight line
    `C0 * t / R0`, use on-demand. Leave on-demand only once ahead of the line at `t + 2d`. The safety
    net overrides everything. Without a deadline it behaves as spot-only.
    """
    if s.deadline_h is None:
        return spot_only(s)
    if must_go_on_demand(s):
        return Choice.ON_DEMAND
    rate = s.work_h / s.deadline_h
    if s.current is Market.ON_DEMAND:
        ahead_later = s.done_h >= rate * (s.elapsed_h + 2 * s.overhead_h)
        if ahead_later and s.spot_available:
            return Choice.SPOT
        return Choice.ON_DEMAND if not ahead_later else Choice.WAIT
    if s.spot_available:
        return Choice.SPOT
    behind = s.done_h < rate * s.elapsed_h
    return Choice.ON_DEMAND if behind else Choice.WAIT


@register("auto")
def auto(s: Situation) -> Choice:
    """orch's default; until the measured policy lands, Uniform Progress."""
    return uniform_progress(s)
