"""The whole loop on one machine: reconciler + store + local provider + agent + checkpoint SDK.

These run real processes and real time, so they are kept short: small traces with 1 s ticks, a
1 s notice, a fold job of a few seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.core.model import Outcome, TaskState
from orchestrator.store import Store
from tests.http_fake import ManualClock
from tests.loop_support import FOLD, job_toml, pid_alive, python_command, reconciler, run_until, submit, write_trace

pytestmark = pytest.mark.slow


def _fold_workdir(tmp: Path, n: int) -> Path:
    work = tmp / "work"
    work.mkdir()
    shutil.copy(FOLD / "fold.py", work / "fold.py")
    records = (FOLD / "seqs.fasta").read_text().split(">")[1 : n + 1]
    (work / "seqs.fasta").write_text("".join(">" + r for r in records))
    return work


def _fold_command(seconds: float) -> list[str]:
    return [sys.executable, "fold.py", "seqs.fasta", "--out", "results.tsv", "--seconds-per-seq", str(seconds),
            "--rounds", "200", "--checkpoint-every", "2"]


def test_reclaimed_job_resumes_from_checkpoints_and_output_equals_an_uninterrupted_run(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    work = _fold_workdir(tmp_path, 30)
    reference = tmp_path / "ref"
    reference.mkdir()
    subprocess.run([sys.executable, str(work / "fold.py"), str(work / "seqs.fasta"), "--out", "results.tsv",
                    "--seconds-per-seq", "0", "--rounds", "200"], cwd=reference, check=True,
                   env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(FOLD.parent.parent)})
    # Spot is taken away at 4.5 s and 9 s (1.5 s ticks), each time with a 1 s notice: late enough
    # for the job to have started on a loaded machine, early enough to land mid-run.
    write_trace(work / "market.json", [1, 1, 1, 0, 1, 1, 0] + [1] * 60, gap=1.5)
    path = job_toml(work, command=_fold_command(0.4),
                    local={"trace": "market.json", "notice_seconds": 1, "zones": ["local-a"]})
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=90)

    task = sqlite_store.tasks(job_id)[0]
    attempts = [a for a in sqlite_store.attempts(job_id) if not a.unbilled]
    assert task.state is TaskState.SUCCEEDED
    assert sum(a.outcome is Outcome.PREEMPTED for a in attempts) >= 2
    assert attempts[-1].outcome is Outcome.SUCCEEDED
    # Every later attempt resumed from a checkpoint, not from zero.
    assert all(a.progress_start > 0 for a in attempts[1:])
    assert (work / "results.tsv").read_bytes() == (reference / "results.tsv").read_bytes()
    kinds = [e.kind for e in sqlite_store.events(job_id)]
    assert "notice" in kinds and "requeue" in kinds and kinds[-1] == "finished"
    notices = [e.attempt_id for e in sqlite_store.events(job_id) if e.kind == "notice"]
    assert len(notices) == len(set(notices)), "a pending notice is recorded once per attempt, not every tick"


def test_cancellation_kills_the_process_group(tmp_path: Path, orch_home: Path, sqlite_store: Store) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(600)\n"
    )
    path = job_toml(tmp_path, command=python_command(code), market="on-demand")
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: pids.exists() and len(pids.read_text().split()) == 2, timeout=30)
    job_pids = [int(p) for p in pids.read_text().split()]
    assert all(pid_alive(p) for p in job_pids)

    sqlite_store.request_cancel(job_id, time.time())
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=30)

    assert sqlite_store.tasks(job_id)[0].state is TaskState.CANCELLED
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in job_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in job_pids), "a process of the cancelled job survived"
    assert sqlite_store.attempts(job_id)[-1].outcome is Outcome.CANCELLED


def test_a_restarted_controller_adopts_running_attempts(tmp_path: Path, orch_home: Path, sqlite_store: Store) -> None:
    marker = tmp_path / "started"
    code = f"import os, time\nopen({str(marker)!r}, 'a').write(str(os.getpid()) + '\\n')\ntime.sleep(3)\n"
    path = job_toml(tmp_path, command=python_command(code), market="on-demand")
    job_id = submit(sqlite_store, path, orch_home)
    clock = ManualClock()  # the controllers' time: the lease runs out when the test says
    first = reconciler(sqlite_store, orch_home, clock=clock, owner="first", lease_seconds=60.0)
    run_until(first, lambda: marker.exists(), timeout=30)
    del first  # the controller dies; its agents run on in their own sessions

    clock.advance(61.0)  # the dead controller's lease runs out
    second = reconciler(sqlite_store, orch_home, clock=clock, owner="second", lease_seconds=60.0)
    run_until(second, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=30)

    assert sqlite_store.tasks(job_id)[0].state is TaskState.SUCCEEDED
    assert len(sqlite_store.attempts(job_id)) == 1, "the restart launched a duplicate attempt"
    assert len(marker.read_text().split()) == 1, "the job's process was started twice"


def test_an_attempt_left_launching_is_launched_once_with_the_same_token(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    marker = tmp_path / "runs"
    code = f"open({str(marker)!r}, 'a').write('run\\n')"
    path = job_toml(tmp_path, command=python_command(code), market="on-demand")
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    # Simulate a controller that recorded the attempt, launched it, and died before recording "running".
    task = sqlite_store.tasks(job_id)[0]
    offers = r.offers("local", sqlite_store.job(job_id).spec.resources, (), job_id)  # type: ignore[union-attr]
    offer = next(o for o in offers if str(o.market) == "on-demand")
    attempt = sqlite_store.begin_attempt(task, offer, time.time())
    from orchestrator.core.plan.launch import launch_request

    spec = sqlite_store.job(job_id).spec  # type: ignore[union-attr]
    r.providers["local"].launch(launch_request(spec, job_id, task, attempt, offer, [attempt]))

    restarted = reconciler(sqlite_store, orch_home, owner="restarted")
    run_until(restarted, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=30)
    assert sqlite_store.tasks(job_id)[0].state is TaskState.SUCCEEDED
    assert marker.read_text().count("run") == 1
    assert len(sqlite_store.attempts(job_id)) == 1


def test_an_instance_no_live_attempt_owns_is_terminated(tmp_path: Path, orch_home: Path, sqlite_store: Store) -> None:
    pidfile = tmp_path / "pid"
    code = f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    path = job_toml(tmp_path, command=python_command(code), market="on-demand")
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: pidfile.exists() and pidfile.read_text() != "", timeout=30)
    pid = int(pidfile.read_text())
    live = sqlite_store.attempts(job_id)[-1]
    # The store forgets the attempt (as after a restore from an old backup): the instance is an orphan.
    sqlite_store.end_attempt(live, Outcome.LOST, time.time(), task_transitions=("fail",), message="test")
    run_until(r, lambda: not pid_alive(pid), timeout=30)
    assert any(e.kind == "orphan_terminated" for e in sqlite_store.events(job_id))


def test_failures_are_retried_up_to_max_failures(tmp_path: Path, orch_home: Path, sqlite_store: Store) -> None:
    path = job_toml(tmp_path, command=python_command("raise SystemExit(3)"), market="on-demand",
                    retry="[retry]\nmax_failures = 2")
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=60)
    task = sqlite_store.tasks(job_id)[0]
    assert task.state is TaskState.FAILED
    assert task.failures == 3
    assert [a.exit_code for a in sqlite_store.attempts(job_id)] == [3, 3, 3]


class _FastClock:
    """Wall time that runs an hour per tick, so a real process can spend a budget in seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, 0.05))


