"""Screenshots of the dashboard's pages for docs/dashboard.md: `python -m bench.dashboard_shots [--out docs/img]`.

A throwaway store gets a few jobs made by the real loop on the `sim` provider (bench/_dashboard_jobs.py):
a fine-tune that was reclaimed twice, moved zone and is finishing on on-demand before its deadline; one
that finished on spot; one running on spot; one stopped by its budget; one cancelled; one waiting. The
dashboard serves them and Debian's Chromium photographs the jobs page and the fine-tune's page.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench._dashboard_browser import chromium, console_errors, served, wait_until
from bench._dashboard_jobs import RECLAIMED_TWICE, sim_job

ZONE_B = (0,) * 14 + (1,) * 6 + (0,) * 100


def make_jobs(home: Path, now: float) -> str:
    """The jobs; returns the id of the one whose page is photographed."""
    from orchestrator.cli.wiring import open_store

    store = open_store()
    featured = sim_job(store, name="esm-finetune", start=now - 8.5 * 3600, hours=6, deadline_hours=10,
                       budget_usd=15, folder=home, traces={"us-east-1a": RECLAIMED_TWICE, "us-east-1b": ZONE_B})
    featured.run_until(now)
    done = sim_job(store, name="embed-sweep", start=now - 30 * 3600, hours=4, deadline_hours=24, folder=home)
    done.run_until(now)
    late = sim_job(store, name="fold-batch-7", start=now - 3 * 3600, hours=8, deadline_hours=20, folder=home,
                   traces={"us-east-1a": (1,) * 200})
    late.run_until(now)
    capped = sim_job(store, name="lm-pretrain", start=now - 5 * 3600, hours=6, deadline_hours=30, budget_usd=4,
                     folder=home, traces={"us-east-1a": (1,) * 200})
    capped.run_until(now)  # stopped by its budget
    stopped = sim_job(store, name="ablation-3", start=now - 6 * 3600, hours=10, deadline_hours=30, folder=home,
                      traces={"us-east-1a": (1,) * 200})
    stopped.run_until(now - 4 * 3600)
    store.request_cancel(stopped.job_id, stopped.clock.now())
    stopped.run_until(now)
    # Submitted last: a sim loop works on every job nobody holds, and this one is to stay waiting.
    sim_job(store, name="dock-screen", start=now - 60, hours=2, deadline_hours=12, folder=home)
    return featured.job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img", help="folder for the PNG files (default docs/img)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orch-shots-") as tmp:
        os.environ["ORCH_HOME"] = tmp
        os.environ.pop("ORCH_DATABASE_URL", None)
        job_id = make_jobs(Path(tmp), time.time())
        from orchestrator.cli.dashboard import cli_source

        with served(cli_source()) as url, chromium(1280, 560) as browser:
            browser.get(url + "/")
            wait_until(lambda: browser.find_elements("css selector", "#jobs tbody tr[data-job-id]"))
            time.sleep(0.3)
            browser.save_screenshot(str(out / "dashboard-jobs.png"))
            browser.set_window_size(1280, 2000)
            browser.get(f"{url}/jobs/{job_id}")
            wait_until(lambda: browser.find_elements("css selector", "#cost-chart .uplot"))
            time.sleep(0.5)
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, min(int(height), 1750))
            time.sleep(0.3)
            browser.save_screenshot(str(out / "dashboard-job.png"))
            errors = console_errors(browser)
    for name in ("dashboard-jobs.png", "dashboard-job.png"):
        print(f"wrote {out / name} ({(out / name).stat().st_size / 1024:.0f} KiB)")
    if errors:
        raise SystemExit(f"the pages logged console errors: {errors}")


if __name__ == "__main__":
    main()
