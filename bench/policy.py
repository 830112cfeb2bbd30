"""The policy benchmark: leave-one-dataset-out, and the paper's 2,400 windows.

    python bench/policy.py                 # single zone, leave-one-dataset-out (bench/policy_lodo.py)
    python bench/policy.py --multi         # multi-zone, leave-one-dataset-out
    python bench/policy.py --gang          # gangs of 8 and 16 nodes, leave-one-dataset-out (bench/policy_gang.py)
    python bench/policy.py --write-docs    # also replace that table in docs/benchmarks.md
    python bench/policy.py --paper         # every policy on the paper's windows (in-sample; not in the docs)
    python bench/policy.py --paper --multi # the issue-12 multi-zone bench (bench/_multi.py; not in the docs)

The leave-one-dataset-out tables are the ones to judge the default by: each public dataset is
scored with the availability model fitted on the others only, on windows at several grid offsets,
with the mean, median and worst window against Uniform Progress and the exact optimum.

With `--paper`:
For each setup (the paper's Table 3: C = 48 h, D = 60 h, d = 0.2 h; then d = 0.05 and 0.5 h, D = 52
and 70 h, and two zones together) it prints, per policy, the mean and standard deviation of the work
done on on-demand and on spot, the mean cost normalised to on-demand only, the ratio to the optimum
and the deadline misses, then how much of Uniform Progress's excess over the optimum `auto` removes,
and checks on a sample of windows that the full loop (`orch simulate`) costs what the fast path does.
Costs use the paper's accounting (`orchestrator.research.fastsim`); docs/policy.md says how it relates to orch's
per-second ledger.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np

from bench import _data, _heldout, _loop, _multi, _multi_data, _table, policy_data, policy_lodo
from orchestrator.core.policy import get_policy
from orchestrator.research import fastsim, optimum, traces

POLICIES = ("on-demand", "spot-only", "greedy", "uniform-progress", "auto")
LOOP_POLICIES = ("greedy", "uniform-progress", "auto")
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench/policy.py:start -->", "<!-- bench/policy.py:end -->"
MULTI_START, MULTI_END = "<!-- bench/policy.py --multi:start -->", "<!-- bench/policy.py --multi:end -->"
GANG_START, GANG_END = "<!-- bench/policy.py --gang:start -->", "<!-- bench/policy.py --gang:end -->"


Job = tuple[str, ...]


def evaluate(job: Job) -> tuple[Job, object]:
    """One unit of work, run in a worker process: a (setup, policy) over all its windows, one window
    of the full-loop check, or the held-out evaluation."""
    kind, setup_name = job[0], job[1]
    bench = next(b for b in _data.setups() if b.name == setup_name)
    if kind == "loop":
        return job, _loop.difference(bench, job[2], job[3], int(job[4]))
    if kind == "held-out":
        return job, _heldout.held_out(every=int(job[2]))
    policy, every = job[2], int(job[3])
    avail = _data.windows(bench, every)
    if policy == _table.OPTIMUM:
        best = optimum.solve(avail, bench.setup)
        return job, _table.Result(best.od_work_h, best.spot_work_h, best.cost, best.feasible)
    fn = get_policy(policy)
    outs = [fastsim.run(fn, a, bench.setup) for a in avail]
    return job, _table.Result(
        np.array([o.od_work_h for o in outs]), np.array([o.spot_work_h for o in outs]),
        np.array([o.cost for o in outs]), np.array([o.deadline_met for o in outs]))


def machine() -> str:
    return (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def report(args: argparse.Namespace) -> list[str]:
    every = 8 if args.quick else 1
    benches = _data.setups()
    samples = 10 if args.quick else args.loop_samples
    jobs: list[Job] = [("held-out", "paper", str(2 * every))] if args.held_out else []
    jobs += [("loop", "paper", p, env, str(i)) for p in LOOP_POLICIES for env, i in _loop.picks(benches[0], samples)]
    jobs += [("policy", b.name, p, str(every)) for b in benches for p in (*POLICIES, _table.OPTIMUM)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        done = dict(pool.map(evaluate, jobs, chunksize=1))
    elapsed = time.perf_counter() - started
    results = {b.name: {j[2]: done[j] for j in jobs if j[0] == "policy" and j[1] == b.name} for b in benches}
    flags = (" --quick" if args.quick else "") + (" --held-out" if args.held_out else "")
    lines = [f"Command: `python bench/policy.py{flags}` ({elapsed:.0f} s with {args.jobs} worker processes).", "",
             f"Machine: {machine()}.", ""]
    rows = []
    for b in benches:
        res = {name: r for name, r in results[b.name].items() if isinstance(r, _table.Result)}
        count = len(res[_table.OPTIMUM].cost)
        rows.append((b.name, count, res))
        lines += [f"### {b.title}: {count} windows", ""]
        lines += [*_table.policy_table(res, b.setup.on_demand_cost(), paper=b.name == "paper"), ""]
    lines += ["### auto against Uniform Progress and the optimum (mean cost, spot-price hours)", ""]
    lines += [*_table.summary_table(rows), ""]
    if args.held_out:
        lines += ["### auto on data its model was not fitted on (C = 48 h, D = 60 h, d = 0.2 h)", ""]
        lines += [*done[jobs[0]], ""]  # type: ignore[misc]
    lines += [f"### Full loop (`orch simulate`) against the fast path: {samples} windows of the paper's setup", ""]
    diffs = {p: [done[j] for j in jobs if j[0] == "loop" and j[2] == p] for p in LOOP_POLICIES}
    lines += [*_loop.table(diffs), ""]  # type: ignore[arg-type]
    return lines


def multi_report(args: argparse.Namespace) -> list[str]:
    """The multi-zone benchmark (`bench/_multi.py`): every job over worker processes, then the tables."""
    _multi.warm_plans()
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        done = dict(pool.map(_multi.evaluate, _multi.jobs(), chunksize=1))
    elapsed = time.perf_counter() - started
    header = [f"Command: `python bench/policy.py --multi` ({elapsed:.0f} s with {args.jobs} worker processes).", "",
              f"Machine: {machine()}."]
    return _multi.report(done, header)


def lodo_report(args: argparse.Namespace) -> list[str]:
    """The leave-one-dataset-out tables (`bench/policy_lodo.py`), single-zone or `--multi`."""
    if args.quick:
        policy_data.OFFSETS_H = policy_data.MULTI_OFFSETS_H = (0.0,)
    jobs = policy_lodo.multi_jobs() if args.multi else policy_lodo.single_jobs()
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        done = dict(pool.imap_unordered(policy_lodo.evaluate, jobs, chunksize=1))
    elapsed = time.perf_counter() - started
    flags = (" --multi" if args.multi else "") + (" --quick" if args.quick else "")
    lines = [f"Command: `python bench/policy.py{flags}` ({elapsed:.0f} s with {args.jobs} worker processes).", "",
             f"Machine: {machine()}.", "", *policy_lodo.describe(args.multi), ""]
    return lines + policy_lodo.report(done, args.multi)


def gang_main(args: argparse.Namespace) -> int:
    from bench import policy_gang

    if not policy_gang.available():
        print("gang count traces not found (set ORCH_TRACES_DIR)", file=sys.stderr)
        return 2
    table, elapsed = policy_gang.run(args.jobs)
    lines = [f"Command: `python bench/policy.py --gang` ({elapsed:.0f} s with {args.jobs} worker processes).", "",
             f"Machine: {machine()}.", "", *table]
    print("\n".join(lines))
    if args.write_docs:
        write_docs(lines, GANG_START, GANG_END)
    return 0


def write_docs(lines: list[str], start: str = START, end: str = END) -> None:
    _table.replace_between(DOCS, start, end, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one window in 8 (and 10 full-loop windows)")
    parser.add_argument("--write-docs", action="store_true", help=f"replace the table in {DOCS.relative_to(ROOT)}")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--loop-samples", type=int, default=50, help="windows for the full-loop check")
    parser.add_argument("--held-out", action="store_true", help="also test auto's model on data it was not fitted on")
    parser.add_argument("--multi", action="store_true", help="multi-zone policies instead")
    parser.add_argument("--paper", action="store_true", help="the in-sample benches of the paper's windows / issue 12")
    parser.add_argument("--gang", action="store_true", help="gang jobs (bench/policy_gang.py)")
    args = parser.parse_args(argv)
    if args.gang:
        return gang_main(args)
    if not args.paper:
        if not policy_data.available():
            print("public traces not found (set ORCH_TRACES_DIR and ORCH_MULTI_TRACES_DIR)", file=sys.stderr)
            return 2
        lines = lodo_report(args)
        print("\n".join(lines))
        if args.write_docs:
            write_docs(lines, *((MULTI_START, MULTI_END) if args.multi else (START, END)))
        return 0
    if args.write_docs:
        print("--paper tables are not written to the docs (the leave-one-dataset-out ones are)", file=sys.stderr)
        return 2
    if args.multi:
        if not _multi_data.available():
            print(f"multi-region traces not found under {_multi_data.data_dir()} (set {_multi_data.ENV})",
                  file=sys.stderr)
            return 2
        print("\n".join(multi_report(args)))
        return 0
    if not _data.available():
        print(f"public traces not found under {traces.traces_dir()} (set ORCH_TRACES_DIR)", file=sys.stderr)
        return 2
    print("\n".join(report(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
