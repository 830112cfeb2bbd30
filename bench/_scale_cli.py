"""`orch status` over a store of many jobs, and submitting one large array job, timed.

`orch status` is timed as the user runs it: a new `python -m orchestrator.cli status --limit 50`
process against the store (ORCH_HOME for SQLite, ORCH_DATABASE_URL for PostgreSQL), so start-up,
the schema check, the page query and the rendering are all in the figure.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._scale_fill import clone_jobs
from bench._scale_loop import job_toml
from orchestrator.core.spec import parse_spec
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import upgrade

ROOT = Path(__file__).resolve().parent.parent
STATUS_LIMIT = 50


SUBMITTED = 1_000  # jobs stored through `Store.submit` (timed); the rest are copies of them


def fill_jobs(url: str, count: int, *, now: float = 1_700_000_000.0) -> float:
    """Store `count` single-task jobs: up to `SUBMITTED` through `Store.submit`, the rest copied from
    those in bulk (`bench._scale_fill`); returns the seconds one `Store.submit` took on average."""
    engine = make_engine(url)
    upgrade(engine)
    store = Store(engine)
    spec = parse_spec(job_toml(hours=1.0), source="scale", submitted_at=now)
    made = min(count, SUBMITTED)
    start = time.perf_counter()
    ids = [store.submit(spec, source="scale", now=now + i, checkpoint_uri="file:///tmp/orch-scale-status")
           for i in range(made)]
    per_job = (time.perf_counter() - start) / max(made, 1)
    if count > made:
        clone_jobs(engine, ids, count - made, created_step=made)
    engine.dispose()
    return per_job


def status_env(url: str, home: Path) -> dict[str, str]:
    env = dict(os.environ, ORCH_HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("ORCH_DATABASE_URL", None)
    if not url.startswith("sqlite"):
        env["ORCH_DATABASE_URL"] = url
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_status(env: dict[str, str], runs: int, *, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of each `orch status --limit 50` process; it must succeed and list 50 jobs.

    `cpu` receives each process's CPU seconds (user + system): on a shared machine the wall time
    includes waiting for a core, the CPU time does not."""
    cmd = [sys.executable, "-m", "orchestrator.cli", "status", "--limit", str(STATUS_LIMIT)]
    times = []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), _children_cpu()
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(_children_cpu() - cpu_start)
        if done.returncode != 0:
            raise RuntimeError(f"orch status failed ({done.returncode}): {done.stderr.strip()}")
        listed = sum(1 for line in done.stdout.splitlines() if "scale" in line)
        if listed != STATUS_LIMIT:
            raise RuntimeError(f"orch status listed {listed} jobs, expected {STATUS_LIMIT}:\n{done.stdout[:500]}")
    return times


def time_cli_start(env: dict[str, str], runs: int) -> float:
    """Median wall seconds of `orch --help`: the part of `orch status` that is not the store."""
    cmd = [sys.executable, "-m", "orchestrator.cli", "--help"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True, timeout=60)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_array_submit(url: str, items: int, runs: int) -> list[float]:
    """Seconds to parse and store one array job of `items` one-item shards, each run a new job."""
    engine = make_engine(url)
    upgrade(engine)
    store = Store(engine)
    toml = job_toml(hours=0.001, shards=items)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        spec = parse_spec(toml, source="scale", submitted_at=1_700_000_000.0 + i)
        store.submit(spec, source="scale", now=1_700_000_000.0 + i, checkpoint_uri="file:///tmp/orch-scale-submit")
        times.append(time.perf_counter() - start)
    engine.dispose()
    return times
