"""The full loop (`orch simulate`: store, reconciler, policy, `sim` provider) against the fast path.

Both bill like orch's ledger (each attempt per second from launch to end), so on the same window and
policy their costs must agree; the benchmark asks for agreement within 1% on a sample of windows.
"""

from __future__ import annotations

import numpy as np

from bench._data import BenchSetup, env_windows
from orchestrator.core.policy import get_policy
from orchestrator.core.spec import parse_spec
from orchestrator.research import fastsim
from orchestrator.research.traces import Trace
from orchestrator.simulate import simulate_job

JOB = """
name = "bench"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 48
"""
TOLERANCE = 0.01


def picks(bench: BenchSetup, samples: int) -> list[tuple[str, int]]:
    """`samples` windows spread over the setup's environments and start times."""
    envs = [env for zone in bench.zones for env in zone]
    return [(envs[i % len(envs)], (i * 37) % 300) for i in range(samples)]


def difference(bench: BenchSetup, policy: str, env: str, index: int) -> float:
    """Relative cost difference of the full loop and the fast path on one window."""
    s = bench.setup
    avail = env_windows(env)[index]
    trace = Trace(600.0, tuple(int(x) for x in avail), None, f"{env}/{index}.json")
    full = simulate_job(parse_spec(JOB, source="bench", submitted_at=0.0), {"zone": trace}, policy=policy,
                        task_hours=s.task_h, deadline_hours=s.deadline_h, overhead_hours=s.overhead_h,
                        price_ratio=s.price_ratio)
    fast = fastsim.run(get_policy(policy), avail, s)
    return abs(full.cost_usd / fastsim.PAPER_SPOT_PRICE / fast.ledger_cost - 1.0)


def table(diffs: dict[str, list[float]]) -> list[str]:
    """Markdown lines: per policy, how many windows agree within 1%, and the largest difference."""
    lines = ["| policy | windows | within 1% | largest difference |", "|---|---|---|---|"]
    for name, ds in diffs.items():
        d = np.array(ds, dtype=float)
        lines.append(f"| {name} | {len(d)} | {int((d <= TOLERANCE).sum())} | {100 * d.max():.2f}% |")
    return lines
