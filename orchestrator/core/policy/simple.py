"""The reference policies: on-demand, spot-only, greedy and Uniform Progress, with the safety net.

Sources: Wu et al., "Can't Be Late: Optimizing Spot Instance Savings under Deadlines", NSDI 2024,
section 4 (greedy and its safety net) and section 5.2 (Uniform Progress with hysteresis), and the
authors' simulator, whose rules these follow line for line: `sky_spot/strategies/strawman.py`
(greedy) and the `rc_cr_threshold` strategy (Uniform Progress) of the can't-be-late simulator, as
vendored in FrontierCS/Frontier-CS `research/problems/cant_be_late` and andylizf/skynomad-artifact
`sky_spot/strategies/strategy.py` (the strong guarantee).
"""

from __future__ import annotations

import math

from orchestrator.core.policy.base import EPS_H, Choice, Situation
from orchestrator.core.policy.registry import register
from vocab import Market

# Slack in tick counts is compared after rounding; keep float noise from crossing an integer.
_TICK_EPS = 1e-7


def past_point_of_no_return(s: Situation, overheads: int = 1) -> bool:
    """True once the work left plus `overheads` restarts no longer fits strictly in the time left.

    The paper's safety net: with `need = C(t) + n*d` and `left = R(t)`, counted in whole ticks when
    there are ticks (need rounded up, left rounded down), the task is at risk once `need >= left`.
    With n = 1 it is the last moment at which an on-demand launch still finishes by the deadline;
    with n = 2 there is room for one more spot attempt that may be lost, then on-demand.
    """
    left = s.time_left_h
    if left is None:
        return False
    need = s.remaining_work_h + overheads * s.overhead_h
    if s.tick_h > 0:
        return math.ceil(need / s.tick_h - _TICK_EPS) >= math.floor(left / s.tick_h + _TICK_EPS)
    return need >= left - EPS_H


def safety_net(s: Situation) -> Choice | None:
    """The non-negotiable last word (Wu et al. section 4; the simulator's strong guarantee).

    Past the point of no return, on-demand, except that a spot instance that is already productive
    is kept: if it is reclaimed now, an on-demand launch still has exactly the time it needs, so
    staying costs nothing in safety and may save on-demand hours. None: the net does not apply.
    """
    if not past_point_of_no_return(s, 1):
        return None
    if s.current is Market.SPOT and s.productive and s.spot_available:
        return Choice.SPOT
    if s.overhead_h <= 0 and s.spot_available:
        return Choice.SPOT  # switching is free: nothing to lose by taking spot
    return Choice.ON_DEMAND


@register("on-demand")
def on_demand(s: Situation) -> Choice:
    """Always on-demand: the most expensive schedule, and the surest (the paper's `on_demand`)."""
    return Choice.WAIT if s.finished else Choice.ON_DEMAND


@register("spot-only")
def spot_only(s: Situation) -> Choice:
    """Spot whenever available, otherwise wait; never on-demand, whatever the deadline (`only_spot`)."""
    if s.finished or not s.spot_available:
        return Choice.WAIT
    return Choice.SPOT


@register("greedy")
def greedy(s: Situation) -> Choice:
    """Greedy (Wu et al. section 4, the simulator's `strawman`): spot when available, else wait.

    Only the safety net brings on-demand in, and once there it stays: the slack is spent, so every
    later tick is past the point of no return too. Without a deadline it is spot-only.
    """
    if s.deadline_h is None or s.finished:
        return spot_only(s)
    net = safety_net(s)
    if net is not None:
        return net
    return Choice.SPOT if s.spot_available else Choice.WAIT


def behind_line(s: Situation, ahead_h: float = 0.0) -> bool:
    """Is the work done below the straight line `C0 * (t + ahead) / R0` (the paper's ep(t))?"""
    assert s.deadline_h is not None
    expected = s.work_h * (s.elapsed_h + ahead_h) / s.deadline_h
    return s.done_h < expected - EPS_H


@register("uniform-progress")
def uniform_progress(s: Situation) -> Choice:
    """Uniform Progress with hysteresis (Wu et al. section 5.2; the simulator's `rc_cr_threshold`).

    - Spot whenever it is available, even when behind the line (taking risks); once on spot, stay
      until reclaimed (exploitation).
    - Idle and behind the line `C0 * t / R0`: on-demand, to catch up (uniform progress).
    - On on-demand, stay while spot is unavailable or while the work done is not ahead of the line
      at `t + 2d` (hysteresis: leaving must pay for the next switch and a possible switch back).
    - Idle or on on-demand with `C(t) + 2d` no longer fitting in `R(t)`: on-demand; and the safety
      net overrides everything. Without a deadline it is spot-only.
    """
    if s.deadline_h is None or s.finished:
        return spot_only(s)
    choice = Choice.SPOT if s.spot_available else Choice.WAIT
    if behind_line(s) and not s.spot_available:
        choice = Choice.ON_DEMAND
    if s.current is Market.ON_DEMAND and (not s.spot_available or not _ahead_after_switch(s)):
        choice = Choice.ON_DEMAND
    if s.current is not Market.SPOT and past_point_of_no_return(s, 2):
        choice = Choice.ON_DEMAND
    net = safety_net(s)
    return net if net is not None else choice


def _ahead_after_switch(s: Situation) -> bool:
    """The hysteresis test: is the work done strictly ahead of the line at `t + 2d`?"""
    assert s.deadline_h is not None
    return s.done_h > s.work_h * (s.elapsed_h + 2 * s.overhead_h) / s.deadline_h + EPS_H

