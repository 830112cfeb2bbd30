"""The gang simulator and the exact optimum on tiny traces: by hand, and against every schedule."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest

from orchestrator.core.policy.gang import GangAction, GangDecision, GangFacts
from orchestrator.research.gang_optimum import gang_optimum
from orchestrator.research.gang_sim import CountTraces, GangJob, load_count_traces, simulate
from orchestrator.research.traces import TraceError

HOUR = 3600.0


def job(nodes: int = 2, min_nodes: int = 2, work: float = 2.0, deadline: float = 5.0, d: float = 1.0) -> GangJob:
    return GangJob(nodes, min_nodes, work, deadline, d, spot_price=1.0, on_demand_price=3.0)


def one(*counts: int) -> CountTraces:
    return CountTraces(HOUR, {"a": counts})


@pytest.mark.parametrize(("counts", "deadline", "cost"), [
    ((2, 2, 2, 0, 0), 5.0, 6.0),     # spot from the start: 1 tick of overhead, 2 of work, 2 nodes at 1
    ((2, 2, 0, 2, 2), 5.0, 8.0),     # lost after 1 h of work, relaunched at 3 h, done at the deadline
    ((2, 2, 0, 0, 2), 5.0, 16.0),    # 1 h on spot, then on-demand from 2 h (overhead + 1 h): 4 + 12
    ((0, 0, 0, 0, 0), 3.0, 18.0),    # on-demand only: 3 ticks, 2 nodes at 3
    ((0, 0, 0, 0, 0), 2.0, math.inf),  # not even on-demand can make it
])
def test_optimum_of_a_rigid_gang_by_hand(counts: tuple[int, ...], deadline: float, cost: float) -> None:
    assert gang_optimum(job(deadline=deadline), one(*counts)) == cost


def test_an_elastic_gang_runs_on_one_node_at_half_the_rate() -> None:
    ones = one(1, 1, 1, 1, 1)
    assert gang_optimum(job(min_nodes=1), ones) == 5.0  # overhead, then 4 h at half the rate, 1 node
    assert gang_optimum(job(), ones) == 18.0  # rigid: no gang of 2 ever, so on-demand
    run = simulate(job(min_nodes=1), ones, "gang")  # the default keeps pace with its safety net: dearer
    assert run.deadline_met(5.0) and run.cost > 5.0


def test_a_fraction_of_a_tick_of_overhead() -> None:
    # d = 1.5 ticks: the second tick does half a tick of work, so 2 h of work take 3.5 ticks -> 4 billed
    assert gang_optimum(job(d=1.5), one(2, 2, 2, 2, 2)) == 8.0
    with pytest.raises(ValueError, match="not a simple fraction"):
        gang_optimum(job(d=math.pi / 10), one(2, 2, 2, 2, 2))


def scripted(plan: tuple[GangDecision, ...], gap_h: float) -> object:
    def policy(f: GangFacts) -> GangDecision:
        return plan[round(f.elapsed_h / gap_h)]
    return policy


def brute_force(j: GangJob, traces: CountTraces) -> float:
    """The least cost over every schedule the simulator can be told to follow."""
    assert j.deadline_h is not None
    ticks = round(j.deadline_h)
    zones = sorted(traces.counts)
    choices = [GangDecision(GangAction.WAIT), GangDecision(GangAction.ON_DEMAND, nodes=j.nodes)]
    choices += [GangDecision(GangAction.SPOT, z, k) for z in zones for k in range(j.min_nodes, j.nodes + 1)]
    best = math.inf
    for plan in itertools.product(choices, repeat=ticks):
        if any(c.action is GangAction.SPOT and traces.counts[c.zone or ""][i] < c.nodes for i, c in enumerate(plan)):
            continue
        run = simulate(j, traces, scripted(plan, 1.0), ticks=ticks)  # type: ignore[arg-type]
        if run.deadline_met(j.deadline_h):
            best = min(best, run.cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_optimum_is_the_least_cost_of_every_schedule(seed: int) -> None:
    rng = random.Random(seed)
    elastic = seed % 2 == 0
    zones = ("a",) if elastic else ("a", "b")
    traces = CountTraces(HOUR, {z: tuple(rng.choice((0, 1, 2, 2)) for _ in range(6)) for z in zones})
    j = job(min_nodes=1 if elastic else 2, work=rng.choice((2.0, 3.0)), deadline=6.0, d=rng.choice((0.5, 1.0)))
    opt = gang_optimum(j, traces)
    assert opt == pytest.approx(brute_force(j, traces))
    for name in ("gang", "gang-uniform-progress", "relaunch-on-any-preemption"):
        run = simulate(j, traces, name, ticks=6)
        if run.deadline_met(j.deadline_h):
            assert run.cost >= opt - 1e-9


def test_count_traces_of_a_folder(tmp_path: Path) -> None:
    for name, data, gap in (("us-a_x.json", [1, 2, 3], 600), ("us-b_x.json", [4, 5], 600)):
        tmp_path.joinpath(name).write_text(f'{{"metadata": {{"gap_seconds": {gap}}}, "data": {data}}}')
    t = load_count_traces(tmp_path)
    assert (len(t), sorted(t.counts), t.gap_seconds) == (2, ["us-a", "us-b"], 600.0)
    tmp_path.joinpath("us-c_x.json").write_text('{"metadata": {"gap_seconds": 300}, "data": [1]}')
    with pytest.raises(TraceError, match=r"us-c_x\.json: ticks of 300 s, not 600 s"):
        load_count_traces(tmp_path)
    with pytest.raises(TraceError, match=r"holds no \.json trace files"):
        load_count_traces(tmp_path / "none")
