"""Submitting a campaign of many items: reading the items file and storing the job with its items, timed.

    python -m bench.campaign_submit [--items 10000] [--runs 3] [--postgres URL]

Three figures per store (SQLite in a temporary folder; PostgreSQL too when --postgres gives a server
URL, on a fresh database that is dropped afterwards):

- parse: `load_items_of` on a generated FASTA of --items records (~300 residues each);
- store: `Store.submit` of the job and its items (one transaction, one bulk insert);
- `orch submit`: the whole command, in this process (`orchestrator.cli.main.main`), against a store
  already migrated, so the figure is the submit itself and not the first-use migration.

The target (issue 11) is 10,000 items in under 2 s for the whole submit. Not a test: a timed assert
would fail on a loaded machine for no fault of the code.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import create_engine, text

from orchestrator.cli.main import main as orch_main
from orchestrator.core.spec import parse_spec
from orchestrator.job_files import load_items_of
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import normalise_url, upgrade

JOB = """name = "bench-campaign"
command = ["python3", "fold.py"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 39
[array]
items = "seqs.fasta"
workers = 24
"""
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def write_inputs(folder: Path, items: int) -> Path:
    rng = random.Random(11)
    with (folder / "seqs.fasta").open("w") as f:
        for i in range(items):
            seq = "".join(rng.choice(RESIDUES) for _ in range(300))
            f.write(f">P{i:06d} made-up protein {i}\n" + "\n".join(seq[j:j + 60] for j in range(0, 300, 60)) + "\n")
    job = folder / "job.toml"
    job.write_text(JOB)
    return job


def stores(pg_admin: str | None, folder: Path) -> Iterator[tuple[str, Callable[[], str]]]:
    """(label, a factory of fresh, migrated database URLs) for SQLite, then PostgreSQL if given."""
    counter = iter(range(1_000_000))

    def sqlite() -> str:
        url = f"sqlite:///{folder / f'bench-{next(counter)}.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url

    yield "SQLite", sqlite
    if pg_admin is None:
        return
    admin = create_engine(normalise_url(pg_admin), isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def postgres() -> str:
        name = f"orch_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        url = normalise_url(pg_admin).rsplit("/", 1)[0] + f"/{name}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url

    try:
        yield "PostgreSQL", postgres
    finally:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def time_store(url: str, job: Path) -> tuple[float, float]:
    """(parse seconds, Store.submit seconds) for one submission."""
    now = time.time()
    start = time.perf_counter()
    spec, items = load_items_of(parse_spec(job.read_text(), source=str(job), submitted_at=now), job)
    parsed = time.perf_counter()
    engine = make_engine(url)
    Store(engine).submit(spec, source=str(job), now=now, checkpoint_uri="file:///tmp/orch-bench-campaign",
                         items=items)
    stored = time.perf_counter()
    engine.dispose()
    return parsed - start, stored - parsed


def time_cli(url: str, job: Path) -> float:
    """One `orch submit job.toml --json` in this process, against the store at `url`."""
    saved = os.environ.get("ORCH_DATABASE_URL")
    os.environ["ORCH_DATABASE_URL"] = url
    try:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = orch_main(["submit", str(job), "--json"])
        took = time.perf_counter() - start
    finally:
        if saved is None:
            os.environ.pop("ORCH_DATABASE_URL", None)
        else:
            os.environ["ORCH_DATABASE_URL"] = saved
    if code != 0:
        raise SystemExit(f"orch submit failed with exit code {code}")
    return took


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--postgres", metavar="URL", default=os.environ.get("ORCH_TEST_POSTGRES_URL"),
                   help="a PostgreSQL server to measure too (default: ORCH_TEST_POSTGRES_URL)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-bench-campaign-") as tmp:
        folder = Path(tmp)
        os.environ.setdefault("ORCH_HOME", str(folder / "home"))
        job = write_inputs(folder, args.items)
        size = (folder / "seqs.fasta").stat().st_size
        print(f"{args.items:,} FASTA records ({size / 2**20:.1f} MiB), median of {args.runs} runs:\n")
        print("| store | parse | `Store.submit` | `orch submit` (whole command) |")
        print("|---|---|---|---|")
        for label, fresh in stores(args.postgres, folder):
            parse_s, store_s, cli_s = [], [], []
            for _ in range(args.runs):
                a, b = time_store(fresh(), job)
                parse_s.append(a)
                store_s.append(b)
                cli_s.append(time_cli(fresh(), job))
            print(f"| {label} | {statistics.median(parse_s):.2f} s | {statistics.median(store_s):.2f} s "
                  f"| {statistics.median(cli_s):.2f} s |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
