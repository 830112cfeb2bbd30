"""How long the dashboard's pages take to load with 10,000 jobs in the store.

    python -m bench.dashboard [--jobs 10000] [--runs 7] [--no-browser]

A throwaway SQLite store (the embedded default) gets four jobs made by the real loop on the `sim`
provider (reclaimed and finished on on-demand, running on spot, running on on-demand, waiting), and
their rows are copied to `--jobs` jobs (bench/_scale_fill.py: the same rows, column for column, as
if each had been made the slow way). The dashboard then serves them on loopback, in this process.

Measured, each `--runs` times (median, min, max):
- jobs page over HTTP: the HTML and the JSON its script fetches (`/api/jobs`: the newest 500 jobs,
  as `orch status --json` computes them, and the count of all);
- the same JSON for every job (`/api/jobs?all=1`, 10,000 rows), which the page never asks for by
  itself, to show what the default page size saves;
- a job page over HTTP: the HTML and `/api/jobs/ID` (status, events, cost history, logs);
- in Chromium (Debian's, headless): from navigation start to the jobs table drawn with its data, and
  to a job page's charts drawn (HTML, scripts, stylesheets, uPlot and the JSON included), by the
  page's own clock (`performance.now()`); the first of each is a warm-up and is left out.

Target (issue 23): a page loads in under 1 s with 10,000 jobs in the store.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench._dashboard_browser import chromium, have_chromium, served, wait_until
from bench._dashboard_jobs import sim_job
from bench._scale_fill import clone_jobs


def fetch(url: str) -> int:
    with urllib.request.urlopen(url, timeout=120) as r:
        return len(r.read())


def timed(runs: int, once: Callable[[], object]) -> list[float]:
    once()  # warm: the first request opens the store and parses every spec once per process
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        once()
        out.append(time.perf_counter() - t0)
    return out


def row(name: str, seconds: list[float], size: str = "") -> str:
    med, lo, hi = statistics.median(seconds), min(seconds), max(seconds)
    return f"| {name} | {med * 1000:,.0f} | {lo * 1000:,.0f} | {hi * 1000:,.0f} | {size} |"


def make_store(home: Path, n: int) -> str:
    """The templates made the real way and copied to `n` jobs; returns the reclaimed job's id."""
    from orchestrator.cli.wiring import open_store

    store = open_store()
    now = time.time()
    reclaimed = sim_job(store, name="reclaimed", start=now - 12 * 3600, hours=6, deadline_hours=10,
                        budget_usd=40, folder=home)
    reclaimed.run_until(now)
    spot = sim_job(store, name="on-spot", start=now - 3 * 3600, hours=8, deadline_hours=20, folder=home,
                   traces={"us-east-1a": (1,) * 200})
    spot.run_until(now)
    od = sim_job(store, name="on-demand", start=now - 8.5 * 3600, hours=6, deadline_hours=10, folder=home)
    od.run_until(now)
    waiting = sim_job(store, name="waiting", start=now - 60, hours=2, deadline_hours=12, folder=home)
    templates = [reclaimed.job_id, spot.job_id, od.job_id, waiting.job_id]
    clone_jobs(store.engine, templates, n - len(templates), created_step=0.01)
    assert store.count_jobs() == n
    return reclaimed.job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-browser", action="store_true", help="HTTP only (no Chromium)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-bench-dashboard-") as tmp:
        os.environ["ORCH_HOME"] = tmp
        os.environ.pop("ORCH_DATABASE_URL", None)
        t0 = time.perf_counter()
        job_id = make_store(Path(tmp), args.jobs)
        print(f"store: {args.jobs:,} jobs (SQLite) in {time.perf_counter() - t0:.1f} s; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
        from orchestrator.cli.dashboard import cli_source

        lines = ["| load | median ms | min ms | max ms | bytes |", "|---|---|---|---|---|"]
        with served(cli_source()) as url:
            size = fetch(f"{url}/api/jobs")
            lines.append(row("jobs page: HTML + /api/jobs (newest 500)",
                             timed(args.runs, lambda: (fetch(url + "/"), fetch(f"{url}/api/jobs"))), f"{size:,}"))
            size = fetch(f"{url}/api/jobs?all=1")
            lines.append(row(f"/api/jobs?all=1 ({args.jobs:,} rows)",
                             timed(max(3, args.runs // 2), lambda: fetch(f"{url}/api/jobs?all=1")), f"{size:,}"))
            size = fetch(f"{url}/api/jobs/{job_id}")
            lines.append(row("job page: HTML + /api/jobs/ID", timed(
                args.runs, lambda: (fetch(f"{url}/jobs/{job_id}"), fetch(f"{url}/api/jobs/{job_id}"))), f"{size:,}"))
            if not args.no_browser and have_chromium():
                with chromium() as browser:
                    def drawn(address: str) -> float:
                        """Navigation start to the page first drawn with its data, by the page's own clock
                        (performance.now(), set by static/common.js): Selenium's round trips left out."""
                        browser.get(address)
                        ms = wait_until(lambda: browser.execute_script(
                            "return Number(document.body.dataset.firstDrawMs || 0)"), timeout=60, pause=0.01)
                        return float(ms) / 1000.0

                    lines.append(row("Chromium: jobs page, navigation to table drawn",
                                     [drawn(url + "/?refresh=3600") for _ in range(args.runs + 1)][1:]))
                    lines.append(row("Chromium: job page, navigation to charts drawn",
                                     [drawn(f"{url}/jobs/{job_id}?refresh=3600") for _ in range(args.runs + 1)][1:]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
