"""What the multi-zone default's move lookahead costs per task shape (its first decision of a shape).

    python bench/lookahead.py

The lookahead (`orchestrator.core.policy.multizone_plan`) solves one table of expected costs per task
shape, cached; the first move decision of a new shape pays that solve. Prints a markdown table per
shape: the lookahead's grid, wall and CPU time of the solve (median of 5, fresh cache each time), the
table's size and the peak memory the solve allocates (tracemalloc), and beside it the size the exact
table on `auto`'s own grid had (what the lookahead solved before it had a grid of its own).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.core.policy.base import Situation
from orchestrator.core.policy.market_model import N_FEATURES
from orchestrator.core.policy.multizone_plan import ValuePlans, value_grid, zone_cell
from orchestrator.core.policy.planner import grid_for

K = 3.06 / 0.9731
# The benchmark's four (bench/policy.py --multi), the paper's, a short and a long one.
SHAPES = ((36.0, 24.0, 0.05), (36.0, 24.0, 0.2), (48.0, 24.0, 0.05), (48.0, 24.0, 0.2), (60.0, 48.0, 0.2),
          (10.0, 5.0, 0.1), (200.0, 100.0, 0.2))
RUNS = 5


def first_decision(deadline: float, work: float, overhead: float) -> tuple[float, float, int]:
    """Wall and CPU seconds of a fresh cache's first lookup (the solve plus one read), and the table's bytes."""
    s = Situation(elapsed_h=1.0, deadline_h=deadline, work_h=work, done_h=0.5, overhead_h=overhead,
                  price_ratio=K, current=None, spot_available=True, tick_h=1 / 6)
    wall, cpu = time.perf_counter(), time.process_time()
    table = ValuePlans().for_situation(s)
    table.idle(s, zone_cell(False, 0.5, None))
    return time.perf_counter() - wall, time.process_time() - cpu, table.nbytes


def main() -> None:
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| deadline h | work h | d h | grid (step x slack unit, rows x slack) | first decision wall (median of 5) "
          "| CPU | table | peak during solve | exact table on auto's grid |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for deadline, work, overhead in SHAPES:
        g = value_grid(deadline, work, overhead, K)
        runs = [first_decision(deadline, work, overhead) for _ in range(RUNS)]
        tracemalloc.start()
        first_decision(deadline, work, overhead)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        exact = grid_for(deadline, work, overhead, K)
        exact_bytes = (exact.steps + 1) * (exact.max_slack + 1) * N_FEATURES * 5  # float32 values + int8 actions
        print(f"| {deadline:g} | {work:g} | {overhead:g} | {g.step_s // 60} min x {g.unit_s} s, "
              f"{g.steps + 1} x {g.max_slack + 1} | {statistics.median(r[0] for r in runs):.2f} s "
              f"| {statistics.median(r[1] for r in runs):.2f} s | {runs[0][2] / 2**20:.1f} MiB "
              f"| {peak / 2**20:.1f} MiB "
              f"| {exact_bytes / 2**20:.1f} MiB |", flush=True)


if __name__ == "__main__":
    main()
