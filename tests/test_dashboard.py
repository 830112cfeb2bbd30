"""`orch dashboard` over HTTP: the JSON is `orch status --json`'s, the cost history ends on it, the
token guards every path but /healthz, nothing can be written, and bad input is one line.

The server is the real one (uvicorn, in a thread); the jobs are made by the real loop on the `sim`
provider (bench/_dashboard_jobs.py). The browser tests are in test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench._dashboard_browser import served
from bench._dashboard_jobs import RECLAIMED_TWICE, SimJob, sim_job
from orchestrator.cli.dashboard import cli_source
from orchestrator.cli.main import main
from orchestrator.cli.wiring import open_store
from orchestrator.dashboard.history import attempts_as_of, cost_history
from orchestrator.dashboard.server import DashboardError, check_exposure
from orchestrator.store import Store
from tests.dashboard_support import reclaimed, store, url
from tests.interrupts import as_at_a_terminal
from tests.test_extras import BLOCKER

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cret-token"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def get(url: str, *, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with opener.open(request, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


# The shared fixtures (tests/dashboard_support.py), bound here so pytest finds them.
__all__ = ["reclaimed", "store", "url"]


def test_the_job_json_is_orch_status_json(reclaimed: SimJob, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, body = get(f"{url}/api/jobs/{reclaimed.job_id[:8]}")
    assert status == 200
    page = json.loads(body)
    cli = cli_json(capsys, "status", reclaimed.job_id, "--json")
    assert page["status"] == cli
    markets = [a["market"] for a in page["status"]["attempts"]]
    assert page["status"]["cost"]["preemptions"] == 2 and markets[-1] == "on-demand" and "spot" in markets
    kinds = [e["kind"] for e in page["events"]]
    assert kinds.count("preempted") == 2 and kinds[-1] == "finished"


def test_the_list_json_is_orch_status_json_without_the_per_attempt_lists(
    reclaimed: SimJob, store: Store, orch_home: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    other = sim_job(store, name="other", start=time.time() - 3 * 3600, hours=1, deadline_hours=None, folder=orch_home,
                    traces={"us-east-1a": (1,) * 20})
    assert other.run_until(time.time())
    _, _, body = get(f"{url}/api/jobs")
    rows = json.loads(body)["jobs"]
    cli = cli_json(capsys, "status", "--json")
    assert isinstance(cli, list)
    assert [r["job_id"] for r in rows] == [c["job_id"] for c in cli]
    for row, c in zip(rows, cli, strict=True):
        assert {k: row[k] for k in c if k not in ("tasks", "attempts")} == {k: v for k, v in c.items()
                                                                               if k not in ("tasks", "attempts")}
    _, _, body = get(f"{url}/api/jobs?state=succeeded&name=oth*")
    assert [r["name"] for r in json.loads(body)["jobs"]] == ["other"]
    _, _, body = get(f"{url}/api/jobs?limit=1")
    assert json.loads(body)["total"] == 2 and len(json.loads(body)["jobs"]) == 1


def test_the_cost_history_ends_on_the_status_and_never_spends_backwards(reclaimed: SimJob, store: Store) -> None:
    job = store.job(reclaimed.job_id)
    assert job is not None
    status = cli_source().statuses(store, [job])[0]
    points = cost_history(status, spec=job.spec, created_at=job.created_at, now=time.time())
    assert points[-1]["spent_usd"] == round(status.cost.spent_usd, 4)
    assert points[-1]["projected_usd"] == round(status.cost.projected_usd, 4)
    assert points[0]["spent_usd"] == 0.0
    spent = [p["spent_usd"] for p in points]
    assert spent == sorted(spent) and spent[-1] > 0
    assert [p["at"] for p in points] == sorted(p["at"] for p in points)
    # Half-way through the first attempt, it is running and billed up to then, not to its end.
    first = status.attempts[0]
    assert first.ended_at is not None
    middle = (first.launched_at + first.ended_at) / 2
    cut = attempts_as_of(status.attempts, middle)
    assert len(cut) == 1 and cut[0].live and cut[0].ended_at is None


def test_every_path_but_healthz_needs_the_token(reclaimed: SimJob) -> None:
    with served(cli_source(), token=SECRET) as url:
        assert get(f"{url}/api/jobs")[0] == 401
        assert get(f"{url}/")[0] == 401
        assert get(f"{url}/api/jobs", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert get(f"{url}/healthz")[0] == 200
        assert get(f"{url}/api/jobs", headers={"Authorization": f"Bearer {SECRET}"})[0] == 200
        # A person opens /?token=… once: the token becomes a cookie and leaves the address bar.
        code, headers, _ = get(f"{url}/?token={SECRET}")
        assert code == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        pair = cookie.split(";")[0]
        assert get(f"{url}/api/jobs", headers={"Cookie": pair})[0] == 200
        assert get(f"{url}/?token=wrong")[0] == 401


def test_the_dashboard_is_read_only_and_loads_nothing_from_elsewhere(reclaimed: SimJob, url: str) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert get(f"{url}/api/jobs", method=method)[0] == 405
    code, headers, _ = get(f"{url}/")
    assert code == 200 and "default-src 'self'" in headers["content-security-policy"]
    for page in ("jobs.html", "job.html"):
        html = (REPO / "orchestrator" / "dashboard" / "static" / page).read_text()
        assert "http://" not in html and "https://" not in html, page
    assert get(f"{url}/static/uPlot.iife.min.js")[0] == 200


@pytest.mark.parametrize(("query", "named"), [("state=runing", "state"), ("limit=0", "limit"), ("limit=x", "limit")])
def test_a_bad_query_is_one_line_naming_the_parameter(url: str, query: str, named: str) -> None:
    code, _, body = get(f"{url}/api/jobs?{query}")
    assert code == 400
    error = json.loads(body)["error"]
    assert error.startswith(named + ":") and "\n" not in error


def test_an_unknown_job_is_404(url: str) -> None:
    code, _, body = get(f"{url}/api/jobs/nope")
    assert code == 404 and json.loads(body)["error"] == "no job 'nope'"


def test_a_network_address_needs_a_token() -> None:
    check_exposure("127.0.0.1", None)
    check_exposure("::1", None)
    check_exposure("0.0.0.0", "t")
    for host, token in (("0.0.0.0", None), ("10.1.2.3", ""), ("127.0.0.1", "  ")):
        with pytest.raises(DashboardError):
            check_exposure(host, token)


def _orch(*argv: str, blocked: str | None = None, env: dict[str, str] | None = None,
          home: Path) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "ORCH_DASHBOARD_TOKEN")}
    full.update(ORCH_HOME=str(home), **(env or {}))
    prefix = [sys.executable, BLOCKER, blocked, "-m"] if blocked else [sys.executable, "-m"]
    return subprocess.run([*prefix, "orchestrator.cli", *argv], cwd=REPO, env=full, capture_output=True, text=True,
                          timeout=60)


def test_the_command_refuses_in_one_line(tmp_path: Path) -> None:
    out = _orch("dashboard", "--host", "0.0.0.0", home=tmp_path)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "token" in out.stderr, out.stderr
    out = _orch("dashboard", "--port", "70000", home=tmp_path)
    assert out.returncode == 2 and "--port" in out.stderr, out.stderr
    out = _orch("dashboard", blocked="starlette,uvicorn", home=tmp_path)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().endswith("python3 -m pip install 'orch[server]'"), out.stderr


def test_the_command_serves_and_prints_its_address(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "ORCH_DASHBOARD_TOKEN")}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "dashboard", "--port", "0"], cwd=REPO,
                            env={**env, "ORCH_HOME": str(tmp_path)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=as_at_a_terminal)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("orch dashboard: serving http://127.0.0.1:"), line
        address = line.split()[3]
        deadline = time.monotonic() + 20
        while True:
            try:
                code, _, body = get(f"{address}api/jobs")
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert code == 200 and json.loads(body)["jobs"] == []
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the server stops, quietly, as every orch command does
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "Traceback" not in err, err


def test_a_job_that_moved_zone_lists_the_zones_in_order(store: Store, orch_home: Path, url: str) -> None:
    now = time.time()
    job = sim_job(store, name="mover", start=now - 12 * 3600, hours=6, deadline_hours=10, folder=orch_home,
                  traces={"us-east-1a": RECLAIMED_TWICE, "us-east-1b": (0,) * 14 + (1,) * 6 + (0,) * 100})
    assert job.run_until(now)
    _, _, body = get(f"{url}/api/jobs/{job.job_id}")
    page = json.loads(body)
    ran = [a["zone"] for a in page["status"]["attempts"] if a["outcome"] != "launch_failed"]
    moves = [z["zone"] for z in page["zones"]]
    assert len(set(ran)) == 2 and moves == [z for i, z in enumerate(ran) if i == 0 or ran[i - 1] != z]


@pytest.mark.postgres
def test_the_job_json_is_orch_status_json_on_postgresql(
    postgres_url: str, orch_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORCH_DATABASE_URL", postgres_url)
    pg = open_store()
    now = time.time()
    job = sim_job(pg, name="on-postgres", start=now - 12 * 3600, hours=6, deadline_hours=10, folder=orch_home)
    assert job.run_until(now)
    with served(cli_source()) as url:
        _, _, body = get(f"{url}/api/jobs/{job.job_id}")
        _, _, listed = get(f"{url}/api/jobs")
    assert json.loads(body)["status"] == cli_json(capsys, "status", job.job_id, "--json")
    assert [r["job_id"] for r in json.loads(listed)["jobs"]] == [job.job_id]
    pg.engine.dispose()
