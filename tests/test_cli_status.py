"""`orch status` and `orch logs` as a user runs them: the real CLI in a subprocess, ORCH_HOME in a tmp dir,
jobs run by the real reconcile loop on the local provider in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.cli.wiring import open_store
from orchestrator.core.spec import JobSpec, ScheduleSpec
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from tests.interrupts import as_at_a_terminal
from tests.loop_support import REPO, job_toml, python_command, reconciler, run_until, submit
from vocab import Resources

ORCH = [sys.executable, "-m", "orchestrator.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "COLUMNS")}
    return {**env, **extra}


def orch(*argv: str, timeout: float = 60.0, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ORCH, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=_env(**env))


def start(*argv: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*ORCH, *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(**env), preexec_fn=as_at_a_terminal)


class Lines:
    """A child's stdout lines as they arrive, each with the monotonic time it was read."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.got: list[tuple[float, str]] = []
        assert proc.stdout is not None
        stdout = proc.stdout
        self._thread = threading.Thread(target=lambda: self.got.extend((time.monotonic(), ln) for ln in stdout),
                                        daemon=True)
        self._thread.start()

    def text(self) -> str:
        return "".join(line for _, line in self.got)

    def wait_for(self, needle: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.got):
                if needle in line:
                    return at
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never printed; got {self.text()!r}")


@pytest.fixture
def store(orch_home: Path) -> Store:
    return open_store()


@pytest.fixture
def loop(store: Store, orch_home: Path) -> Iterator[Reconciler]:
    r = reconciler(store, orch_home)
    yield r
    for job in store.jobs():
        if job.finished_at is None:
            main(["cancel", job.id])


def _job(tmp_path: Path, home: Path, store: Store, code: str, *, name: str = "t") -> str:
    return submit(store, job_toml(tmp_path, command=python_command(code), market="on-demand", name=name), home)


def _finished(store: Store, job_id: str) -> bool:
    return all(t.state.terminal for t in store.tasks(job_id))


# --- the list: paged, filtered, and a cut list says so -------------------------------------------


def _bulk(store: Store, n: int, name: str = "bulk") -> list[str]:
    spec = JobSpec(name=name, command=("true",), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=1.0, policy="greedy"))
    return [store.submit(spec, source="t", now=1000.0 + i, checkpoint_uri="file:///tmp/ck") for i in range(n)]


def test_a_cut_list_says_so_on_stderr_and_the_json_stays_valid(store: Store) -> None:
    ids = _bulk(store, 120)
    listed = orch("status", "--json")
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert [s["job_id"] for s in shown] == ids[::-1][:50]  # newest first, the default page
    assert listed.stderr == "showing 50 of 120 jobs; --all or --limit N for more\n"

    table = orch("status", "--limit", "3")
    assert len(table.stdout.splitlines()) == 1 + 3 and "of 120 jobs" in table.stderr

    everything = orch("status", "--all", "--json")
    assert len(json.loads(everything.stdout)) == 120 and everything.stderr == ""


def test_the_list_filters_by_state_and_name(store: Store) -> None:
    _bulk(store, 2, name="fold-a")
    cancelled = _bulk(store, 1, name="embed")[0]
    assert main(["cancel", cancelled]) == 0
    by_state = orch("status", "--json", "--state", "cancelled,failed")
    assert [s["job_id"] for s in json.loads(by_state.stdout)] == [cancelled]
    by_name = orch("status", "--json", "--name", "FOLD-*", "--state", "pending", "--state", "running")
    assert [s["name"] for s in json.loads(by_name.stdout)] == ["fold-a", "fold-a"]
    none = orch("status", "--state", "succeeded")
    assert none.returncode == 0 and none.stdout == "no jobs match\n"


@pytest.mark.parametrize(("argv", "named"), [
    (["--watch", "--interval", "-1"], "--interval"), (["--watch", "--interval", "nan"], "--interval"),
    (["--watch", "--interval", "inf"], "--interval"), (["--watch", "--interval", "0.01"], "--interval"),
    (["--state", "bogus"], "budget_exceeded"), (["--limit", "0"], "--limit"), (["deadbeef", "--state", "x"], "--state"),
    (["deadbeef", "--name", "x"], "not with a JOB")])
def test_bad_options_get_one_line_and_exit_2(orch_home: Path, argv: list[str], named: str) -> None:
    """Before: -1 and nan were a ValueError traceback from time.sleep, inf slept for ever, 0.01 busy-polled."""
    done = orch("status", *argv, timeout=30)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stdout == ""
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("orch") and named in message, done.stderr


# --- money: saved only when earned ----------------------------------------------------------------


