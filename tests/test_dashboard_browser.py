"""The dashboard in a real browser: Debian's Chromium, headless, driven by Selenium.

The pages load without a console error, show the figures of `orch status --json` (formatted as the
CLI formats them) for a job that went through reclamations and a switch to on-demand, sort and
filter, and follow a job that moves without being reloaded. The jobs are made by the real loop on
the `sim` provider. Chromium missing: these tests fail in CI (CI=true) and are skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench._dashboard_browser import chromium, console_errors, have_chromium, wait_until
from bench._dashboard_jobs import SimJob, sim_job
from orchestrator.cli import render
from orchestrator.cli.main import main
from orchestrator.store import Store
from orchestrator.store.items import ItemStore
from tests.dashboard_support import reclaimed, store, url
from tests.loop_support import job_toml, python_command, reconciler, run_until, submit, write_trace

CSS = "css selector"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not have_chromium():
        message = "Debian's chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with chromium(1400, 1000) as driver:
        yield driver


@pytest.fixture(autouse=True)
def leave_the_page(browser: Any) -> Iterator[None]:
    """A page left open keeps polling its server after the test stops it; the next test would read its errors."""
    yield
    browser.get("about:blank")
    browser.get_log("browser")


# The shared fixtures (tests/dashboard_support.py), bound here so pytest finds them.
__all__ = ["reclaimed", "store", "url"]


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def fields(root: Any) -> dict[str, tuple[Any, str]]:
    """(value, text) of every `[data-field]` under `root`."""
    return {e.get_attribute("data-field"): (json.loads(e.get_attribute("data-value")), e.text)
            for e in root.find_elements(CSS, "[data-field]")}


def saved_of(cost: dict[str, Any]) -> Any:
    return cost["saved_usd"] if cost["saved_usd"] is not None else cost["projected_saved_usd"]


def test_the_jobs_page_shows_orch_status_figures_sorts_and_filters(
    browser: Any, reclaimed: SimJob, store: Store, orch_home: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    running = sim_job(store, name="running", start=now - 3 * 3600, hours=8, deadline_hours=20, folder=orch_home,
                      traces={"us-east-1a": (1,) * 200})
    assert not running.run_until(now)
    browser.get_log("browser")
    browser.get(url + "/")
    wait_until(lambda: len(browser.find_elements(CSS, "#jobs tbody tr[data-job-id]")) == 2)
    cli = {j["job_id"]: j for j in cli_json(capsys, "status")}

    row = browser.find_element(CSS, f'tr[data-job-id="{reclaimed.job_id}"]')
    shown, job = fields(row), cli[reclaimed.job_id]
    cost = job["cost"]
    assert job["state"] == "succeeded" and cost["preemptions"] == 2
    assert shown["state"][0] == job["state"] and shown["progress"][0] == job["progress"]
    assert shown["slack_hours"][0] == job["slack_hours"] and shown["budget_usd"][0] == job["budget_usd"]
    for field in ("spent_usd", "projected_usd"):
        assert shown[field] == (cost[field], render.usd(cost[field])), field
    assert shown["saved"] == (saved_of(cost), render.usd(saved_of(cost)))
    assert shown["preemptions"][0] == cost["preemptions"]
    live = fields(browser.find_element(CSS, f'tr[data-job-id="{running.job_id}"]'))
    assert (live["state"][0], live["market"][0]) == (cli[running.job_id]["state"], cli[running.job_id]["market"])
    assert live["market"][1] == "spot" and live["zone"][0] == "us-east-1a"

    browser.find_element(CSS, 'th[data-key="spent_usd"]').click()  # ascending
    order = [r.get_attribute("data-job-id") for r in browser.find_elements(CSS, "#jobs tbody tr")]
    assert order == sorted(cli, key=lambda j: cli[j]["cost"]["spent_usd"])
    browser.find_element(CSS, "#find").send_keys("reclaim")
    wait_until(lambda: [r.get_attribute("data-job-id") for r in browser.find_elements(CSS, "#jobs tbody tr")]
               == [reclaimed.job_id])
    assert browser.find_element(CSS, "#count").text == "showing 1 of 2 jobs"
    assert console_errors(browser) == []


def test_the_job_page_draws_the_reclamations_and_shows_orch_status_figures(
    browser: Any, reclaimed: SimJob, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    browser.get_log("browser")
    browser.get(f"{url}/jobs/{reclaimed.job_id}")
    wait_until(lambda: browser.find_elements(CSS, "#cost-chart .uplot"))
    job = cli_json(capsys, "status", reclaimed.job_id)
    shown, cost = fields(browser.find_element(CSS, "#cards")), job["cost"]
    for field in ("spent_usd", "projected_usd", "on_demand_only_usd", "lost_usd"):
        assert shown[field] == (cost[field], render.usd(cost[field])), field
    assert shown["saved"] == (saved_of(cost), render.usd(saved_of(cost)))
    assert shown["budget_usd"] == (job["budget_usd"], render.usd(job["budget_usd"]))
    assert shown["progress"][0] == job["progress"] == 1.0 and shown["preemptions"][0] == cost["preemptions"] == 2
    assert shown["deadline_at"][0] == job["deadline_at"]

    bars = browser.find_elements(CSS, "#timeline g.attempt")
    assert [b.get_attribute("data-attempt-id") for b in bars] == [a["id"] for a in job["attempts"]]
    assert [b.get_attribute("data-market") for b in bars] == [a["market"] for a in job["attempts"]]
    assert {a["market"] for a in job["attempts"]} == {"spot", "on-demand"}
    assert len(browser.find_elements(CSS, "#timeline .reclaimed")) == 2
    events = cli_json(capsys, "events", reclaimed.job_id)
    shown_events = [r.get_attribute("data-event-id") for r in browser.find_elements(CSS, "#events tbody tr")]
    assert shown_events == [str(e["id"]) for e in reversed(events)]
    assert len(browser.find_elements(CSS, "#attempts tbody tr")) == len(job["attempts"])
    assert browser.find_element(CSS, "#state").text == "succeeded"
    assert console_errors(browser) == []


def test_the_job_page_follows_a_job_that_moves_without_reloading(
    browser: Any, store: Store, orch_home: Path, url: str
) -> None:
    now = time.time()
    job = sim_job(store, name="moving", start=now - 1800, hours=4, deadline_hours=30, folder=orch_home,
                  traces={"us-east-1a": (1,) * 4 + (0,) * 3 + (1,) * 100})
    assert not job.run_until(now)
    before = len(store.events(job.job_id))
    browser.get_log("browser")
    browser.get(f"{url}/jobs/{job.job_id}?refresh=0.3")
    wait_until(lambda: len(browser.find_elements(CSS, "#events tbody tr")) == before)
    browser.execute_script("window.orchSamePage = true;")
    attempts = len(browser.find_elements(CSS, "#timeline g.attempt"))

    while len(store.attempts(job.job_id)) < 2:
        job.step()  # the loop moves on: the spot instance is reclaimed, the task requeued and launched again
    assert any(e.kind == "preempted" for e in store.events(job.job_id))
    newest = store.events(job.job_id)[-1]
    wait_until(lambda: browser.find_elements(CSS, f'#events tr[data-event-id="{newest.id}"]'))
    wait_until(lambda: len(browser.find_elements(CSS, "#timeline g.attempt")) == len(store.attempts(job.job_id)))
    assert len(store.attempts(job.job_id)) > attempts
    assert browser.find_elements(CSS, "#timeline .reclaimed")
    assert browser.execute_script("return window.orchSamePage === true;"), "the page was reloaded"
    assert console_errors(browser) == []


def test_a_local_job_reclaimed_after_a_notice_shows_the_notice_and_its_logs(
    browser: Any, store: Store, orch_home: Path, tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real processes on the local provider's simulated spot market: a notice, a reclamation, a relaunch."""
    work = tmp_path / "work"
    work.mkdir()
    write_trace(work / "market.json", [1, 1, 1, 0] + [1] * 60, gap=1.5)
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('notice: saving', flush=True), sys.exit(143)))\n"
            "for i in range(25):\n    print('step', i, flush=True)\n    time.sleep(0.2)\n")
    path = job_toml(work, command=python_command(code), hours=0.002,
                    local={"trace": "market.json", "notice_seconds": 1, "zones": ["local-a"]})
    job_id = submit(store, path, orch_home)
    run_until(reconciler(store, orch_home), lambda: store.tasks(job_id)[0].state.terminal, timeout=90)
    events = cli_json(capsys, "events", job_id)
    notices = [e for e in events if e["kind"] == "notice"]
    assert notices and any(e["kind"] == "preempted" for e in events)

    browser.get_log("browser")
    browser.get(f"{url}/jobs/{job_id}")
    wait_until(lambda: browser.find_elements(CSS, "#cost-chart .uplot"))
    assert len(browser.find_elements(CSS, "#timeline .notice")) == len(notices)
    logs = browser.find_element(CSS, "#logs").text
    assert "notice: saving" in logs and "step 24" in logs
    job = cli_json(capsys, "status", job_id)
    assert fields(browser.find_element(CSS, "#cards"))["spent_usd"] == (job["cost"]["spent_usd"],
                                                                        render.usd(job["cost"]["spent_usd"]))
    assert console_errors(browser) == []


