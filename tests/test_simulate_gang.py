"""`orch simulate JOB --traces DIR --nodes N` for a gang, end to end through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.job_files import load_spec
from orchestrator.research.gang_optimum import gang_optimum
from orchestrator.research.gang_sim import GangJob
from orchestrator.simulate_gang import count_traces, gang_size, simulate_gang
from providers.sim import DEFAULT_SPOT_PRICE

REPO = Path(__file__).resolve().parent.parent
SPOT, RATIO = 1.0, 3.0


def orch(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def files(tmp_path: Path) -> tuple[Path, Path]:
    """A 2 h job with a 4 h deadline and d = 0.2 h; zone a holds 4 nodes in its first hour and from
    the third, zone b never more than 3 (ticks of 10 minutes)."""
    job = tmp_path / "gang.toml"
    job.write_text('name = "gang"\ncommand = ["true"]\n[resources]\ngpu = "H100"\n[schedule]\nestimated_hours = 2\n'
                   "deadline_hours = 4\nrestart_overhead_hours = 0.2\n")
    folder = tmp_path / "traces"
    folder.mkdir()
    for name, data in (("zone-a_h100_16.json", [4] * 6 + [2] * 6 + [4] * 30), ("zone-b_h100_16.json", [3] * 42)):
        folder.joinpath(name).write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": data}))
    return job, folder


def test_a_rigid_gang_through_the_cli_prints_the_json_of_a_simulation(tmp_path: Path, orch_home: Path) -> None:
    job, folder = files(tmp_path)
    out = orch("simulate", str(job), "--traces", str(folder), "--nodes", "4", "--deadline-hours", "4",
               "--price-ratio", str(RATIO), "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert {"cost_usd", "on_demand_only_usd", "deadline_met", "normalized_cost", "preemptions"} <= set(r)
    assert r["policy"] == "gang" and r["deadline_met"] and r["state"] == "succeeded"
    assert r["preemptions"] == 1  # the gang in zone a lost two nodes after an hour
    assert r["on_demand_only_usd"] == pytest.approx(4 * DEFAULT_SPOT_PRICE * RATIO * 2.2)  # all 4 nodes, C + d
    # the same through the library, at a spot price of 1: at least the optimum, and under on-demand only
    spec = load_spec(job, submitted_at=0.0)
    lib = simulate_gang(spec, count_traces(str(folder), ()), nodes=4, min_nodes=4, deadline_hours=4.0,
                        price_ratio=RATIO, spot_price=SPOT)
    best = gang_optimum(GangJob(4, 4, 2.0, 4.0, 0.2, SPOT, RATIO), count_traces(str(folder), ()))
    assert best <= lib.cost_usd < lib.on_demand_only_usd
    assert lib.normalized_cost == pytest.approx(r["normalized_cost"])


def test_relaunch_on_any_preemption_waits_for_four_nodes_and_an_elastic_gang_does_not(
        tmp_path: Path, orch_home: Path) -> None:
    job, folder = files(tmp_path)
    spec = load_spec(job, submitted_at=0.0)
    traces = count_traces(str(folder), ())
    sky = simulate_gang(spec, traces, nodes=4, min_nodes=4, policy="relaunch-on-any-preemption", deadline_hours=4.0)
    elastic = simulate_gang(spec, traces, nodes=4, min_nodes=2, deadline_hours=4.0)
    assert sky.on_demand_hours == 0 and sky.idle_hours > 0
    assert elastic.on_demand_hours == 0 and elastic.deadline_met and elastic.launches >= 2


def test_bad_gang_flags_are_refused_in_one_line(tmp_path: Path, orch_home: Path) -> None:
    job, folder = files(tmp_path)
    out = orch("simulate", str(job), "--traces", str(folder), "--nodes", "4", "--min-nodes", "5")
    assert out.returncode == 2 and "min_nodes must be between 1 and nodes (4), got 5" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = orch("simulate", str(job), "--traces", str(folder), "--nodes", "4", "--policy", "auto")
    assert out.returncode == 2 and "no gang policy named 'auto'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_gang_size_reads_the_spec_defensively(tmp_path: Path) -> None:
    job, _ = files(tmp_path)
    spec = load_spec(job, submitted_at=0.0)
    assert gang_size(spec, None, None) == (1, 1)  # no `nodes` in the spec: one node
    assert gang_size(spec, 8, None) == (8, 8)
    assert gang_size(spec, 8, 4) == (8, 4)
