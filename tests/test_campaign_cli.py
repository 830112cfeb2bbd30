"""A campaign at the command line: `orch results` in item order, and the campaign part of `orch status`."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.cli.wiring import open_store
from orchestrator.core.campaign import campaign_status
from orchestrator.core.cost import JobCost
from orchestrator.core.spec import JobSpec, ScheduleSpec
from orchestrator.core.status import JobStatus, job_status
from orchestrator.job.item_records import ItemCounts, QuarantinedItem
from orchestrator.store.items import ItemStore
from vocab import Resources

JOB = """name = "fold-campaign"
command = ["python3", "fold.py"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 1
[retry]
max_failures = 0
[array]
items = "seqs.fasta"
workers = 2
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def campaign_job(tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A submitted 5-item campaign: items 3, 0 and 1 done (in that order), item 2 quarantined."""
    (tmp_path / "seqs.fasta").write_text("".join(f">s{i}\nMKV\n" for i in range(5)))
    (tmp_path / "job.toml").write_text(JOB)
    code, out, _ = _run(capsys, "submit", str(tmp_path / "job.toml"), "--json")
    assert code == 0
    job_id: str = json.loads(out)["job_id"]
    items = ItemStore(open_store().engine)
    leases = {x.index: x for x in items.lease(job_id, "w", 5, now=time.time(), lease_seconds=600)}
    for i in (3, 0, 1):
        assert items.complete(job_id, "w", leases[i], now=time.time(), result=json.dumps({"plddt": 80 + i}))
    items.fail(job_id, "w", leases[2], reason="bad\x1b[31m input", now=time.time(), max_failures=0)
    items.release(job_id, "w", [leases[4].item_id], now=time.time())
    return job_id


def test_results_stream_in_item_order_as_json_lines(campaign_job: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "results", campaign_job[:8], "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["index"], r["key"], r["result"]) for r in rows] == [
        (0, "s0", {"plddt": 80}), (1, "s1", {"plddt": 81}), (3, "s3", {"plddt": 83})]
    code, out, _ = _run(capsys, "results", campaign_job)
    assert out.splitlines()[0] == '0\ts0\t{"plddt": 80}'


def test_results_of_a_job_without_items_is_a_clear_error(tmp_path: Path, orch_home: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "job.toml").write_text(JOB.split("[array]")[0])
    _, out, _ = _run(capsys, "submit", str(tmp_path / "job.toml"), "--json")
    code, _, err = _run(capsys, "results", json.loads(out)["job_id"])
    assert code == 1 and "is not a campaign" in err


def test_status_shows_the_campaign(campaign_job: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "status", campaign_job, "--json")
    assert code == 0
    c = json.loads(out)["campaign"]
    assert (c["total"], c["done"], c["queued"], c["quarantined"]) == (5, 3, 1, 1)
    assert c["quarantined_items"] == [{"index": 2, "key": "s2", "failures": 1, "reason": "bad?[31m input"}]
    assert c["rate_per_hour"] > 0 and c["eta_at"] is not None
    code, out, _ = _run(capsys, "status", campaign_job)
    assert "items      3/5 done" in out and "quarantined #2 s2: 1 failure(s), bad?[31m input" in out
    assert "\x1b" not in out


def _status(spent: float, projected: float, deadline_at: float | None) -> JobStatus:
    spec = JobSpec(name="c", command=("x",), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=1.0))
    base = job_status(job_id="j", name="c", spec=spec, created_at=0.0, deadline_at=deadline_at, tasks=[],
                      attempts=[], offers=[], now=0.0)
    cost = JobCost(spent_usd=spent, spot_usd=spent, on_demand_usd=0.0, projected_usd=projected,
                   on_demand_only_usd=2 * projected, saved_usd=None, projected_saved_usd=None, lost_usd=0.0,
                   preemptions=0, spot_hours=1.0, on_demand_hours=0.0)
    return dataclasses.replace(base, cost=cost)


def test_rate_eta_and_dollars_per_item_come_from_the_counts_and_the_job_cost() -> None:
    counts = ItemCounts(queued=500, leased=100, done=400, failed=0, quarantined=0)
    c = campaign_status(_status(spent=12.0, projected=30.0, deadline_at=10_000.0), counts, done_in_window=300,
                        window_s=1800.0, quarantined=[], now=1000.0)
    assert c.rate_per_hour == 600.0
    assert c.eta_at == 1000.0 + 600 / 600.0 * 3600.0 and c.on_time is True
    assert c.spent_usd_per_item == 12.0 / 400 and c.projected_usd_per_item == 30.0 / 1000
    late = campaign_status(_status(12.0, 30.0, deadline_at=2000.0), counts, done_in_window=300, window_s=1800.0,
                           quarantined=[], now=1000.0)
    assert late.on_time is False


def test_before_the_first_result_there_is_no_rate_and_quarantined_items_are_not_priced() -> None:
    counts = ItemCounts(queued=8, quarantined=2)
    c = campaign_status(_status(0.0, 10.0, None), counts, done_in_window=0, window_s=60.0,
                        quarantined=[QuarantinedItem(1, "k", 4, "boom")], now=0.0)
    assert (c.rate_per_hour, c.eta_at, c.on_time, c.spent_usd_per_item) == (None, None, None, None)
    assert c.projected_usd_per_item == 10.0 / 8
