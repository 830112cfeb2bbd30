"""orch's default policy `auto`: its model, its plans, its rules, and the deadline it never misses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from orchestrator.core.policy import Choice, Situation, SpotHistory, get_policy
from orchestrator.core.policy import market_model as mm
from orchestrator.core.policy.planner import grid_for
from orchestrator.research import fastsim
from vocab import Market

STEP = mm.STEP_H
auto = get_policy("auto")


def _history(available: bool, run_h: float, recent: float) -> SpotHistory:
    return SpotHistory(observed_h=100.0, available_h=60.0, in_available_run=available, current_run_h=run_h,
                       recent_available=recent)


def _situation(**kw: object) -> Situation:
    """The paper's task (C 48 h, D 60 h, d 0.2 h, k 3.14) at t = 6 h, 5 h done: 11 h of slack left."""
    base = Situation(elapsed_h=6.0, deadline_h=60.0, work_h=48.0, done_h=5.0, overhead_h=0.2,
                     price_ratio=fastsim.PAPER_PRICE_RATIO, current=None, spot_available=False, tick_h=STEP,
                     history=_history(False, STEP, 0.6))
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_waits_out_a_young_outage_when_the_slack_allows() -> None:
    assert auto(_situation()) is Choice.WAIT


def test_goes_on_demand_in_an_old_outage_in_a_poor_stretch_with_little_slack() -> None:
    old = _situation(elapsed_h=20.0, done_h=14.5, history=_history(False, 6.0, 0.1))  # 6 h of slack left
    assert auto(old) is Choice.ON_DEMAND


def test_takes_spot_and_leaves_on_demand_for_spot_that_is_likely_to_last() -> None:
    up = _history(True, 3.0, 0.8)
    assert auto(_situation(spot_available=True, history=up)) is Choice.SPOT
    assert auto(_situation(spot_available=True, history=up, current=Market.ON_DEMAND)) is Choice.SPOT
    # an on-demand instance still paying its overhead is kept
    paying = _situation(spot_available=True, history=up, current=Market.ON_DEMAND, overhead_left_h=0.1)
    assert auto(paying) is Choice.ON_DEMAND


def test_without_a_deadline_it_is_spot_only() -> None:
    assert auto(_situation(deadline_h=None)) is Choice.WAIT
    assert auto(_situation(deadline_h=None, spot_available=True)) is Choice.SPOT
    assert auto(_situation(history=None, spot_available=True)) is Choice.SPOT  # no history: still decides


def _markov_trace(rng: np.random.Generator, ticks: int, stay_up: float, stay_down: float) -> np.ndarray:
    out, up = np.empty(ticks, dtype=bool), bool(rng.random() < 0.5)
    for t in range(ticks):
        out[t] = up
        up = rng.random() < (stay_up if up else stay_down)
    return out


@pytest.mark.parametrize(("task_h", "deadline_h", "overhead_h"), [(4.0, 4.5, 0.2), (6.0, 9.0, 0.05), (5.0, 6.0, 0.5)])
def test_never_misses_a_deadline_that_on_demand_could_meet(task_h: float, deadline_h: float, overhead_h: float) -> None:
    rng = np.random.default_rng(int(task_h * 10 + overhead_h * 100))
    setup = fastsim.Setup(task_h=task_h, deadline_h=deadline_h, overhead_h=overhead_h)
    for stay_up, stay_down in [(0.9, 0.9), (0.5, 0.95), (0.98, 0.3), (0.7, 0.7)]:
        for _ in range(4):
            avail = _markov_trace(rng, 80, stay_up, stay_down)
            out = fastsim.run(auto, avail, setup)
            assert out.deadline_met, (stay_up, stay_down, avail.astype(int).tolist())


