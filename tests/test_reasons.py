"""Every market decision says why, and so does a campaign's worker count (issue 23, "the first hour").

The texts come from `orchestrator.core.reasons`, built from the figures the decision was made on; the
loop puts them in the launch, switch and `workers` events. Checked through the real loop on a seed of
the deterministic simulation harness (jobs with deadlines, a campaign with one), no faults injected.
"""

from __future__ import annotations

from bench._dst_run import run_seed
from orchestrator.core.policy.base import Choice, Situation
from orchestrator.core.reasons import market_reason, switch_reason, workers_reason
from orchestrator.store import Store
from vocab import Market


def situation(**kw: object) -> Situation:
    base: dict[str, object] = dict(elapsed_h=1.0, deadline_h=10.0, work_h=6.0, done_h=1.0, overhead_h=0.2,
                                   price_ratio=3.2, current=None, spot_available=True)
    base.update(kw)
    return Situation(**base)  # type: ignore[arg-type]


def test_a_launch_names_its_reason_with_the_figures_it_was_made_on() -> None:
    assert market_reason(situation(), Choice.SPOT, asked="auto") == (
        "spot capacity is available, 3.2x cheaper than on-demand; 3.80 h to spare before the deadline for "
        "5.00 h of work")
    assert market_reason(situation(elapsed_h=9.0, done_h=5.5), Choice.ON_DEMAND, asked="auto") == (
        "the deadline needs on-demand; 0.30 h to spare before the deadline for 0.50 h of work (restart overhead "
        "0.20 h)")
    assert market_reason(situation(spot_available=False), Choice.ON_DEMAND, asked="auto").startswith(
        "no spot capacity is usable now")
    assert market_reason(situation(), Choice.ON_DEMAND, asked="on-demand") == "the job asks for on-demand"
    assert market_reason(situation(deadline_h=None), Choice.SPOT, asked="auto") == (
        "spot capacity is available, 3.2x cheaper than on-demand")


def test_a_switch_and_a_worker_count_name_their_reasons() -> None:
    assert switch_reason(situation(), Market.SPOT, Choice.ON_DEMAND) == (
        "switch from spot to on-demand: the deadline needs it (3.80 h to spare before the deadline)")
    assert switch_reason(situation(), Market.ON_DEMAND, Choice.WAIT).startswith("leave on-demand and wait for spot")
    assert workers_reason(1, 4, left_h=2.0, hours_left=20.0) == (
        "1 of 4 worker slots: the deadline needs 1 (2.00 h of items left, 20.00 h to the deadline); fewer "
        "workers lose less to each reclamation")
    assert workers_reason(3, 3, left_h=2.0, hours_left=None) == "3 of 3 worker slots: no deadline, so every slot works"


def test_the_loop_puts_the_reasons_in_its_events() -> None:
    seen: list[tuple[str, str, str]] = []

    def collect(store: Store) -> None:
        for job in store.jobs():
            seen.extend((job.name, e.kind, e.message) for e in store.events(job.id))

    outcome = run_seed(25, faults=[], inspect=collect)  # a seed whose second job is a campaign
    assert not outcome.failed, outcome.violations
    launches = [m for _, kind, m in seen if kind == "launch"]
    assert launches and all(": " in m.split(" at $", 1)[1] for m in launches), launches
    assert any("h to spare before the deadline" in m for m in launches)
    workers = [(name, m) for name, kind, m in seen if kind == "workers"]
    assert workers and all(m.split(" of ")[1].split(" worker slots:")[0].isdigit() for _, m in workers), workers
    assert all(name == "dst-1-campaign" for name, _ in workers)
