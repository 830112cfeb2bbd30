"""The sim provider and `orch simulate` over several zones in several regions, from a folder of traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.core.spec import parse_spec
from orchestrator.research.traces import Trace, TraceError
from orchestrator.simulate import simulate_job, zone_regions, zone_traces
from providers.sim import SimClock, SimProvider
from vocab import Market, Resources

JOB = """
name = "zones"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 2
"""


def _write(folder: Path, name: str, data: list[int], gap: float = 600.0) -> None:
    (folder / name).write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))


def test_a_folder_is_one_aligned_trace_per_zone(tmp_path: Path) -> None:
    _write(tmp_path, "us-east4-a_h100_1.json", [1, 0, 1])
    _write(tmp_path, "europe-west1-c_h100_1.json", [0, 1, 1])
    traces = zone_traces(tmp_path)
    assert sorted(traces) == ["europe-west1-c", "us-east4-a"]
    assert zone_regions(traces) == {"europe-west1-c": "europe-west1", "us-east4-a": "us-east4"}
    _write(tmp_path, "us-west1-b_h100_1.json", [1, 1])
    with pytest.raises(TraceError, match="not aligned"):
        zone_traces(tmp_path)


def test_offers_carry_each_zone_region_and_regions_filter_them() -> None:
    clock = SimClock(0.0)
    traces = {"us-east4-a": Trace(600.0, (1, 1)), "europe-west1-c": Trace(600.0, (0, 1))}
    sim = SimProvider(clock, traces, zone_regions=zone_regions(traces))
    offers = sim.offers(Resources(gpus=("V100",)), [])
    assert {(o.zone, o.region) for o in offers} == {("us-east4-a", "us-east4"), ("europe-west1-c", "europe-west1")}
    only = sim.offers(Resources(gpus=("V100",)), ["europe-west1"])
    assert {o.zone for o in only} == {"europe-west1-c"}
    spot = next(o for o in only if o.market is Market.SPOT)
    assert spot.available is False
    with pytest.raises(ValueError, match="without a trace"):
        SimProvider(clock, traces, zone_regions={"us-west1-b": "us-west1"})


def test_simulate_runs_the_loop_over_zones_of_two_regions(tmp_path: Path) -> None:
    """Spot only in europe-west1-c for the first hour, then only in us-east4-a: the loop places the task
    in both regions in turn and finishes by the deadline."""
    _write(tmp_path, "us-east4-a_v100_1.json", [0] * 6 + [1] * 30)
    _write(tmp_path, "europe-west1-c_v100_1.json", [1] * 6 + [0] * 30)
    traces = zone_traces(tmp_path)
    spec = parse_spec(JOB, source="zones", submitted_at=0.0)
    result = simulate_job(spec, traces, policy="greedy", task_hours=2.0, deadline_hours=5.0, overhead_hours=0.05,
                          regions=zone_regions(traces))
    assert result.state == "succeeded" and result.deadline_met
    assert result.preemptions == 1 and result.on_demand_hours == 0
