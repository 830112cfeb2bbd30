"""Time and size of the `auto` policy's plans, per task shape (what its first decision costs).

    python bench/plan.py

Prints a markdown table: deadline, work, overhead, solve time (median of 3), plan size.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.core.policy._fitted import MODEL
from orchestrator.core.policy.planner import grid_for, plan

SHAPES = ((60.0, 48.0, 0.2), (10.0, 5.0, 0.1), (200.0, 100.0, 0.2))


def main() -> None:
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    print("| deadline h | work h | overhead h | solve (median of 3) | plan size |")
    print("|---:|---:|---:|---:|---:|")
    for deadline, work, overhead in SHAPES:
        grid = grid_for(deadline, work, overhead, 3.06 / 0.9731)
        times, size = [], 0
        for _ in range(3):
            start = time.perf_counter()
            size = plan(MODEL, grid).codes.nbytes
            times.append(time.perf_counter() - start)
        print(f"| {deadline:g} | {work:g} | {overhead:g} | {statistics.median(times):.2f} s | "
              f"{size / 2**20:.1f} MiB |", flush=True)


if __name__ == "__main__":
    main()
