"""orch's default market policy, `auto`: plan against a model of spot, under the safety net.

Rule. Past the safety net's point of no return, do what the net says (on-demand, or keep a productive
spot instance; `orchestrator.core.policy.simple.safety_net`, Wu et al., "Can't Be Late", NSDI 2024, section
4); idle or on on-demand with no room left for one more lost spot attempt (`C + 2d` no longer fits),
on-demand, as Uniform Progress does. Otherwise take the action of least expected cost in a Markov
decision process whose state is (time to the deadline, slack, spot availability now, age of the
current run of availability or outage, recent availability) and whose availability dynamics are a
semi-Markov model fitted on the public probe traces (`orchestrator.core.policy.planner`, `market_model`).

What this buys over Uniform Progress, which keeps to the straight line `C0 t / R0`: it waits out
outages that are likely short (young ones) and goes on-demand early in those that are likely long
(old ones, or any outage in a poor stretch); it leaves on-demand for spot as soon as spot is likely
to last, instead of paying on-demand until it is ahead of the line; and it spends the whole slack by
the deadline instead of finishing early on on-demand. It uses only what is known at decision time:
the history of availability the caller has seen (`Situation.history`), the measured overhead, the
price ratio. Without a deadline it is spot-only; a deadline that was feasible on on-demand is never
missed, because the net is checked first on every call.
"""

from __future__ import annotations

import dataclasses

from orchestrator.core.policy._fitted import MODEL
from orchestrator.core.policy.base import Choice, Situation
from orchestrator.core.policy.market_model import STEP_H, MarketModel
from orchestrator.core.policy.planner import Grid, Plan, grid_for, plan
from orchestrator.core.policy.registry import register
from orchestrator.core.policy.simple import past_point_of_no_return, safety_net, spot_only, uniform_progress
from vocab import Market

# Plans kept in memory at once (a 60 h task's plan is about 11 MiB, a 200 h one about 34 MiB:
# `python bench/plan.py`).
PLAN_CACHE_BYTES = 256 * 2**20
# Deadlines shorter than this many model steps (1 h), or work under one step, go to Uniform Progress.
MIN_PLANNED_STEPS = 6


class ModelPolicy:
    """The `auto` rule under a given availability model (the shipped one, or one fitted for a test).

    Keeps the plans of the last few grids itself: hashing the model's constants on every call would
    cost more than the rest of the decision.
    """

    def __init__(self, model: MarketModel) -> None:
        self.model = model
        self._plans: dict[Grid, Plan] = {}

    def __call__(self, s: Situation) -> Choice:
        if s.deadline_h is None or s.finished:
            return spot_only(s)
        net = safety_net(s)
        if net is not None:
            return net
        if s.current is not Market.SPOT and past_point_of_no_return(s, 2):
            return Choice.ON_DEMAND
        if s.deadline_h < MIN_PLANNED_STEPS * STEP_H or s.work_h < STEP_H:
            # The model works in STEP_H steps: a job whose deadline spans only a few, or whose work
            # fits in less than one, is below its resolution (it would idle through a demo), so the
            # straight-line rule decides.
            return uniform_progress(s)
        choice = self.plan_for(grid_for(s.deadline_h, s.work_h, s.overhead_h, s.price_ratio)).choice(s)
        if choice is Choice.SPOT and not s.spot_available:
            choice = Choice.WAIT
        return hedge(s, choice)

    def plan_for(self, grid: Grid) -> Plan:
        """The plan for `grid`, from a least-recently-used cache bounded by memory, not by count.

        A controller runs jobs of many shapes at once; plans are 1 KB to 40 MB and take up to a
        second to solve, so a count-bounded cache either thrashes or grows without limit.
        """
        found = self._plans.pop(grid, None)
        if found is None:
            found = plan(self.model, grid)
            while self._plans and found.codes.nbytes + sum(p.codes.nbytes for p in self._plans.values()) \
                    > PLAN_CACHE_BYTES:
                self._plans.pop(next(iter(self._plans)))  # least recently used first
        self._plans[grid] = found  # most recently used last
        return found


def hedge(s: Situation, choice: Choice) -> Choice:
    """The plan's choice, except that on on-demand it goes back to spot whenever Uniform Progress
    would (spot available, work ahead of the line at t + 2d; a deadline is assumed).

    The plan may prefer to ride on-demand through spot it expects to lose soon; where its model is
    wrong about the zone (a zone it has barely seen, a regime it did not fit), that bet pays on-demand
    for hours while spot is up, as in the issue's V100 windows (19.7 h on on-demand where Uniform
    Progress kept returning to spot). Leaving on-demand *earlier* than Uniform Progress stays the
    plan's call: it is where most of what the plan gains comes from (docs/policy.md, "Results").
    """
    if s.current is Market.ON_DEMAND and choice is Choice.ON_DEMAND and uniform_progress(s) is Choice.SPOT:
        return Choice.SPOT
    # Idle, it does not launch on-demand that the rule above would leave at the next tick: a launch
    # and a switch every tick (issue 25's campaign bench, a worker with 2.8 h of work and 9.8 h to
    # spare after a reclamation: 746 one-minute on-demand attempts in one run). It takes spot then,
    # as Uniform Progress does.
    if (s.current is None and choice is Choice.ON_DEMAND and s.spot_available
            and uniform_progress(dataclasses.replace(s, current=Market.ON_DEMAND)) is Choice.SPOT):
        return Choice.SPOT
    return choice


_DEFAULT = ModelPolicy(MODEL)


@register("auto")
def auto(s: Situation) -> Choice:
    """orch's default: the safety net, then the cheapest action in expectation (see the module doc)."""
    return _DEFAULT(s)
