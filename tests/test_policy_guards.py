"""The shadow Uniform Progress of bench/policy_guards.py is Uniform Progress, tick for tick.

The guards there compare the default with what Uniform Progress would have done on the same window
so far; if the shadow drifted from the simulator's own Uniform Progress, every regret it reports
would be wrong. Synthetic traces, no data needed.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.policy_guards import Guarded, Shadow
from orchestrator.core.policy import get_policy
from orchestrator.core.policy.base import Choice, Situation
from orchestrator.research import fastsim
from vocab import Market


def _trace(seed: int, ticks: int) -> np.ndarray:
    """Runs of availability and outage of random lengths (1-30 ticks of 10 minutes)."""
    rng = np.random.default_rng(seed)
    out: list[bool] = []
    up = bool(rng.integers(2))
    while len(out) < ticks:
        out += [up] * int(rng.integers(1, 30))
        up = not up
    return np.array(out[:ticks])


class _Beside:
    """Runs `policy` with a shadow fed every situation it sees."""

    def __init__(self, name: str) -> None:
        self.policy, self.shadow = get_policy(name), Shadow()

    def __call__(self, s: Situation) -> Choice:
        self.shadow.see(s)
        return self.shadow.chose(self.policy(s), s)


# Seeds whose greedy run ends at least a tick after Uniform Progress at every d (so the shadow is
# realised to its end); greedy on the others ends in the same tick.
@pytest.mark.parametrize("seed", [0, 2, 3, 4, 6, 7, 8, 9])
@pytest.mark.parametrize("overhead_h", [0.05, 0.2, 0.5])
def test_shadow_costs_what_uniform_progress_costs(seed: int, overhead_h: float) -> None:
    setup = fastsim.Setup(8.0, 12.0, overhead_h)
    trace = _trace(seed, 12 * 6)
    up = fastsim.run(get_policy("uniform-progress"), trace, setup, track_history=False)
    # Greedy waits for the safety net, so it is still being called after Uniform Progress is done.
    beside = _Beside("greedy")
    greedy = fastsim.run(beside, trace, setup, track_history=False)
    assert up.finish_h is not None and greedy.finish_h is not None and greedy.finish_h > up.finish_h + 1 / 6
    assert beside.shadow.done_h == pytest.approx(setup.task_h)
    assert beside.shadow.cost == pytest.approx(up.cost)
    # ...and the spend it books for the policy beside it is that policy's own, up to the last interval
    # (the one it finished in, after which nobody asks the policy again).
    last = (setup.gap_s / 3600) * (setup.price_ratio if beside.shadow.own_market is Market.ON_DEMAND else 1.0)
    assert beside.shadow.own_cost + last == pytest.approx(greedy.cost)


def test_lag_cap_never_waits_far_behind_the_shadow() -> None:
    """In an outage the capped default goes on-demand rather than fall further behind the shadow."""
    setup = fastsim.Setup(8.0, 12.0, 0.05)
    trace = np.array([False] * 40 + [True] * 32)  # 6.7 h outage, then spot
    seen: list[tuple[float, Choice]] = []

    def policy(s: Situation) -> Choice:
        return Choice.WAIT if not s.spot_available else Choice.SPOT  # a plan that waits out any outage

    guarded = Guarded(policy, "lag-cap")

    def watch(s: Situation) -> Choice:
        choice = guarded(s)
        seen.append((guarded.shadow.lag_h(s), choice))
        return choice

    fastsim.run(watch, trace, setup, track_history=False)
    cap = 0.05 * setup.task_h / (setup.price_ratio - 1)
    assert any(c is Choice.ON_DEMAND for _, c in seen)
    assert all(c is not Choice.WAIT for lag, c in seen if lag >= cap)


def test_reserve_stops_waiting_when_the_slack_is_down_to_its_share() -> None:
    """The reserve (issue 25's second pass) waits out an outage while the slack left is above a quarter
    of Uniform Progress's reserve for the work left, and goes on-demand once it is not."""
    from bench.policy_guards import RESERVE_SHARE

    setup = fastsim.Setup(8.0, 12.0, 0.05)
    trace = np.array([False] * 40 + [True] * 32)
    seen: list[tuple[float, Choice]] = []

    def plan(s: Situation) -> Choice:  # waits out any outage; once on on-demand, stays
        if s.current is Market.ON_DEMAND:
            return Choice.ON_DEMAND
        return Choice.SPOT if s.spot_available else Choice.WAIT

    guarded = Guarded(plan, "reserve")

    def watch(s: Situation) -> Choice:
        choice = guarded(s)
        left = s.time_left_h
        assert left is not None
        seen.append((left - s.remaining_work_h, choice))
        return choice

    out = fastsim.run(watch, trace, setup, track_history=False)
    floor = RESERVE_SHARE * (12.0 - 8.0) / 8.0 * 8.0  # idle, nothing done yet: the work left is all of it
    waits = [slack for slack, c in seen if c is Choice.WAIT]
    assert waits and min(waits) >= floor  # it waits only while the slack after one more tick allows
    assert any(c is Choice.ON_DEMAND for _, c in seen) and out.deadline_met


def test_misfit_trips_on_a_regime_the_model_was_not_fitted_on() -> None:
    """Fitted on runs of hours, the model is told apart from a window where spot flickers every ten
    minutes, and not from a window like the ones it was fitted on."""
    from bench.policy_guards import Misfit
    from orchestrator.core.policy.market_model import fit

    model = fit([_trace(seed, 2000) for seed in range(10)])
    setup = fastsim.Setup(8.0, 12.0, 0.05)

    def misfit_on(trace: np.ndarray) -> bool:
        watch = Misfit(model)

        def policy(s: Situation) -> Choice:
            watch.see(s)
            return Choice.SPOT if s.spot_available else Choice.WAIT

        fastsim.run(policy, trace, setup)
        return watch.misfit

    assert misfit_on(np.arange(72) % 2 == 0)
    assert not misfit_on(_trace(99, 72))


def test_risk_prices_a_bet_by_what_it_can_lose() -> None:
    """Nothing for the baseline's own choice; leaving on-demand for spot risks more than launching spot
    from idle (a second restart); a tick of waiting, a tick at on-demand."""
    from bench.policy_guards import risk

    base = dict(elapsed_h=1.0, done_h=0.5, work_h=8.0, deadline_h=12.0, overhead_h=0.2, price_ratio=3.0,
                spot_available=True, tick_h=1 / 6)
    idle, on_od = Situation(current=None, **base), Situation(current=Market.ON_DEMAND, **base)  # type: ignore[arg-type]
    assert risk(Choice.ON_DEMAND, Choice.ON_DEMAND, on_od) == 0.0
    assert risk(Choice.SPOT, Choice.ON_DEMAND, on_od) > risk(Choice.SPOT, Choice.ON_DEMAND, idle) > 0.0
    assert risk(Choice.WAIT, Choice.ON_DEMAND, idle) == pytest.approx(3.0 / 6)
