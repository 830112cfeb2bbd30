"""What validating a job file costs: the first parse in a fresh process (imports included: pydantic and
the models since issue 24) and the steady-state parse, for this tree or another one (`--root`).

    python bench/spec_parse.py                       # this tree
    python bench/spec_parse.py --root /tmp/before    # another tree, e.g. made by
    git archive bde20c5 orchestrator providers | tar -x -C /tmp/before

Each run is its own process; the table gives the median of `--runs` processes (min and max beside),
and, per process, the median of 7 timings of 200 parses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JOB = """\
name = "fold-batch"
command = ["python", "fold.py", "--in", "seqs.fasta"]
env = { MODEL = "esmfold" }
[resources]
gpu = "V100"
min_gpu_memory_gb = 16
min_architecture = "volta"
[schedule]
estimated_hours = 39
deadline_hours = 200
budget_usd = 80
[checkpoint]
uri = "file:///data/ckpt/fold-batch"
[retry]
recover_on_exit_codes = [75]
[array]
count = 100
shard_size = 10
"""
PROBE = """
import json, statistics, sys, time, timeit
t0 = time.perf_counter()
from orchestrator.core.spec import parse_spec
text = sys.stdin.read()
parse_spec(text, source="job.toml", submitted_at=0.0)
first = time.perf_counter() - t0
runs = [timeit.timeit(lambda: parse_spec(text, source="job.toml", submitted_at=0.0), number=200) / 200
        for _ in range(7)]
print(json.dumps({"first": first, "parse": statistics.median(runs)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help="the tree whose orchestrator/ is timed")
    parser.add_argument("--runs", type=int, default=5, help="processes (default 5)")
    args = parser.parse_args()
    samples = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", PROBE], input=JOB, capture_output=True, text=True, check=True,
                             cwd=args.root, env={"PYTHONPATH": str(args.root), "PATH": "/usr/bin:/bin"})
        samples.append(json.loads(out.stdout))
    first = [s["first"] * 1000 for s in samples]
    parse = [s["parse"] * 1e6 for s in samples]
    print(f"root: {args.root}")
    print("| what | median | min | max |\n|---|---|---|---|")
    print(f"| import + first parse, ms | {statistics.median(first):.0f} | {min(first):.0f} | {max(first):.0f} |")
    print(f"| one parse after that, us | {statistics.median(parse):.0f} | {min(parse):.0f} | {max(parse):.0f} |")


if __name__ == "__main__":
    main()
