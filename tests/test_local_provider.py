"""The local provider with real processes: launch, termination, adoption after a restart, clear errors.

The agent is a tiny stand-in (tests/local_support.py: runs the job, forwards the notice as SIGTERM,
writes status.json), so these tests do not depend on `orchestrator.job.agent`. Every process a test
starts is killed and checked dead by the `home` fixture. The simulated spot market is exercised in
tests/test_local_provider_spot.py.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from providers.base import LogSource, Provider
from providers.local.proc import session_members
from providers.local.records import InstanceDir, InstanceRecord, instance_id_for
from tests import local_support
from tests.local_support import (
    BOTH_AGENTS,
    PY,
    SLEEPER,
    STUBBORN,
    FakeClock,
    launch_running,
    live,
    make,
    only,
    procs,
    record_and_pid,
    request,
    wait_for,
)
from vocab import EndReason, Instance, InstanceState, LaunchRequest, Market, PermanentError

# The shared fixtures, bound here so pytest finds them for this module's tests.
home, agent = local_support.home, local_support.agent


def record_without_process(home: Path, req: LaunchRequest) -> InstanceDir:
    """What a launch that crashed after writing its record (before saving a pid) leaves on disk."""
    idir = InstanceDir(home / "instances", instance_id_for(req.attempt_id))
    idir.save(InstanceRecord(instance_id=idir.instance_id, attempt_id=req.attempt_id, job_id=req.job_id,
                             task_id=req.task_id, attempt_number=0, market="on-demand", zone="local-a",
                             instance_type="p3.2xlarge", offer={}, launched_at=time.time(), reclaim_at=None,
                             notice_seconds=120.0, terminate_grace_seconds=5.0))
    return idir


# --- launch, list, terminate -----------------------------------------------------------------------


def test_implements_the_provider_protocols(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    assert isinstance(provider, Provider) and isinstance(provider, LogSource)


@BOTH_AGENTS
def test_launch_list_terminate(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    instance, record, pid = launch_running(home, provider)
    assert instance.state is InstanceState.RUNNING and instance.region == "local"
    assert record.pid_start_time is not None
    assert only(provider).state is InstanceState.RUNNING
    provider.terminate(instance)
    ended = only(provider)
    assert ended.state is InstanceState.TERMINATED and ended.reason is EndReason.TERMINATED
    assert ended.ended_at is not None
    assert procs(record) == [] and not live(pid)
    provider.terminate(instance)  # idempotent
    provider.terminate(Instance("local", "local", "local-a", "local-nope", "p3.2xlarge", Market.SPOT,
                                InstanceState.RUNNING, "x"))


def test_launch_is_idempotent_on_the_attempt_id(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    first = provider.launch(request(provider))
    again = provider.launch(request(provider))
    from_new_object = make(home, agent).launch(request(provider))
    assert first.instance_id == again.instance_id == from_new_object.instance_id
    assert len(provider.instances()) == 1
    idir = InstanceDir(home / "instances", first.instance_id)
    record = idir.load()
    assert record is not None
    wait_for(lambda: len(procs(record)) == 2)  # the agent and one job, not two of each

    def marked() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and _argv_has(p, str(idir.notice_path))]

    # The job is forked from the agent and shows the agent's argv until it execs: wait that out. A
    # second agent would be there for good (a launch returns once its agent has exec'd), so this only
    # passes with one.
    wait_for(lambda: marked() == [record.pid])
    provider.terminate(first)


def _argv_has(proc: Path, argument: str) -> bool:
    try:
        return argument.encode() in (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def test_exit_code_log_and_environment(home: Path, agent: list[str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/secret.json")
    script = ("import os, sys; print(os.getcwd(), os.environ.get('AWS_SECRET_ACCESS_KEY'), "
              "os.environ.get('GOOGLE_APPLICATION_CREDENTIALS'), os.environ['ORCH_JOB_ID'], "
              "os.environ['ORCH_MARKET'], os.environ['MINE']); sys.exit(3)")
    provider = make(home, agent)
    provider.launch(request(provider, (PY, "-c", script), env={"MINE": "yes"}, workdir=str(tmp_path)))
    wait_for(lambda: only(provider).state is InstanceState.TERMINATED)
    ended = only(provider)
    assert ended.reason is EndReason.EXITED and ended.exit_code == 3
    assert provider.read_log(ended).split() == [str(tmp_path), "None", "None", "job-1", "on-demand", "yes"]
    assert ended.log_uri is not None and "do-not-leak" not in Path(ended.log_uri).read_text()


@BOTH_AGENTS
def test_terminate_kills_a_job_that_ignores_sigterm_after_the_grace(home: Path, agent: list[str]) -> None:
    clock = FakeClock()  # the grace is waited on the provider's clock: the test reads what it waited
    provider = make(home, agent, clock, terminate_grace_seconds=0.3)
    # The job's own grace (0.5 s, plus 1 s for the agent) outweighs the provider's 0.3 s.
    instance = provider.launch(request(provider, STUBBORN, grace=0.5))
    record, _ = record_and_pid(home, instance)
    wait_for(lambda: "ready" in provider.read_log(instance))  # the job ignores SIGTERM from now on
    before = clock.t
    provider.terminate(instance)
    assert clock.t - before == pytest.approx(1.5, abs=0.06)  # the whole grace, then SIGKILL: no longer
    assert procs(record) == []
    assert only(provider).reason is EndReason.TERMINATED


@BOTH_AGENTS
def test_agent_killed_from_outside_is_lost_and_its_job_cleaned_up(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    _, record, pid = launch_running(home, provider)
    os.kill(pid, signal.SIGKILL)  # only the agent: its job lives on until the provider looks
    wait_for(lambda: only(provider).state is InstanceState.TERMINATED)
    assert only(provider).reason is EndReason.LOST
    assert procs(record) == []


# --- restart: a new provider object over the same home ---------------------------------------------


@BOTH_AGENTS
def test_new_provider_adopts_and_terminates_a_running_instance(home: Path, agent: list[str]) -> None:
    old = make(home, agent)
    instance, record, pid = launch_running(home, old)
    new = make(home, agent)
    adopted = only(new)
    assert adopted.instance_id == instance.instance_id and adopted.state is InstanceState.RUNNING
    new.terminate(adopted)
    assert procs(record) == [] and not live(pid)
    assert only(new).reason is EndReason.TERMINATED
    assert only(old).reason is EndReason.TERMINATED


def test_process_started_before_its_pid_was_saved_is_adopted(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    req = request(provider)
    idir = record_without_process(home, req)
    # What a controller that died right after starting the agent left behind.
    orphan = subprocess.Popen([*agent, "--notice-file", str(idir.notice_path), "--status-file",
                               str(idir.status_path), "--grace", "1", "--", *SLEEPER], start_new_session=True)
    try:
        wait_for(lambda: _argv_has(Path(f"/proc/{orphan.pid}"), str(idir.notice_path)))
        adopted = only(make(home, agent))
        assert adopted.state is InstanceState.RUNNING
        assert make(home, agent).launch(req).instance_id == adopted.instance_id  # no second process
        make(home, agent).terminate(adopted)
        assert orphan.wait(timeout=5) is not None
        assert session_members(orphan.pid) == []
    finally:
        if orphan.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)
            orphan.wait()


def test_a_launch_that_crashed_before_starting_is_completed_by_the_retry(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    req = request(provider)
    record_without_process(home, req)
    instance = provider.launch(req)
    assert instance.state is InstanceState.RUNNING
    provider.terminate(instance)
    assert only(provider).reason is EndReason.TERMINATED


# --- offers, errors, garbage collection ------------------------------------------------------------


def test_unstartable_agent_is_failed_to_start(home: Path, tmp_path: Path) -> None:
    provider = make(home, [str(tmp_path / "no-such-agent")])
    req = request(provider)
    with pytest.raises(PermanentError, match="could not start"):
        provider.launch(req)
    again = provider.launch(req)
    assert again.state is InstanceState.TERMINATED and again.reason is EndReason.FAILED_TO_START


def test_foreign_offer_is_refused(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    req = request(provider)
    foreign = dataclasses.replace(req, offer=dataclasses.replace(req.offer, provider="aws"))
    with pytest.raises(PermanentError, match="cannot launch"):
        provider.launch(foreign)


def test_ended_instances_are_collected_after_an_hour(home: Path, agent: list[str]) -> None:
    clock = FakeClock()
    provider = make(home, agent, clock)
    instance = provider.launch(request(provider, (PY, "-c", "pass")))
    wait_for(lambda: only(provider).state is InstanceState.TERMINATED)
    ended_at = only(provider).ended_at
    assert ended_at is not None
    clock.t = ended_at + 3599
    assert only(provider).instance_id == instance.instance_id
    clock.t = ended_at + 3601
    assert provider.instances() == []
    assert not (home / "instances" / instance.instance_id).exists()


def test_notices_right_after_instances_reuse_its_walk(home: Path, agent: list[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The reconciler asks for both every tick: the instances are walked (locks, /proc) once."""
    provider = make(home, agent)
    provider.launch(request(provider))
    walks = []
    real = provider._refresh

    def counting() -> list[tuple[InstanceDir, InstanceRecord]]:
        walks.append(1)
        return real()

    monkeypatch.setattr(provider, "_refresh", counting)
    provider.instances()
    provider.notices()
    assert len(walks) == 1
    provider.terminate(only(provider))
    provider.notices()  # a terminate invalidates the walk: the next look is fresh
    assert len(walks) == 3