def test_a_campaign_page_shows_its_items_as_orch_status_does(
    browser: Any, store: Store, tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 5-item campaign: 3 done, 1 quarantined, 1 waiting (items committed through the item store)."""
    (tmp_path / "seqs.fasta").write_text("".join(f">s{i}\nMKV\n" for i in range(5)))
    (tmp_path / "job.toml").write_text('name = "fold-campaign"\ncommand = ["python3", "fold.py"]\n[resources]\n'
                                       'gpu = "V100"\n[schedule]\nestimated_hours = 1\ndeadline_hours = 6\n'
                                       '[retry]\nmax_failures = 0\n[array]\nitems = "seqs.fasta"\nworkers = 2\n')
    job_id = cli_json(capsys, "submit", str(tmp_path / "job.toml"))["job_id"]
    items = ItemStore(store.engine)
    leases = {x.index: x for x in items.lease(job_id, "w", 5, now=time.time(), lease_seconds=600)}
    for i in (3, 0, 1):
        assert items.complete(job_id, "w", leases[i], now=time.time(), result=json.dumps({"plddt": 80 + i}))
    items.fail(job_id, "w", leases[2], reason="bad input", now=time.time(), max_failures=0)
    items.release(job_id, "w", [leases[4].item_id], now=time.time())

    browser.get_log("browser")
    browser.get(f"{url}/jobs/{job_id}")
    wait_until(lambda: browser.find_elements(CSS, "#items-chart .uplot"))
    campaign = cli_json(capsys, "status", job_id)["campaign"]
    shown = fields(browser.find_element(CSS, "#campaign-panel"))
    assert (campaign["done"], campaign["quarantined"]) == (3, 1)
    assert shown["items_done"][0] == campaign["done"] and shown["items_quarantined"][0] == campaign["quarantined"]
    assert shown["items_failed"][0] == campaign["failed"]
    assert shown["spent_usd_per_item"][0] == campaign["spent_usd_per_item"]
    assert shown["projected_usd_per_item"][0] == campaign["projected_usd_per_item"]
    assert shown["items_done"][1] == "3 / 5"
    assert console_errors(browser) == []
