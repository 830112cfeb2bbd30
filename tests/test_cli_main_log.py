"""`orch controller`'s log on stderr: every event of its jobs, one line each, plus cost steps.

The real controller runs in a subprocess on a job whose spot capacity is reclaimed once; its log is
compared with what the store recorded (`orch events --json`): the same events, in the same order.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.cli.log import cost_message, cost_step
from tests.loop_support import job_toml, python_command, write_trace

REPO = Path(__file__).resolve().parent.parent
ORCH = [sys.executable, "-m", "orchestrator.cli"]


def _reclaimed_job(tmp_path: Path) -> Path:
    # Spot goes at 3 s (1.5 s ticks) with a 1 s notice, then comes back; the job needs ~4 s of work.
    write_trace(tmp_path / "market.json", [1, 1, 0, 1] + [1] * 80, gap=1.5)
    return job_toml(tmp_path, command=python_command("import time; time.sleep(4)"),
                    local={"trace": "market.json", "notice_seconds": 1, "zones": ["local-a"]},
                    extra_schedule="budget_usd = 0.1")


def _submit(path: Path) -> str:
    out = subprocess.run([*ORCH, "submit", str(path), "--json"], cwd=REPO, capture_output=True, text=True,
                         timeout=60, check=True)
    return str(json.loads(out.stdout)["job_id"])


def _logged_finish(line: str, job_id: str) -> bool:
    """Whether a log line (JSON or text) is the `finished` event of the job."""
    if line.startswith("{"):
        doc = json.loads(line)
        return bool(doc.get("job_id") == job_id and doc.get("kind") == "finished")
    return f"  {job_id[:8]}  finished " in line


def _run_controller(job_file: Path, *flags: str) -> tuple[str, str]:
    """Start a controller, submit the job once it runs, stop it (SIGTERM) once it has logged the job's end:
    (job id, stderr)."""
    p = subprocess.Popen([*ORCH, "controller", "--tick", "0.2", *flags], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert p.stderr is not None
    stderr = p.stderr
    reader = threading.Thread(target=lambda: lines.extend(stderr), daemon=True)
    try:
        first = stderr.readline()  # the start line: events from here on are this controller's to log
        reader.start()
        job_id = _submit(job_file)
        deadline = time.monotonic() + 120
        while not any(_logged_finish(line, job_id) for line in list(lines)):
            assert time.monotonic() < deadline, "the job's end was not logged within 120 s"
            time.sleep(0.1)
        p.terminate()  # SIGTERM: the controller stops after its tick (whose log is all written by then)
        p.wait(timeout=30)
        reader.join(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rest = "".join(lines)
    assert p.returncode == 0, rest
    return job_id, first + rest


def test_json_logs_hold_every_stored_event_once_in_order_and_cost_steps(tmp_path: Path, orch_home: Path) -> None:
    job_id, err = _run_controller(_reclaimed_job(tmp_path), "--json-logs")

    lines = [json.loads(line, parse_constant=float) for line in err.splitlines()]  # every line is one object
    assert lines[0]["kind"] == "start" and lines[-1]["kind"] == "stop"
    stored = json.loads(subprocess.run([*ORCH, "events", job_id, "--json"], cwd=REPO, capture_output=True,
                                       text=True, timeout=60, check=True).stdout)
    logged = [e for e in lines if e["job_id"] == job_id and e["kind"] != "cost"]
    assert [(e["kind"], e["message"], e["attempt_id"]) for e in logged] == \
           [(e["kind"], e["message"], e["attempt_id"]) for e in stored]
    kinds = {e["kind"] for e in logged}
    assert {"submitted", "launch", "notice", "finished"} <= kinds
    assert kinds & {"preempted", "requeue"}
    assert all(e["job_name"] == "t" and e["time"].endswith("Z") for e in logged)

    costs = [e for e in lines if e["kind"] == "cost"]
    # The first launch bills one minute of spot at once ($0.0153): past the first 10% step of the $0.10 budget.
    assert costs and costs[0]["job_id"] == job_id and costs[0]["budget_usd"] == 0.1
    assert costs[0]["message"] == cost_message(costs[0]["spent_usd"], 0.1)
    spent = [c["spent_usd"] for c in costs]
    assert spent == sorted(spent) and len({cost_step(s, 0.1) for s in spent}) == len(spent)  # one line a step


@pytest.mark.postgres
def test_the_log_reads_a_postgresql_store_too(tmp_path: Path, orch_home: Path, postgres_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_DATABASE_URL", postgres_url)
    subprocess.run([*ORCH, "db", "upgrade"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    job_id, err = _run_controller(job_toml(tmp_path, command=python_command("pass"), market="on-demand"),
                                  "--json-logs")
    kinds = [e["kind"] for e in map(json.loads, err.splitlines()) if e["job_id"] == job_id and e["kind"] != "cost"]
    assert kinds[:2] == ["submitted", "launch"] and kinds[-1] == "finished"


def test_text_logs_are_one_line_each_with_time_job_kind_message(tmp_path: Path, orch_home: Path) -> None:
    job_id, err = _run_controller(job_toml(tmp_path, command=python_command("pass"), market="on-demand"))
    line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  (?P<job>[0-9a-f]{8}|-       )  (?P<kind>\S+)\s+  \S")
    parsed = [line.match(x) for x in err.splitlines()]
    assert all(parsed), err
    assert [m["kind"] for m in parsed if m and m["job"] == job_id[:8]][:2] == ["submitted", "launch"]
    assert parsed[-1] and parsed[-1]["kind"] == "stop"


@pytest.mark.parametrize(("spent", "budget", "step"), [
    (0.0, None, 0), (0.99, None, 0), (1.0, None, 1), (12.5, None, 12),
    (0.0153, 0.1, 1), (0.0999, 0.1, 9), (0.1, 0.1, 10), (7.0, 10.0, 7),
])
def test_cost_steps_are_tenths_of_the_budget_or_whole_dollars(spent: float, budget: float | None, step: int) -> None:
    assert cost_step(spent, budget) == step


def test_the_log_shows_orch_info_and_everyone_s_warnings_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging

    from orchestrator.cli.log import configure

    monkeypatch.delenv("ORCH_LOG_LEVEL", raising=False)
    stream = io.StringIO()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", "orch", "orchestrator", "providers")}
    handler = configure(json_logs=True, stream=stream)
    try:
        logging.getLogger("orchestrator.k8s.leader").info("holds the lease")
        logging.getLogger("orch.reconciler").warning("provider said:\nline two")
        logging.getLogger("botocore.hooks").info("chatter")
        logging.getLogger("urllib3").warning("retrying")
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["message"]) for e in lines] == [
        ("orchestrator.k8s.leader", "holds the lease"), ("orch.reconciler", "provider said: line two"),
        ("urllib3", "retrying")]
    assert lines[1]["level"] == "warning" and lines[1]["job_id"] is None


def test_the_log_outlives_a_store_it_cannot_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The loop survives a database outage (Reconciler.run); its log must not be what kills it."""
    from orchestrator.cli.log import ControllerLog
    from orchestrator.store import Store, make_engine
    from orchestrator.store.engine import upgrade

    db = tmp_path / "orch.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    events = ControllerLog.starting_now(Store(engine), "me", time.time)
    engine.dispose()
    db.write_bytes(b"not a database any more" * 100)
    with caplog.at_level("WARNING", logger="orch.controller"):
        events.after_tick()  # before: the query error escaped into the loop and ended the controller
    assert any("cannot read the store for the log" in r.getMessage() for r in caplog.records)
