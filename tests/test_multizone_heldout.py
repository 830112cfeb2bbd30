"""The multi-zone default on held-out windows of the public multi-region traces: a guard, not the benchmark.

A fixed sample (`bench/_multi_data.py`'s zone sets, C = 24 h, D = 48 h, d = 0.2 h, every other *late*
window, i.e. starting at hour 84 or later, which no constant of the default was chosen on) of the
kinds where the default is furthest from the optimum: AWS pairs of regions, GCP pairs of regions and
GCP sets of three zones. The full table is `python bench/policy.py --multi` (docs/benchmarks.md).
Skipped when the traces are not beside the repository (`ORCH_MULTI_TRACES_DIR`).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import _multi_data as md
from orchestrator.core.policy.multizone import get_multi_policy
from orchestrator.research import multizone_optimum, multizone_sim

pytestmark = pytest.mark.skipif(not md.available(), reason="multi-region traces not found")

GROUPS = ((md.AWS, "2 regions"), (md.GCP, "2 regions"), (md.GCP, "3 zones"))
# Pooled gap 0.0267 since the plan is asked about the home region with that region's own run and share
# (`multizone._home_history`; chosen on early windows) and the lookahead reads its own coarse table;
# 0.0279 before that, 0.0305 without the move margin, 0.0339 with the fixed one-hour patience.
MAX_GAP = 0.0275


def _group(cloud: str, kind: str) -> dict[str, list[float]]:
    cost: dict[str, list[float]] = {"auto": [], "uniform-progress": [], "eager-failover": [], "optimum": []}
    cost["misses"] = []
    for zs in md.zone_sets():
        if zs.cloud != cloud or zs.kind != kind:
            continue
        setup = dict(md.setups(cloud))["D=48 d=0.2"]
        starts = md.starts(cloud, setup)
        late = [i for i, s in enumerate(starts) if md.split(cloud, setup, s) == "late"][::2]
        windows = md.windows(zs, setup)[late]
        od = setup.on_demand_cost()
        for name in ("auto", "uniform-progress", "eager-failover"):
            outs = [multizone_sim.run(get_multi_policy(name), w, setup, zs.zones(), zs.moves()) for w in windows]
            cost[name] += [o.cost / od for o in outs]
            cost["misses"] += [float(not o.deadline_met) for o in outs]
        cost["optimum"] += list(multizone_optimum.solve(windows, setup, zs.zones(), zs.moves()) / od)
    return cost


def test_the_default_on_held_out_windows_misses_nothing_beats_the_baselines_and_stays_near_the_optimum() -> None:
    mine, best = [], []
    for cloud, kind in GROUPS:
        cost = _group(cloud, kind)
        assert cost["auto"], (cloud, kind)
        assert sum(cost["misses"]) == 0
        baseline = min(np.mean(cost["uniform-progress"]), np.mean(cost["eager-failover"]))
        assert np.mean(cost["auto"]) < baseline - 0.02, (cloud, kind)
        mine += cost["auto"]
        best += cost["optimum"]
    assert len(mine) == 81
    assert float(np.mean(mine) - np.mean(best)) <= MAX_GAP
