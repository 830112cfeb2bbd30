"""Campaigns run by the loop: `orch submit examples/fold/campaign.toml --wait --json`, end to end.

The local spot market reclaims every worker once (spot-market.json); their leased sequences go back
to the queue, the slots relaunch, and `orch results --json` holds every sequence exactly once, in
order. The slot rules themselves (core/campaign_plan.py) are checked as rules below.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.core.campaign_plan import (
    CampaignFacts,
    SlotPlan,
    offers_for_items,
    plan_slot,
    worker_work_hours,
    workers_wanted,
)
from orchestrator.core.decide import judge_ended
from orchestrator.core.model import Outcome, TaskState, Transition
from orchestrator.job.checkpoint.storage import StorageError
from orchestrator.job.item_records import ItemCounts
from orchestrator.job.items_format import ParsedItem
from orchestrator.loop.campaign_output import write_results
from orchestrator.store import Store
from orchestrator.store.items import ItemStore, insert_items
from tests.test_capacity_memory import _offer
from tests.test_totals import SPEC, _attempt, _task

REPO = Path(__file__).resolve().parents[1]
CAMPAIGN = REPO / "examples" / "fold" / "campaign.toml"
FASTA = REPO / "examples" / "fold" / "campaign.fasta"


def _orch(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL",)}
    env["ORCH_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_fold_campaign_finishes_every_item_exactly_once_through_reclamations(tmp_path: Path) -> None:
    submitted = _orch(tmp_path, "submit", str(CAMPAIGN), "--wait", "--json")
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    first, final = (json.loads(line) for line in submitted.stdout.splitlines())
    assert final["state"] == "succeeded"
    assert final["cost"]["preemptions"] >= 1  # the market reclaimed at least one worker...
    outcomes = [a["outcome"] for a in final["attempts"]]
    assert "preempted" in outcomes and outcomes.count("succeeded") >= 1  # ...and a slot relaunched
    assert len(final["tasks"]) == 4  # never more than `workers`

    results = _orch(tmp_path, "results", first["job_id"], "--json")
    assert results.returncode == 0, results.stderr
    rows = [json.loads(line) for line in results.stdout.splitlines()]
    keys = [line[1:].split()[0] for line in FASTA.read_text().splitlines() if line.startswith(">")]
    assert [r["index"] for r in rows] == list(range(len(keys)))  # every item once, in order
    assert [r["key"] for r in rows] == keys and all(r["result"]["id"] == r["key"] for r in rows)


def _facts(queued: int = 0, leased: int = 0, done: int = 0, failed: int = 0, quarantined: int = 0,
           live: int = 0) -> CampaignFacts:
    return CampaignFacts(ItemCounts(queued=queued, leased=leased, done=done, failed=failed, quarantined=quarantined),
                         live_workers=live)


def test_a_slot_launches_only_while_there_is_more_to_lease_than_workers_running() -> None:
    assert plan_slot(_facts(queued=5, live=2))[0] is SlotPlan.PLACE
    assert plan_slot(_facts(queued=2, live=2))[0] is SlotPlan.WAIT  # each running worker will take one
    assert plan_slot(_facts(leased=3, live=3))[0] is SlotPlan.WAIT  # held by others: may come back
    assert plan_slot(_facts(done=9, quarantined=1))[0] is SlotPlan.RETIRE
    assert _facts(done=9, quarantined=1).progress == 1.0 and _facts(queued=3, done=1).progress == 0.25


def test_a_worker_that_found_nothing_to_lease_waits_while_others_hold_items() -> None:
    task, attempt = _task(0, TaskState.RUNNING, 0.5), _attempt("t0", 0, random.Random(1))
    idle = judge_ended(SPEC, task, attempt, None, 0, cancel_requested=False, items_left=3)
    assert idle.outcome is Outcome.SUCCEEDED and idle.transitions == (Transition.IDLE,)
    done = judge_ended(SPEC, task, attempt, None, 0, cancel_requested=False, items_left=0)
    assert done.transitions == (Transition.SUCCEED,)


def test_items_that_ran_out_of_memory_ask_for_a_larger_gpu() -> None:
    small, big = _offer("a"), dataclasses.replace(_offer("b"), gpu_memory_gb=80)
    facts = _facts(queued=1)
    assert offers_for_items([small, big], facts) == (small, big)
    facts.memory_needed = 16
    assert [o.zone for o in offers_for_items([small, big], facts)] == [big.zone]


def test_a_finished_campaigns_output_holds_each_result_once_in_order(sqlite_store: Store, tmp_path: Path) -> None:
    job_id = sqlite_store.submit(SPEC, source="job.toml", now=0.0, checkpoint_uri="file:///tmp/orch-out")
    with sqlite_store.engine.begin() as conn:
        insert_items(conn, job_id, [ParsedItem(i, f"k{i}", json.dumps({"n": i})) for i in range(5)], 0.0)
    items = ItemStore(sqlite_store.engine)
    for lease in reversed(items.lease(job_id, "w1", 5, now=1.0, lease_seconds=60.0)):  # done out of order
        assert items.start(job_id, "w1", lease, now=1.0)
        square = json.loads(lease.payload)["n"] ** 2
        assert items.complete(job_id, "w1", lease, now=2.0, result=json.dumps({"sq": square}))
    out = tmp_path / "run" / "results.jsonl"
    out.parent.mkdir()
    assert write_results(items, job_id, out.as_uri()) == 5
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["index"], r["key"], r["result"]) for r in rows] == [(i, f"k{i}", {"sq": i * i}) for i in range(5)]
    for bad in ("file:///", "s3://bucket", "results.jsonl"):
        with pytest.raises(StorageError, match="names no file"):
            write_results(items, job_id, bad)


def test_the_deadline_sizes_the_workers_and_each_carries_its_share() -> None:
    facts = _facts(queued=10_000)
    # 38.9 h of work: 24 h left asks for 6 workers (work in 30% of the time left), 2 h for every slot.
    assert workers_wanted(facts, slots=32, total_h=38.9, hours_left=24.0, overhead_h=0.1) == 6
    assert workers_wanted(facts, slots=32, total_h=38.9, hours_left=2.0, overhead_h=0.1) == 32
    assert workers_wanted(facts, slots=32, total_h=38.9, hours_left=None, overhead_h=0.1) == 32  # no deadline
    assert workers_wanted(facts, slots=32, total_h=38.9, hours_left=0.1, overhead_h=0.1) == 32  # late: all
    facts.wanted, facts.live_workers = 6, 6
    assert plan_slot(facts)[0] is SlotPlan.WAIT  # the seventh slot waits
    assert worker_work_hours(facts, total_h=38.9, slots=32) == 38.9 / 6
