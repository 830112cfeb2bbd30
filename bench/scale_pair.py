"""Two trees' loop ticks side by side: `bench/scale.py` run in each, in turn (A B A B ...), and the median
CPU per tick of each shape with the ratio taken pair by pair, so a machine whose load drifts moves both.

    python bench/scale_pair.py BEFORE_DIR AFTER_DIR [--pairs 3] [--tasks 1000]

BEFORE_DIR and AFTER_DIR are checkouts (`git worktree add --detach DIR REV`); each runs with its own code
on PYTHONPATH. CPU time is the figure to read: the wall time follows the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path


def rows(tree: Path, tasks: int) -> dict[str, float]:
    """shape -> CPU ms per tick, from one run of the tree's own bench/scale.py."""
    argv = [sys.executable, "bench/scale.py", "--sqlite-only", "--tasks", str(tasks), "--ticks", "3", "--stored", "0",
            "--status-jobs", "100", "--items", "100", "--runs", "1"]
    out = subprocess.run(argv, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                         text=True, check=True).stdout
    found: dict[str, float] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 6 and cells[0].startswith("SQLite") and cells[1] not in found and cells[6].endswith("ms"):
            found[cells[1]] = float(cells[6].split()[0])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args(argv)
    pairs = [(rows(args.before, args.tasks), rows(args.after, args.tasks)) for _ in range(args.pairs)]
    print("| shape | CPU per tick before (median) | after (median) | after / before (median of pairs) | the pairs |")
    print("|---|---:|---:|---:|---|")
    for shape in pairs[0][0]:
        b, a = [p[0][shape] for p in pairs], [p[1][shape] for p in pairs]
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        print(f"| {shape} | {statistics.median(b):.0f} ms | {statistics.median(a):.0f} ms | "
              f"{statistics.median(ratios):.2f} | {', '.join(f'{r:.2f}' for r in ratios)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
