"""The fast simulator's accounting, checked against examples computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.core.policy import Choice, Situation, get_policy
from orchestrator.core.policy.base import SpotHistory
from orchestrator.research import fastsim
from orchestrator.research.fastsim import Setup

TICK_H = 600 / 3600


def _trace(*bits: int) -> np.ndarray:
    return np.array(bits, dtype=bool)


def test_spot_only_accounting_by_hand() -> None:
    """Task 0.95 h, d = 0.25 h (900 s), ticks of 600 s, spot-only.

    t0 launch; [0,1) pays 600 s of overhead; [1,2) pays the last 300 s and works 300; [2,3) works
    600 (900 done); tick 3 reads 0: reclaimed at 1800 s. Idle [3,5). t5 launch; [5,6) overhead;
    [6,7) 300 of work (1200); [7,10) 1800 more (3000); [10,11) the last 420 s: done at 6420 s.
    """
    avail = _trace(1, 1, 1, 0, 0, *[1] * 10)
    out = fastsim.run(get_policy("spot-only"), avail, Setup(task_h=0.95, deadline_h=3.0, overhead_h=0.25))
    assert out.launches == 2 and out.preemptions == 1
    assert out.spot_billed_h == pytest.approx(9 * TICK_H)  # ticks 0-2 and 5-10, each billed whole
    assert out.idle_h == pytest.approx(2 * TICK_H)
    assert out.spot_work_h == pytest.approx(0.95) and out.od_work_h == 0
    assert out.cost == pytest.approx(1.5)
    # the ledger bills 0-1800 s and 3000-6420 s: 0.5 h + 0.95 h
    assert out.ledger_cost == pytest.approx(1.45)
    assert out.finish_h == pytest.approx(6420 / 3600) and out.deadline_met


def test_on_demand_bills_k_per_hour_and_matches_the_setup_bound() -> None:
    setup = Setup(task_h=0.95, deadline_h=3.0, overhead_h=0.25, price_ratio=3.0)
    out = fastsim.run(get_policy("on-demand"), _trace(*[0] * 12), setup)
    # 900 s overhead + 3420 s of work = 4320 s: 8 ticks billed whole at k = 3
    assert out.od_billed_h == pytest.approx(8 * TICK_H) and out.cost == pytest.approx(4.0)
    assert out.ledger_cost == pytest.approx(1.2 * 3.0)
    assert setup.on_demand_cost() == pytest.approx(out.cost)


def test_a_change_of_market_pays_the_overhead_again() -> None:
    """Spot for two ticks, then the policy switches to on-demand while spot is still there."""

    def script(s: Situation) -> Choice:
        return Choice.SPOT if s.elapsed_h < 2 * TICK_H - 1e-9 else Choice.ON_DEMAND

    setup = Setup(task_h=0.5, deadline_h=3.0, overhead_h=0.1, price_ratio=2.0)  # d = 360 s
    out = fastsim.run(script, _trace(*[1] * 12), setup)
    # spot [0,2): 1200 - 360 = 840 s of work; on-demand from t2: 360 s overhead, then 960 s more
    assert out.launches == 2 and out.preemptions == 0
    assert out.spot_work_h == pytest.approx(840 / 3600) and out.od_work_h == pytest.approx(960 / 3600)
    assert out.spot_billed_h == pytest.approx(2 * TICK_H) and out.od_billed_h == pytest.approx(3 * TICK_H)
    assert out.cost == pytest.approx(2 * TICK_H + 2.0 * 3 * TICK_H)


def test_a_miss_is_recorded_and_the_task_runs_on() -> None:
    out = fastsim.run(get_policy("spot-only"), _trace(0, 0, 0, 1, 1, 1, 1), Setup(0.2, 0.5, 0.0))
    assert not out.deadline_met and out.finish_h == pytest.approx(0.5 + 0.2)
    never = fastsim.run(get_policy("spot-only"), _trace(0, 0, 0), Setup(0.2, 0.5, 0.0))
    assert never.finish_h is None and not never.deadline_met and never.cost == 0


def test_two_zones_relaunch_where_spot_is_left() -> None:
    zones = np.array([[1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]], dtype=bool)
    out = fastsim.run(get_policy("spot-only"), zones, Setup(task_h=0.5, deadline_h=2.0, overhead_h=0.0))
    # both zones were up for the first run; zone 0 is picked (tie), reclaimed at tick 2, relaunched in zone 1
    assert out.launches == 2 and out.preemptions == 1 and out.idle_h == 0
    assert out.finish_h == pytest.approx(0.5)


def test_policies_see_history_up_to_now_only() -> None:
    seen: list[SpotHistory] = []

    def spy(s: Situation) -> Choice:
        assert s.history is not None
        seen.append(s.history)
        return Choice.SPOT if s.spot_available else Choice.WAIT

    fastsim.run(spy, _trace(1, 1, 0, 0, 0, 1), Setup(task_h=0.5, deadline_h=1.0, overhead_h=0.0))
    assert [h.in_available_run for h in seen[:6]] == [True, True, False, False, False, True]
    assert seen[4].current_run_h == pytest.approx(3 * TICK_H)
    assert seen[5].outage_runs_h == pytest.approx((3 * TICK_H,))
    assert seen[5].available_runs_h == pytest.approx((2 * TICK_H,))
    assert seen[5].fraction_available == pytest.approx(3 / 6)
    recent = [h.recent_available for h in seen[:5]]
    assert recent[0] < recent[1] and recent[1] > recent[2] > recent[3] > recent[4]  # follows availability


def test_no_history_when_not_asked() -> None:
    def check(s: Situation) -> Choice:
        assert s.history is None
        return Choice.ON_DEMAND

    assert fastsim.run(check, _trace(1, 1), Setup(0.1, 1.0, 0.0), track_history=False).deadline_met
