"""The multi-zone default asks the plan about spot in the checkpoint's region with that region's own run."""

from __future__ import annotations

from orchestrator.core.policy.base import Situation, SpotHistory
from orchestrator.core.policy.multizone import _home_history
from orchestrator.core.policy.multizone_base import MultiSituation, Zone, ZoneSeen, move_costs

ZONES = (Zone("us-central1-b", "us-central1"), Zone("us-east4-a", "us-east4"))
TICK = 1 / 6
# "Spot somewhere" has been up for ten hours: another zone was up or unseen all along.
SOMEWHERE = SpotHistory(observed_h=10.0, available_h=10.0, in_available_run=True, current_run_h=10.0,
                        recent_available=0.95)


def _at(home: ZoneSeen) -> MultiSituation:
    task = Situation(elapsed_h=10.0, deadline_h=48.0, work_h=24.0, done_h=4.0, overhead_h=0.2, price_ratio=3.15,
                     current=None, spot_available=True, tick_h=TICK, history=SOMEWHERE)
    return MultiSituation(task, ZONES, (home, ZoneSeen()), zone=None, home=0, moves=move_costs(ZONES))


def test_after_a_reclamation_at_home_the_plan_sees_a_fresh_run_and_the_zones_share() -> None:
    # Reclaimed at home last tick (seen down then), after 2 h up out of 4 h watched.
    home = ZoneSeen(seen_h=4.0, up_h=2.0, up_run_h=0.0, last_seen_h=10.0 - TICK, last_up_h=10.0 - 2 * TICK,
                    lost_at_h=10.0 - TICK, losses=3)
    h = _home_history(_at(home), [0])
    assert h is not None and h.in_available_run and abs(h.current_run_h - TICK) < 1e-9
    assert abs(h.recent_available - (2.0 + 0.5 * 2.0) / (4.0 + 2.0)) < 1e-9


def test_a_home_zone_running_for_hours_keeps_its_run_and_one_not_looked_at_leaves_the_history() -> None:
    running = ZoneSeen(now=True, seen_h=5.0, up_h=5.0, up_run_h=5.0, last_seen_h=10.0 - TICK, last_up_h=10.0 - TICK)
    h = _home_history(_at(running), [0])
    assert h is not None and abs(h.current_run_h - (5.0 + TICK)) < 1e-9
    unseen = ZoneSeen(seen_h=1.0, up_h=1.0, last_seen_h=3.0, last_up_h=3.0)
    assert _home_history(_at(unseen), [0]) is SOMEWHERE
