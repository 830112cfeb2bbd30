"""`orch simulate` end to end: the real loop on the sim provider, against the fast policy-only path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.core.policy import get_policy
from orchestrator.core.spec import parse_spec
from orchestrator.research.fastsim import Setup, run
from orchestrator.research.traces import Trace, load_trace, traces_dir
from orchestrator.simulate import simulate_job
from tests.shared_data import data_missing

JOB = """
name = "sim"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 4
deadline_hours = 8
restart_overhead_hours = 0.2
"""


def _trace(tmp_path: Path, data: list[int], gap: float = 600.0) -> Path:
    path = tmp_path / "zone-a.json"
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return path


def test_simulate_json_has_the_documented_keys_and_sensible_numbers(
    tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    # Spot for 2 h, gone for 3 h, back for the rest.
    trace = _trace(tmp_path, [1] * 12 + [0] * 18 + [1] * 40)
    assert main(["simulate", str(job), "--trace", str(trace), "--policy", "greedy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"policy", "state", "task_hours", "deadline_hours", "restart_overhead_hours", "price_ratio",
                        "cost_usd", "on_demand_only_usd", "normalized_cost", "on_demand_hours", "spot_hours",
                        "idle_hours", "preemptions", "launches", "finish_hours", "deadline_met"}
    assert out["state"] == "succeeded" and out["deadline_met"] is True
    assert out["preemptions"] == 1
    # 2 h on spot (1.8 h of work after the 0.2 h overhead), a 3 h outage that greedy waits out (its
    # slack allows it), then spot again for the 2.2 h left plus a second overhead: 4.4 spot hours.
    assert out["spot_hours"] == pytest.approx(4.4)
    assert out["on_demand_hours"] == 0
    assert out["idle_hours"] == pytest.approx(3.0)
    assert out["finish_hours"] == pytest.approx(7.4)
    assert out["normalized_cost"] == pytest.approx(4.4 * 0.9731 / (4.2 * 3.06), rel=1e-3)


def test_simulate_refuses_a_bad_trace_clearly(tmp_path: Path, orch_home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    bad = tmp_path / "bad.json"
    bad.write_text('{"metadata": {"gap_seconds": 0}, "data": [1]}')
    assert main(["simulate", str(job), "--trace", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


@pytest.mark.parametrize("policy", ["greedy", "uniform-progress", "on-demand", "auto"])
def test_full_loop_and_fast_path_agree_on_a_hand_made_trace(policy: str) -> None:
    data = ([1] * 5 + [0] * 3 + [1] * 2 + [0] * 7) * 6
    trace = Trace(source="hand", gap_seconds=600.0, data=tuple(data), prices=None)
    spec = parse_spec(JOB, source="job.toml", submitted_at=0.0)
    full = simulate_job(spec, {"z": trace}, policy=policy, task_hours=4, deadline_hours=8, overhead_hours=0.2)
    fast = run(get_policy(policy), trace.available(), Setup(task_h=4, deadline_h=8, overhead_h=0.2))
    assert full.deadline_met and fast.deadline_met
    assert full.cost_usd / 0.9731 == pytest.approx(fast.ledger_cost, rel=0.01)
    assert full.preemptions == fast.preemptions


def test_full_loop_and_fast_path_agree_on_public_windows() -> None:
    root = traces_dir() / "derived-random-start-2week" / "us-west-2a_v100_1"
    if not root.is_dir():
        data_missing(f"public traces not found at {root} (set ORCH_TRACES_DIR)")
    spec = parse_spec(JOB, source="job.toml", submitted_at=0.0)
    for name in ("0.json", "7.json", "42.json"):
        trace = load_trace(root / name)
        for policy in ("greedy", "uniform-progress"):
            full = simulate_job(spec, {"z": trace}, policy=policy, task_hours=48, deadline_hours=60,
                                overhead_hours=0.2)
            fast = run(get_policy(policy), trace.available(), Setup(task_h=48, deadline_h=60, overhead_h=0.2))
            assert full.cost_usd / 0.9731 == pytest.approx(fast.ledger_cost, rel=0.01), (name, policy)


def test_simulate_traces_runs_a_folder_of_zones_and_refuses_a_misaligned_one(
    tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    folder = tmp_path / "zones"
    folder.mkdir()
    # Spot only in the second region's zone: the job must go there to run on spot.
    for name, data in (("us-east1-b_v100_1", [0] * 60), ("europe-west4-a_v100_1", [1] * 60)):
        (folder / f"{name}.json").write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": data}))
    assert main(["simulate", str(job), "--traces", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["state"] == "succeeded" and result["deadline_met"] and result["spot_hours"] > 0
    (folder / "asia-east1-a_v100_1.json").write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": [1] * 7}))
    assert main(["simulate", str(job), "--traces", str(folder)]) == 2
    assert "not aligned" in capsys.readouterr().err
