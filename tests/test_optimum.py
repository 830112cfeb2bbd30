"""The omniscient optimum: exact on small cases, checked against every schedule (brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from orchestrator.core.policy import Choice, Situation, get_policy
from orchestrator.research import fastsim, optimum
from orchestrator.research.fastsim import Setup

TICK_H = 600 / 3600


def _brute_force(avail: np.ndarray, setup: Setup, ticks: int) -> tuple[float, set[float]]:
    """The cheapest cost over every sequence of (wait, on-demand, spot) per tick, replayed by the
    fast simulator, and the on-demand work of each sequence that reaches it."""
    best, splits = np.inf, set()
    options = [(Choice.WAIT, Choice.ON_DEMAND, Choice.SPOT) if up else (Choice.WAIT, Choice.ON_DEMAND)
               for up in avail[:ticks]]
    for plan in itertools.product(*options):

        def script(s: Situation, plan: tuple[Choice, ...] = plan) -> Choice:
            tick = round(s.elapsed_h / TICK_H)
            return plan[tick] if tick < len(plan) else Choice.WAIT

        out = fastsim.run(script, avail, setup, track_history=False)
        if not out.deadline_met:
            continue
        if out.cost < best - 1e-9:
            best, splits = out.cost, {round(out.od_work_h, 6)}
        elif abs(out.cost - best) <= 1e-9:
            splits.add(round(out.od_work_h, 6))
    return best, splits


@pytest.mark.parametrize("overhead_h", [0.0, 0.05, 0.2])
@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_on_small_windows(seed: int, overhead_h: float) -> None:
    rng = np.random.default_rng(seed)
    avail = rng.random(8) < 0.6
    setup = Setup(task_h=0.5, deadline_h=7 * TICK_H, overhead_h=overhead_h, price_ratio=3.0)
    want, splits = _brute_force(avail, setup, ticks=7)
    got = optimum.solve(avail[None, :], setup)
    assert got.cost[0] == pytest.approx(want, abs=1e-4)
    if np.isfinite(want):
        assert round(float(got.od_work_h[0]), 4) in {round(x, 4) for x in splits}
        assert got.od_work_h[0] + got.spot_work_h[0] == pytest.approx(0.5)


def test_waits_through_a_short_outage_rather_than_pay_on_demand() -> None:
    avail = np.array([1, 1, 0, 0, 1, 1, 1, 1, 1, 1], dtype=bool)
    setup = Setup(task_h=0.5, deadline_h=1.5, overhead_h=0.0, price_ratio=3.0)
    got = optimum.solve(avail[None, :], setup)
    assert got.od_work_h[0] == 0 and got.cost[0] == pytest.approx(0.5)


def test_infeasible_when_even_on_demand_is_late() -> None:
    setup = Setup(task_h=1.0, deadline_h=1.0, overhead_h=0.2)
    got = optimum.solve(np.ones((2, 12), dtype=bool), setup)
    assert not got.feasible.any()


def test_never_above_any_policy_and_two_zones_never_worse_than_one() -> None:
    rng = np.random.default_rng(7)
    zones = rng.random((6, 2, 40)) < 0.5
    setup = Setup(task_h=3.0, deadline_h=5.0, overhead_h=0.2, price_ratio=3.0)
    one, two = optimum.solve(zones[:, 0, :], setup), optimum.solve(zones, setup)
    assert (two.cost <= one.cost + 1e-4).all()
    for name in ("greedy", "uniform-progress", "auto", "on-demand"):
        costs = [fastsim.run(get_policy(name), w, setup).cost for w in zones[:, 0, :]]
        assert (one.cost <= np.array(costs) + 1e-4).all(), name
