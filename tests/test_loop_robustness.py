"""The loop keeps its promises when parts fail: storage outages, a broken job, other installations."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.cli.wiring import AGENT_COMMAND, open_store
from orchestrator.core.model import TaskState
from orchestrator.core.policy.registry import _REGISTRY
from orchestrator.job.checkpoint import StorageError
from orchestrator.store import Store
from orchestrator.store.repo import AmbiguousJob
from providers.local.provider import LocalProvider
from tests.loop_support import job_toml, pid_alive, python_command, reconciler, run_until, submit
from vocab import LaunchRequest, SystemClock

SLEEPER = "import os, time\nopen({path!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"


def _sleeper(tmp: Path, name: str = "pid") -> tuple[list[str], Path]:
    pidfile = tmp / name
    return python_command(SLEEPER.format(path=str(pidfile))), pidfile


def _wait_pid(pidfile: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    return int(pidfile.read_text())


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def test_cancel_works_while_checkpoint_storage_is_unreadable(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    command, pidfile = _sleeper(tmp_path)
    job_id = submit(sqlite_store, job_toml(tmp_path, command=command, market="on-demand"), orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: pidfile.exists() and pidfile.read_text() != "")
    pid = _wait_pid(pidfile)

    def broken(uri: str) -> object:
        raise StorageError(f"{uri}: access denied")

    r.storage = broken  # type: ignore[assignment]
    sqlite_store.request_cancel(job_id, time.time())
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal)
    assert sqlite_store.tasks(job_id)[0].state is TaskState.CANCELLED
    assert _gone(pid)


def test_one_broken_job_does_not_stop_the_others(
    tmp_path: Path, orch_home: Path, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_: object) -> object:
        raise RuntimeError("a bug in one policy")

    monkeypatch.setitem(_REGISTRY, "greedy", explode)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    broken = submit(sqlite_store, job_toml(tmp_path / "a", command=python_command("pass"), name="broken",
                                           extra_schedule='policy = "greedy"'), orch_home)
    healthy = submit(sqlite_store, job_toml(tmp_path / "b", command=python_command("pass"), name="healthy",
                                            market="on-demand"), orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(healthy)[0].state is TaskState.SUCCEEDED, timeout=30)
    assert any(e.kind == "controller_error" and "a bug in one policy" in e.message
               for e in sqlite_store.events(broken))
    assert sqlite_store.tasks(broken)[0].state is TaskState.PENDING


def test_instances_of_another_installation_are_left_alone(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    """Two orch stores sharing one account: neither may reap the other's instances."""
    command, pidfile = _sleeper(tmp_path)
    own = submit(sqlite_store, job_toml(tmp_path, command=python_command("pass"), market="on-demand"), orch_home)
    r = reconciler(sqlite_store, orch_home)
    provider = r.providers["local"]
    offer = next(o for o in provider.offers(sqlite_store.job(own).spec.resources, ())  # type: ignore[union-attr]
                 if str(o.market) == "on-demand")
    foreign = provider.launch(LaunchRequest(
        job_id="other-install-job", task_id="t", attempt_id="other-install-attempt", attempt_number=0, offer=offer,
        command=tuple(command), env={}, checkpoint_uri=(tmp_path / "other").as_uri(), grace_seconds=1.0,
        workdir=str(tmp_path)))
    pid = _wait_pid(pidfile)
    try:
        run_until(r, lambda: sqlite_store.tasks(own)[0].state.terminal, timeout=30)
        for _ in range(3):
            r.tick()
        assert pid_alive(pid), "the reaper killed an instance this store never launched"
    finally:
        LocalProvider(orch_home / "local", SystemClock(), agent_command=AGENT_COMMAND).terminate(foreign)
    assert _gone(pid)


def test_cancel_acts_on_that_job_only(tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for sub in ("a", "b"):
        assert main(["submit", str(job_toml(tmp_path / sub, command=python_command("pass"), name=sub)),
                     "--json"]) == 0
    store = open_store()
    a, b = sorted(store.jobs(), key=lambda j: j.name)
    assert main(["cancel", a.id]) == 0
    assert store.tasks(a.id)[0].state is TaskState.CANCELLED
    assert store.attempts(b.id) == [], "cancelling one job launched another"
    assert store.tasks(b.id)[0].state is TaskState.PENDING


def test_an_ambiguous_id_prefix_is_refused_and_wildcards_match_nothing(
    tmp_path: Path, orch_home: Path, sqlite_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli.main import prepare

    spec, _ = prepare(str(job_toml(tmp_path, command=python_command("pass"))), time.time())
    for job_id in ("abc-1", "abc-2"):
        sqlite_store.submit(spec, source="t", now=time.time(), job_id=job_id, checkpoint_uri="file:///tmp/x")
    with pytest.raises(AmbiguousJob):
        sqlite_store.job("abc")
    assert sqlite_store.job("abc-2") is not None and sqlite_store.job("abc-2").id == "abc-2"  # type: ignore[union-attr]
    assert sqlite_store.job("_") is None and sqlite_store.job("%") is None