def test_the_table_shows_savings_as_projected_while_unfinished_and_none_when_stopped(store: Store) -> None:
    pending, cancelled = _bulk(store, 2)
    assert main(["cancel", cancelled]) == 0
    header, *lines = orch("status").stdout.splitlines()
    column = header.split().index("SAVED")
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows[pending[:8]][column].startswith("~$")  # SAVED, projected
    assert rows[cancelled[:8]][column] == "-"
    shown = {s["job_id"]: s["cost"] for s in json.loads(orch("status", "--json").stdout)}
    assert shown[pending]["saved_usd"] is None and shown[pending]["projected_saved_usd"] > 0
    assert shown[cancelled]["saved_usd"] is None and shown[cancelled]["projected_saved_usd"] is None


# --- --watch: ends with the job, fits the terminal ------------------------------------------------


def test_watch_ends_with_the_job_and_fits_80_columns(
    tmp_path: Path, orch_home: Path, store: Store, loop: Reconciler
) -> None:
    job_id = _job(tmp_path, orch_home, store, "import time; time.sleep(1.5)", name="long-" * 25)
    watch = start("status", job_id, "--watch", "--interval", "0.5", COLUMNS="80")
    lines = Lines(watch)
    run_until(loop, lambda: _finished(store, job_id))
    assert watch.wait(timeout=30) == 0  # before: it refreshed for ever
    frames = lines.text()
    assert "state      succeeded" in frames and "(projected" in frames
    last = frames[frames.rindex(f"job {job_id}"):]
    assert "saved $" in last and "~" not in last  # earned once it succeeded
    too_wide = [ln for ln in frames.splitlines() if len(ln) > 80]
    assert not too_wide, too_wide


def test_watch_of_a_job_that_did_not_succeed_exits_1(store: Store) -> None:
    (job_id,) = _bulk(store, 1)
    assert main(["cancel", job_id]) == 0
    done = orch("status", job_id, "--watch", "--interval", "0.5", timeout=30)
    assert done.returncode == 1 and "cancelled" in done.stdout


# --- logs -f --------------------------------------------------------------------------------------


def test_logs_follow_prints_output_while_the_job_runs_and_exits_when_it_ends(
    tmp_path: Path, orch_home: Path, store: Store, loop: Reconciler
) -> None:
    code = "import time\nfor i in range(8):\n    print(f'line {i}', flush=True)\n    time.sleep(0.4)\n"
    job_id = _job(tmp_path, orch_home, store, code)
    follow = start("logs", job_id, "-f")
    lines = Lines(follow)
    finished_at = 0.0

    def done() -> bool:
        nonlocal finished_at
        finished_at = time.monotonic()
        return _finished(store, job_id)

    run_until(loop, done)
    assert follow.wait(timeout=30) == 0
    assert lines.wait_for("line 0") < finished_at  # shown live, not after the fact
    out = lines.text()
    assert [ln for ln in out.splitlines() if ln.startswith("line")] == [f"line {i}" for i in range(8)]
    assert out.startswith("==> attempt 0 (on-demand p3.2xlarge")
    assert follow.stderr is not None and follow.stderr.read() == ""


def test_ctrl_c_stops_following_quietly_with_130(
    tmp_path: Path, orch_home: Path, store: Store, loop: Reconciler
) -> None:
    job_id = _job(tmp_path, orch_home, store, "import time; print('started', flush=True); time.sleep(60)")
    follow = start("logs", job_id, "--follow")
    lines = Lines(follow)
    run_until(loop, lambda: "started" in lines.text(), timeout=60)
    follow.send_signal(signal.SIGINT)
    assert follow.wait(timeout=20) == 130
    assert follow.stderr is not None and follow.stderr.read() == ""

    watch = start("status", job_id, "--watch", "--interval", "0.5")
    Lines(watch).wait_for("running")
    watch.send_signal(signal.SIGINT)
    assert watch.wait(timeout=20) == 130
    assert watch.stderr is not None and "Traceback" not in watch.stderr.read()


def test_a_reader_that_goes_away_is_not_a_traceback(orch_home: Path) -> None:
    shell = f"{' '.join(ORCH)} status --watch --interval 0.5 | head -1"
    done = subprocess.run(["bash", "-c", shell], cwd=REPO, capture_output=True, text=True, timeout=30, env=_env())
    assert done.stdout == "no jobs\n"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


# --- `orch --help` stays fast: these modules load no heavy library --------------------------------


def test_the_status_modules_import_no_heavy_library() -> None:
    code = ("import sys, orchestrator.cli.status, orchestrator.cli.render, orchestrator.cli.logs\n"
            "print(sorted(m for m in ('sqlalchemy', 'numpy', 'boto3', 'kubernetes') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
