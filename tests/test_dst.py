"""The deterministic simulation harness (`bench.dst`) as a test: the real loop under injected faults.

50 seeds run on every CI run with no invariant violated; a seed replays the same trace; a planted bug
(the ledger correction of `loop.ledger` switched off) is found and shrunk to a prefix of its faults,
which shows the harness can fail, and so is one in a gang's plan. The benchmark runs 1,000 seeds (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator.loop.ledger as ledger
from bench._dst_check import INVARIANTS
from bench._dst_run import Outcome, run_seed, shortest_failing_prefix

REPO = Path(__file__).resolve().parent.parent
CI_SEEDS = 50
PLANTED_SEED = 2  # a seed whose world reclaims an instance before the deadline of its notice
GANG_SEED = 0  # a seed with a gang job that loses a node


def _report(outcomes: list[Outcome]) -> str:
    return "\n".join(f"seed {o.seed}: {name}: {msgs[0]}" for o in outcomes for name, msgs in o.violations.items())


@pytest.mark.slow
@pytest.mark.parametrize("block", range(5))
def test_fifty_seeds_hold_every_invariant(block: int) -> None:
    per = CI_SEEDS // 5
    outcomes = [run_seed(seed) for seed in range(block * per, (block + 1) * per)]
    failed = [o for o in outcomes if o.failed]
    assert not failed, "replay with `python -m bench.dst --seed S --shrink`:\n" + _report(failed)
    assert sum(len(o.injected) for o in outcomes) >= per * 3, "the seeds inject faults"


def test_the_seed_that_found_two_workers_crossing_a_budget_together_holds() -> None:
    """Seed 1037 (found beyond the first 1,000, 2026-12-06): two on-demand workers of one campaign, each
    under its budget by its own next tick, crossed it together by 2.3 cents; the guard now sees the job's
    whole next tick (`decide.choose`). It fails with no fault injected, so none are."""
    outcome = run_seed(1037, faults=[])
    assert not outcome.failed, _report([outcome])


def test_the_seed_that_found_a_reaped_gang_node_billed_short_holds() -> None:
    """Seed 1320 (2026-12-06): a controller crashed while ending a finished 4-node gang, after recording
    a node stopped and before stopping it; the reaper terminated it a tick later, but its node was billed
    only to the recorded stop. A reaped node is now billed to the reaping (`ledger.reaped`)."""
    outcome = run_seed(1320)
    assert not outcome.failed, _report([outcome])


def test_the_seed_that_found_an_exited_gang_head_billed_to_the_reaping_holds() -> None:
    """Seed 4269 (2026-12-06): a gang succeeded at its head's exit and the controller died before it
    recorded the nodes' ends; the reaper stopped the other three a tick later and moved the attempt's
    end there, which billed the exited head to the reaping too (2 cents over the cloud). The reaper now
    bills only the nodes it stops (`ledger.reaped`)."""
    outcome = run_seed(4269)
    assert not outcome.failed, _report([outcome])


def test_spend_while_the_controller_is_held_is_excused_and_only_that() -> None:
    """Seed 3312 (2026-12-06): a 4-node on-demand gang's head exited while the harness held the controller
    for 8 ticks; its other nodes ran on and passed the budget by 35.6 cents before the controller could end
    it. What ran while every controller was held is excused (and said so), not a violation."""
    outcome = run_seed(3312)
    assert not outcome.failed, _report([outcome])
    assert any("over budget" in line and "held" in line for line in outcome.excused.get("budget", ())), outcome.excused


def test_a_planted_budget_bug_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The excuse above does not hide the guard: with it blind to the job's other workers again (the bug
    of seed 1037), that seed, where nothing holds the controller, crosses its budget."""
    from orchestrator.core import totals

    monkeypatch.setattr(totals.JobTotals, "others_hourly", lambda self, skip: 0.0)
    found = run_seed(1037, faults=[])
    assert "budget" in found.violations, found.violations


def test_a_seed_replays_the_same_trace() -> None:
    first, second = run_seed(3), run_seed(3)
    assert first.trace == second.trace and len(first.trace) > 50
    assert first.injected == second.injected and first.injected


def test_a_planted_bug_is_found_and_shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "settle_ends", lambda *args, **kwargs: [])
    found = run_seed(PLANTED_SEED)
    assert "ledger" in found.violations, found.violations
    prefix = shortest_failing_prefix(PLANTED_SEED, found.faults)
    assert len(prefix) <= len(found.faults)
    assert run_seed(PLANTED_SEED, faults=prefix).failed
    if prefix:
        assert not run_seed(PLANTED_SEED, faults=prefix[:-1]).failed


def test_a_planted_gang_bug_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gangs are in the mix (issue 22): with the plan no longer recording each node's own end when a gang's
    attempt ends (rule G5), the nodes are billed to the attempt's end, and the ledger parts from the cloud.
    (The bug planted here before, the other nodes not stopped, is no longer one the ledger sees: the
    reaper stops them a tick later and bills each to then, since seed 1320.)"""
    import orchestrator.core.plan.gang as gang

    monkeypatch.setattr(gang, "ended_nodes", lambda *args, **kwargs: ())
    found = run_seed(GANG_SEED)
    assert "ledger" in found.violations, found.violations


@pytest.mark.postgres
def test_seeds_hold_on_postgresql(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text
    outcomes = []
    for seed in range(3):
        engine = create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        outcomes.append(run_seed(seed, url=postgres_url))
    failed = [o for o in outcomes if o.failed]
    assert not failed, _report(failed)


def test_the_command_prints_one_json_object() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "bench.dst", "--seeds", "2", "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["runs"] == 2 and doc["failing_seeds"] == []
    assert set(doc["violations"]) == set(INVARIANTS) and all(v == 0 for v in doc["violations"].values())
