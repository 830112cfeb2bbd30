"""`orch simulate` for a gang (`nodes > 1`): the gang policy on count traces, in `orch simulate`'s JSON.

Until the control loop runs gangs, a gang is simulated by the policy-only simulator
(`orchestrator.research.gang_sim`: the same decision function the loop will call, in the paper's
tick accounting), not through the reconciler and the `sim` provider as a one-node job is. The result
has the keys of `SimulationResult`; hours are the gang's (wall hours on each market), costs count
every node, and `on_demand_only_usd` is all N nodes on on-demand for the work and one overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.core.policy.gang import GANG_POLICIES
from orchestrator.core.spec import JobSpec
from orchestrator.research.fastsim import PAPER_PRICE_RATIO
from orchestrator.research.gang_sim import CountTraces, GangJob, load_count_traces, simulate
from orchestrator.research.traces import TraceError, load_trace
from orchestrator.simulate import SimulationResult
from providers.sim import DEFAULT_SPOT_PRICE

DEFAULT_GANG_POLICY = "gang"


def gang_size(spec: JobSpec, nodes: int | None, min_nodes: int | None) -> tuple[int, int]:
    """(N, min_nodes): the command line's, else the spec's `[resources] nodes` / `min_nodes` (read
    defensively: a spec without them is one node), min_nodes defaulting to N (a rigid gang)."""
    n = nodes if nodes is not None else int(getattr(spec.resources, "nodes", 1) or 1)
    spec_min = getattr(spec.resources, "min_nodes", None)
    m = min_nodes if min_nodes is not None else int(spec_min) if spec_min is not None else n
    if not 1 <= m <= n:
        raise ValueError(f"min_nodes must be between 1 and nodes ({n}), got {m}")
    return n, m


def count_traces(folder: str | None, files: Sequence[str]) -> CountTraces:
    """`--traces DIR` (one zone a file, cut to the shortest) and/or `--trace FILE`s (zone = file name)."""
    base = load_count_traces(folder) if folder is not None else None
    counts = dict(base.counts) if base is not None else {}
    gap = base.gap_seconds if base is not None else None
    for i, path in enumerate(files):
        trace = load_trace(path)
        if gap is not None and trace.gap_seconds != gap:
            raise TraceError(path, f"ticks of {trace.gap_seconds:g} s, not {gap:g} s as the other traces")
        gap = trace.gap_seconds
        zone = Path(path).stem
        counts[zone if zone not in counts else f"{zone}-{i}"] = trace.data
    if gap is None:
        raise TraceError("--trace", "no trace given")
    return CountTraces(gap, counts)


def simulate_gang(spec: JobSpec, traces: CountTraces, *, nodes: int, min_nodes: int, policy: str | None = None,
                  start_tick: int = 0, task_hours: float | None = None, deadline_hours: float | None = None,
                  overhead_hours: float | None = None, price_ratio: float | None = None,
                  spot_price: float = DEFAULT_SPOT_PRICE) -> SimulationResult:
    """Run a gang of `nodes` (`min_nodes`..`nodes` when elastic) from `start_tick` to the traces' end."""
    name = policy or DEFAULT_GANG_POLICY
    if name not in GANG_POLICIES:
        raise ValueError(f"no gang policy named {name!r} (known: {', '.join(sorted(GANG_POLICIES))})")
    sched = spec.schedule
    work = task_hours if task_hours is not None else sched.estimated_hours
    overhead = overhead_hours if overhead_hours is not None else sched.restart_overhead_hours
    ratio = price_ratio if price_ratio is not None else PAPER_PRICE_RATIO
    job = GangJob(nodes, min_nodes, work, deadline_hours, overhead, spot_price, spot_price * ratio)
    run = simulate(job, traces, name, start=start_tick)
    end_h = run.finish_h if run.finish_h is not None else (len(traces) - start_tick) * traces.gap_seconds / 3600
    return SimulationResult(
        policy=name, state="succeeded" if run.finish_h is not None else "cancelled", task_hours=work,
        deadline_hours=deadline_hours, restart_overhead_hours=overhead, price_ratio=ratio, cost_usd=run.cost,
        on_demand_only_usd=run.on_demand_only, normalized_cost=run.cost / run.on_demand_only if run.on_demand_only
        else 0.0, on_demand_hours=run.on_demand_hours, spot_hours=run.spot_hours,
        idle_hours=max(0.0, end_h - run.on_demand_hours - run.spot_hours), preemptions=run.preemptions,
        launches=run.launches, finish_hours=run.finish_h, deadline_met=run.deadline_met(deadline_hours))
