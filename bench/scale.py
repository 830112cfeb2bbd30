"""The reconcile loop at scale: tick time, database rows and provider calls per tick, memory, status, submit.

Every task runs on the `sim` provider (no processes, no network), so what is measured is the loop:
    (a) N single-task jobs, (b) N/100 array jobs of 100 shards each, all running;
    a store of --stored tasks of which the smallest N run (the rest finished, by the loop itself);
    `orch status --limit 50` over --status-jobs jobs; `Store.submit` of one array job of --items items.
Each loop measurement runs in its own process (its peak RSS is the controller's with that many tasks)
on a fresh database, and reports the median of --ticks steady-state ticks twice: quiet (nothing
changes) and progress (every running task reports new progress each tick, as heartbeats do).

    python bench/scale.py [--tasks 100,1000] [--ticks 3] [--stored 2000] [--status-jobs 10000]
                          [--items 10000] [--postgres URL]

PostgreSQL is measured when --postgres (or ORCH_TEST_POSTGRES_URL) names a server; every
measurement gets a fresh database on it. Sizes not measured (10,000 running tasks by default) are
extrapolated linearly from the largest measured size and labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._scale_cli import fill_jobs, status_env, time_array_submit, time_cli_start, time_status
from bench._scale_counters import calls_text
from bench._scale_loop import SHAPES, measure_phases
from bench.reconcile import _drop, _postgres_db

TARGET = 10_000  # running tasks the loop must handle (issue 10)


@contextmanager
def fresh_store(admin_url: str | None) -> Iterator[tuple[str, Path]]:
    """(database URL, ORCH_HOME) of an empty store: SQLite in a temporary folder, else a new PostgreSQL database."""
    with tempfile.TemporaryDirectory(prefix="orch-scale-") as tmp:
        if admin_url is None:
            yield f"sqlite:///{Path(tmp) / 'orch.db'}", Path(tmp)
            return
        name, url = _postgres_db(admin_url)
        try:
            yield url, Path(tmp)
        finally:
            _drop(admin_url, name)


def one(url: str, tasks: int, shape: str, ticks: int, stored: int) -> list[dict[str, Any]]:
    """One store's loop measurements (quiet, then progress ticks) as dicts, with this process's peak RSS
    in MiB (the same for both: the process that ran both phases)."""
    results = measure_phases(url, tasks, shape, ticks=ticks, stored=stored)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [{"shape": f"{r.shape}, {phase}", "running": r.running, "stored": r.stored, "jobs": r.jobs,
             "alive": r.alive, "tick": r.tick, "ticks": r.tick_s, "cpu": r.cpu, "rows": r.rows_per_tick,
             "task_rows": r.task_rows_per_tick,
             "statements": r.statements_per_tick, "updates": r.task_updates_per_tick, "calls": r.calls,
             "setup": r.setup_s, "rss": rss} for phase, r in results.items()]


def run_one(url: str, tasks: int, shape: str, ticks: int, stored: int = 0) -> list[dict[str, Any]]:
    """`one` in a new process, so that its peak RSS is this measurement's alone."""
    arg = json.dumps([url, tasks, shape, ticks, stored])
    done = subprocess.run([sys.executable, __file__, "--one", arg], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {tasks} {shape} tasks failed:\n{done.stderr[-3000:]}")
    rows: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def loop_row(store: str, r: dict[str, Any]) -> str:
    if r["alive"] != r["running"]:
        raise RuntimeError(f"{r['alive']} of {r['running']} tasks running after the warm-up ticks")
    return (f"| {store} | {r['shape']} | {r['running']:,} | {r['stored']:,} | {r['jobs']:,} | {_ms(r['tick'])} "
            f"| {_ms(r['cpu'])} "
            f"| {r['tick'] / r['running'] * 1000:.2f} ms | {r['rows']:,.0f} | {r['task_rows']:,.0f} "
            f"| {r['updates']:,.0f} "
            f"| {r['statements']:,.0f} "
            f"| {calls_text(r['calls'])} | {r['rss']:.0f} MiB |")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


LOOP_HEAD = ["| store | shape | running tasks | stored tasks | jobs | tick (median) | its CPU time | per running task "
             "| rows read / tick | of them task + attempt rows "
             "| task rows written / tick | statements / tick | provider calls / tick | peak RSS |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]


def measure_store(label: str, admin: str | None, args: argparse.Namespace, out: dict[str, list[str]]) -> None:
    """Every measurement on one kind of store, appending markdown rows to `out`."""
    largest: dict[str, dict[str, Any]] = {}
    for tasks in args.sizes:
        for shape in SHAPES:
            with fresh_store(admin) as (url, _):
                rows = run_one(url, tasks, shape, args.ticks)
            for r in rows:
                out["loop"].append(loop_row(label, r))
                largest[r["shape"]] = r
                print(out["loop"][-1], flush=True)
    if args.stored:
        with fresh_store(admin) as (url, _):
            rows = run_one(url, min(args.sizes), "single", args.ticks, args.stored)
        for r in rows:
            out["loop"].append(loop_row(label + ", finished jobs stored", r))
            print(out["loop"][-1], flush=True)
    for shape, r in largest.items():
        if r["running"] < TARGET:
            t = r["tick"] * TARGET / r["running"]
            out["extrapolated"].append(f"- {label}, {shape}: ~{_ms(t)} per tick at {TARGET:,} running tasks "
                                       f"(**extrapolated** linearly from {r['running']:,}; not measured)")
    _status(label, admin, args, out)
    _submit(label, admin, args, out)


def _status(label: str, admin: str | None, args: argparse.Namespace, out: dict[str, list[str]]) -> None:
    with fresh_store(admin) as (url, home):
        submit_s = fill_jobs(url, args.status_jobs)
        env = status_env(url, home)
        cpu: list[float] = []
        t = statistics.median(time_status(env, args.runs, cpu=cpu))
        start = time_cli_start(env, args.runs)
    out["status"].append(f"| {label} | {args.status_jobs:,} | {t:.2f} s | {statistics.median(cpu):.2f} s "
                         f"| {start:.2f} s "
                         f"| {submit_s * 1000:.1f} ms |")
    print(out["status"][-1], flush=True)


def _submit(label: str, admin: str | None, args: argparse.Namespace, out: dict[str, list[str]]) -> None:
    with fresh_store(admin) as (url, _):
        times = time_array_submit(url, args.items, args.runs)
    out["submit"].append(f"| {label} | {args.items:,} | {statistics.median(times):.2f} s "
                         f"| {min(times):.2f} s | {max(times):.2f} s |")
    print(out["submit"][-1], flush=True)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"Machine: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the start")


def report(args: argparse.Namespace, out: dict[str, list[str]], took: float) -> None:
    print(f"\n{machine()}\nDate: {time.strftime('%Y-%m-%d')}; {took:.0f} s in all.\n")
    print(f"Loop: median of {args.ticks} steady-state ticks (after 2 warm-up ticks that launch everything): quiet "
          "(no task reports progress yet: nothing to write), then progress (every task reports progress each "
          "tick); peak RSS of the process that ran both.\n")
    print("\n".join(LOOP_HEAD + out["loop"]))
    if out["extrapolated"]:
        print("\n" + "\n".join(out["extrapolated"]))
    print(f"\n`orch status --limit 50` as a new process, median of {args.runs}:\n")
    print("| store | jobs stored | `orch status --limit 50` | its CPU time | `orch --help` | one `Store.submit` "
          "(mean of the first 1,000; the rest are copies) |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(out["status"]))
    print(f"\nOne array job of one-item shards: `parse_spec` + `Store.submit`, {args.runs} runs:\n")
    print("| store | items (tasks) | median | min | max |")
    print("|---|---:|---:|---:|---:|")
    print("\n".join(out["submit"]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--tasks", default="100,1000", help="running task counts, comma-separated (default 100,1000)")
    p.add_argument("--ticks", type=int, default=3, help="steady-state ticks measured per row (default 3)")
    p.add_argument("--stored", type=int, default=2000,
                   help="tasks stored in all for the finished-jobs row, the smallest --tasks of them running "
                        "(default 2000; 0 skips it; the issue's case: --tasks 10000 --stored 100000)")
    p.add_argument("--status-jobs", type=int, default=10_000, help="jobs in the store for orch status (default 10000)")
    p.add_argument("--items", type=int, default=10_000, help="items of the submitted array job (default 10000)")
    p.add_argument("--runs", type=int, default=3, help="runs of each status and submit timing (default 3)")
    p.add_argument("--postgres", default=os.environ.get("ORCH_TEST_POSTGRES_URL"))
    only = p.add_mutually_exclusive_group()
    only.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL even when a URL is set")
    only.add_argument("--postgres-only", action="store_true", help="skip SQLite (run the stores side by side)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = [int(n) for n in args.tasks.split(",")]
    return args


def main() -> None:
    args = parse_args()
    if args.one:
        print(json.dumps(one(*json.loads(args.one))))
        return
    print(machine(), flush=True)
    start = time.perf_counter()
    out: dict[str, list[str]] = {"loop": [], "extrapolated": [], "status": [], "submit": []}
    if not args.postgres_only:
        measure_store("SQLite (WAL)", None, args, out)
    if args.postgres and not args.sqlite_only:
        measure_store("PostgreSQL", args.postgres, args, out)
    report(args, out, time.perf_counter() - start)


if __name__ == "__main__":
    main()