def test_fit_recovers_a_regular_pattern() -> None:
    pattern = np.array(([True] * 3 + [False] * 2) * 400)
    model = mm.fit([pattern])
    hazard = np.asarray(model.hazard)
    recent = mm.feature(True, 1, 0.6) % mm.N_RECENT  # the recent bucket this pattern settles in (0.6)
    assert hazard[0, 1, recent] == pytest.approx(1.0, abs=0.02)  # outages end after their 2nd step
    assert hazard[1, 0, recent] == pytest.approx(0.0, abs=0.02)  # available runs outlive their 1st step...
    assert hazard[1, 2, recent] == pytest.approx(1.0, abs=0.02)  # ...and end after their 3rd
    p = model.transitions()
    assert p.shape == (mm.N_FEATURES, mm.N_FEATURES)
    assert np.allclose(p.sum(axis=1), 1.0)


def test_features_of_a_history() -> None:
    fresh = mm.feature_of(True, None)
    assert fresh == mm.feature(True, 1, 0.6)
    old_poor = mm.feature_of(False, _history(False, 20.0, 0.1))
    assert old_poor == mm.feature(False, 120, 0.1)
    assert not mm.available_cells()[old_poor] and mm.available_cells()[fresh]


def test_grids() -> None:
    paper = grid_for(60.0, 48.0, 0.2, 3.1446)
    assert (paper.step_s, paper.unit_s, paper.overhead, paper.steps, paper.max_slack) == (600, 120, 6, 360, 360)
    assert paper.owed == (0, 1) and paper.price_ratio == 3.14
    small_d = grid_for(60.0, 48.0, 0.05, 3.0)
    assert (small_d.unit_s, small_d.overhead, small_d.max_slack) == (60, 3, 720)
    long = grid_for(14 * 24.0, 100.0, 0.2, 3.0)
    assert long.step_s == 600 * 5 and long.steps <= 480 and long.max_slack <= 1000


def test_long_deadlines_plan_in_longer_steps_and_still_decide() -> None:
    two_weeks = Situation(elapsed_h=10.0, deadline_h=14 * 24.0, work_h=100.0, done_h=9.0, overhead_h=0.2,
                          price_ratio=3.0, current=None, spot_available=True, tick_h=5 / 3600,
                          history=_history(True, 2.0, 0.7))
    assert auto(two_weeks) is Choice.SPOT
    assert auto(dataclasses.replace(two_weeks, spot_available=False, history=_history(False, 0.1, 0.7))) is Choice.WAIT


def test_auto_does_not_idle_a_job_shorter_than_its_model_resolution() -> None:
    """A demo-sized job (deadline of half an hour) must take available spot, not wait for the plan."""
    s = Situation(elapsed_h=0.06, deadline_h=0.5, work_h=0.02, done_h=0.0, overhead_h=0.001, price_ratio=3.33,
                  current=None, spot_available=True, tick_h=2 / 3600,
                  history=SpotHistory().observe(True, 2 / 3600))
    assert get_policy("auto")(s) is Choice.SPOT


def test_auto_takes_spot_for_work_shorter_than_one_model_step() -> None:
    s = Situation(elapsed_h=0.05, deadline_h=2.0, work_h=0.02, done_h=0.0, overhead_h=0.0005, price_ratio=3.33,
                  current=None, spot_available=True, tick_h=0.2 / 3600,
                  history=SpotHistory().observe(True, 0.2 / 3600))
    assert get_policy("auto")(s) is Choice.SPOT


def test_plans_of_several_job_shapes_stay_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller with jobs of many shapes must not re-solve a plan every tick (a second each)."""
    from orchestrator.core.policy import auto as auto_module

    solved: list[object] = []
    real = auto_module.plan

    def counting(model: mm.MarketModel, grid: object) -> object:
        solved.append(grid)
        return real(model, grid)  # type: ignore[arg-type]

    monkeypatch.setattr(auto_module, "plan", counting)
    policy = auto_module.ModelPolicy(auto_module.MODEL)
    shapes = [grid_for(d, w, 0.1, 3.2) for d, w in ((10, 5), (12, 5), (14, 6), (16, 8))]
    for _ in range(3):
        for g in shapes:
            policy.plan_for(g)
    assert len(solved) == len(shapes)
