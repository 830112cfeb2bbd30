"""How long one reconcile tick takes as the number of running jobs grows, on SQLite and PostgreSQL.

Every job runs one task on the `sim` provider (no processes, no network), so what is measured is
the loop itself: store reads and guarded writes, offers, decisions. Prints a markdown table of the
median tick time and the time per job, plus the peak memory of this process.

    python bench/reconcile.py [--jobs 10,100,400] [--ticks 5] [--postgres URL]

PostgreSQL is measured when --postgres (or ORCH_TEST_POSTGRES_URL) names a server; each run uses a
fresh database on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text

from orchestrator.core.spec import parse_spec
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import normalise_url, upgrade
from orchestrator.store.repo import new_id
from providers.sim import SimClock, SimProvider

JOB = """
name = "bench"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 1000
market = "spot"
[placement]
providers = ["sim"]
"""


def measure(url: str, jobs: int, ticks: int) -> list[float]:
    engine = make_engine(url)
    upgrade(engine)
    store = Store(engine)
    clock = SimClock()
    trace = Trace(source="always", gap_seconds=60.0, data=(1,) * 100_000, prices=None)
    provider = SimProvider(clock, {"a": trace})
    spec = parse_spec(JOB, source="bench", submitted_at=clock.now())
    for _ in range(jobs):
        store.submit(spec, source="bench", now=clock.now(), job_id=new_id(), checkpoint_uri="file:///tmp/orch-bench")
    r = Reconciler(store, {"sim": provider}, clock, tick_seconds=60.0)
    r.tick()  # launches everything: not the steady state being measured
    times = []
    for _ in range(ticks):
        clock.sleep(60.0)
        start = time.perf_counter()
        r.tick()
        times.append(time.perf_counter() - start)
    engine.dispose()
    return times


def _postgres_db(admin_url: str) -> tuple[str, str]:
    name = f"orch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, normalise_url(admin_url).rsplit("/", 1)[0] + "/" + name


def _drop(admin_url: str, name: str) -> None:
    admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", default="10,100,400")
    p.add_argument("--ticks", type=int, default=5)
    p.add_argument("--postgres", default=os.environ.get("ORCH_TEST_POSTGRES_URL"))
    args = p.parse_args()
    sizes = [int(n) for n in args.jobs.split(",")]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"median of {args.ticks} steady-state ticks, every job running one task on the sim provider\n")
    print("| store | jobs | tick (median) | per job |")
    print("|---|---:|---:|---:|")
    for jobs in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            t = statistics.median(measure(f"sqlite:///{Path(tmp) / 'bench.db'}", jobs, args.ticks))
        print(f"| SQLite (WAL) | {jobs} | {t * 1000:.0f} ms | {t / jobs * 1000:.2f} ms |", flush=True)
        if args.postgres:
            name, url = _postgres_db(args.postgres)
            try:
                t = statistics.median(measure(url, jobs, args.ticks))
            finally:
                _drop(args.postgres, name)
            print(f"| PostgreSQL | {jobs} | {t * 1000:.0f} ms | {t / jobs * 1000:.2f} ms |", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory of the benchmark process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