def test_the_budget_cap_stops_a_running_job_and_further_launches(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    pidfile = tmp_path / "pid"
    code = f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    # 2 h of on-demand work at $3.06/h = $6.12; the budget allows $7: launching is allowed, but the job
    # is killed once spending reaches $7, and never relaunched.
    path = job_toml(tmp_path, command=python_command(code), market="on-demand", hours=2.0, deadline_hours=10,
                    extra_schedule="budget_usd = 7.0")
    clock = _FastClock()
    job_id = submit(sqlite_store, path, orch_home, now=clock.now())
    r = reconciler(sqlite_store, orch_home, clock=clock)
    run_until(r, lambda: pidfile.exists() and pidfile.read_text() != "", timeout=30)
    pid = int(pidfile.read_text())

    clock.offset += 3 * 3600.0  # three hours later: $9.18 spent, past the budget
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=30)

    assert sqlite_store.tasks(job_id)[0].state is TaskState.BUDGET_EXCEEDED
    attempts = sqlite_store.attempts(job_id)
    assert len(attempts) == 1 and attempts[0].outcome is Outcome.BUDGET
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid)


def test_an_agent_that_cannot_start_fails_the_task_instead_of_relaunching_for_ever(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    """An agent that dies without a status (here: exit 1 at once, as one whose Python has no orch does)
    is a failure of the job's side, counted against max_failures; as a lost instance it was relaunched
    every tick without end."""
    from orchestrator.loop.reconciler import Reconciler
    from providers.local.provider import LocalProvider
    from vocab import SystemClock

    path = job_toml(tmp_path, command=python_command("print('never runs')"), market="on-demand")
    job_id = submit(sqlite_store, path, orch_home)
    clock = SystemClock()
    broken = LocalProvider(orch_home / "local", clock, agent_command=(sys.executable, "-c", "raise SystemExit(1)"))
    r = Reconciler(sqlite_store, {"local": broken}, clock, owner="test", tick_seconds=0.2)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=60)
    assert sqlite_store.tasks(job_id)[0].state is TaskState.FAILED
    attempts = sqlite_store.attempts(job_id)
    assert len(attempts) == 4  # max_failures = 3: the fourth failure ends the task
    messages = [e.message for e in sqlite_store.events(job_id)]
    assert any("ended without an exit status; 4 failures" in m for m in messages), messages[-4:]
