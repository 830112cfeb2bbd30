"""The local provider with real processes: launch, reclamation, termination, adoption after restart.

The agent is a tiny stand-in written here (runs the job, forwards the notice as SIGTERM, writes
status.json), so these tests do not depend on `orchestrator.agent`. Every process a test starts is
killed and checked dead by the `home` fixture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from providers.base import (
    CapacityError,
    Clock,
    EndReason,
    Instance,
    InstanceState,
    LaunchRequest,
    LogSource,
    Market,
    PermanentError,
    Provider,
    Resources,
    SystemClock,
)
from providers.catalog import load_catalog
from providers.local import LocalProvider, LocalSettings
from providers.local_proc import Attempt, ProcInfo, attempt_processes, proc_info, session_members
from providers.local_records import InstanceDir, InstanceRecord, instance_id_for

AGENT = r"""
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
own_session = args[0] == "--own-session"  # what orch's agent does: the job in a session of its own
args = args[1:] if own_session else args
sep = args.index("--")
opts = dict(zip(args[:sep:2], args[1:sep:2]))
notice, status = opts["--notice-file"], opts["--status-file"]
child = subprocess.Popen(args[sep + 1:], start_new_session=own_session)
interrupted = False
def on_term(signum, frame):
    global interrupted
    interrupted = True
    if own_session:  # otherwise the job is in our process group and got the same signal
        child.send_signal(signal.SIGTERM)
signal.signal(signal.SIGTERM, on_term)
while child.poll() is None:
    if not interrupted and os.path.exists(notice):
        interrupted = True
        print("agent: notice", flush=True)
        child.send_signal(signal.SIGTERM)
    time.sleep(0.02)
with open(status + ".tmp", "w") as out:
    json.dump({"exit_code": child.returncode, "ended_at": time.time(), "interrupted": interrupted}, out)
os.replace(status + ".tmp", status)
"""
# Agent stand-ins: the job in the agent's process group, or in a session of its own.
BOTH_AGENTS = pytest.mark.parametrize("agent", ["group", "session"], indirect=True)

PY = sys.executable
SLEEPER = (PY, "-c", "import time; time.sleep(30)")
STUBBORN = (PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(30)")
SAVER = (PY, "-c", "import signal, sys, time\n"
         "def save(*_):\n    print('saved', flush=True); sys.exit(0)\n"
         "signal.signal(signal.SIGTERM, save)\ntime.sleep(30)")


class FakeClock:
    """Market time under the test's control; starts at the real time so agent timestamps agree."""

    def __init__(self) -> None:
        self.t = time.time()

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    deadline = time.monotonic() + 5
    while (left := _started_for(path)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    assert not _started_for(path), "a test left processes behind"


def _started_for(home: Path) -> set[int]:
    """Live processes started for this home, found without the code under test: an argv naming the
    home, a session led by a recorded agent, or an environment carrying one of its instance ids."""
    ids = {p.name for p in (home / "instances").glob("local-*")}
    leaders = {json.loads(r.read_text()).get("pid") for r in home.glob("instances/*/instance.json")}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        state, _, _, session = stat[stat.rindex(")") + 2:].split()[:4]
        if state == "Z":
            continue
        marked = any(f"ORCH_LOCAL_INSTANCE_ID={i}".encode() in env for i in ids)
        if str(home).encode() in argv or int(session) in leaders or marked:
            found.add(int(entry.name))
    return found


@pytest.fixture
def agent(tmp_path: Path, request: pytest.FixtureRequest) -> list[str]:
    path = tmp_path / "agent.py"
    path.write_text(AGENT)
    own_session = getattr(request, "param", "group") == "session"
    return [PY, str(path), *(["--own-session"] if own_session else [])]


def make(home: Path, agent: list[str], clock: Clock | None = None, **settings: object) -> LocalProvider:
    base = LocalSettings(availability="always").with_options(settings)
    return LocalProvider(home, clock or SystemClock(), agent_command=agent, settings=base)


def request(provider: LocalProvider, command: tuple[str, ...] = SLEEPER, *, attempt: str = "att-1",
            job: str = "job-1", market: Market = Market.ON_DEMAND, zone: str = "local-a",
            options: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None,
            workdir: str | None = None) -> LaunchRequest:
    offer = next(o for o in provider.offers(Resources(gpus=("V100",)), ("local",))
                 if o.instance_type == "p3.2xlarge" and o.market is market and o.zone == zone)
    return LaunchRequest(job_id=job, task_id=f"{job}-0", attempt_id=attempt, attempt_number=0, offer=offer,
                         command=command, env=env or {}, checkpoint_uri="file:///tmp/ckpt", grace_seconds=2.0,
                         workdir=workdir, options=options or {})


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def only(provider: LocalProvider) -> Instance:
    [instance] = provider.instances()
    return instance


def procs(record: InstanceRecord) -> list[ProcInfo]:
    """The attempt's live processes, wherever the agent put the job."""
    return attempt_processes(Attempt(record.instance_id, record.pid, record.pid_start_time))


def live(pid: int) -> bool:
    info = proc_info(pid)
    return info is not None and not info.zombie


def record_without_process(home: Path, req: LaunchRequest) -> InstanceDir:
    """What a launch that crashed after writing its record (before saving a pid) leaves on disk."""
    idir = InstanceDir(home / "instances", instance_id_for(req.attempt_id))
    idir.save(InstanceRecord(instance_id=idir.instance_id, attempt_id=req.attempt_id, job_id=req.job_id,
                             task_id=req.task_id, attempt_number=0, market="on-demand", zone="local-a",
                             instance_type="p3.2xlarge", offer={}, launched_at=time.time(), reclaim_at=None,
                             notice_seconds=120.0, terminate_grace_seconds=5.0))
    return idir


def write_trace(path: Path, data: list[int], gap: float) -> str:
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return str(path)


# --- launch, list, terminate -----------------------------------------------------------------------


def test_implements_the_provider_protocols(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    assert isinstance(provider, Provider) and isinstance(provider, LogSource)


@BOTH_AGENTS
def test_launch_list_terminate(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    instance = provider.launch(request(provider))
    assert instance.state is InstanceState.RUNNING and instance.region == "local"
    record = InstanceDir(home / "instances", instance.instance_id).load()
    assert record is not None and record.pid is not None and record.pid_start_time is not None
    wait_for(lambda: len(procs(record)) == 2)  # the agent and the job
    assert only(provider).state is InstanceState.RUNNING
    provider.terminate(instance)
    ended = only(provider)
    assert ended.state is InstanceState.TERMINATED and ended.reason is EndReason.TERMINATED
    assert ended.ended_at is not None
    assert procs(record) == [] and not live(record.pid)
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

    # The job is forked from the agent and shows the agent's argv until it execs: wait that out.
    wait_for(lambda: marked() == [record.pid])
    time.sleep(0.2)
    assert marked() == [record.pid], "a second agent was started"
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
    provider = make(home, agent, terminate_grace_seconds=0.3)
    instance = provider.launch(request(provider, STUBBORN))
    record = InstanceDir(home / "instances", instance.instance_id).load()
    assert record is not None and record.pid is not None
    wait_for(lambda: "ready" in provider.read_log(instance))  # the job ignores SIGTERM from now on
    started = time.monotonic()
    provider.terminate(instance)
    took = time.monotonic() - started
    assert 0.3 <= took < 3.0
    assert procs(record) == []
    assert only(provider).reason is EndReason.TERMINATED


@BOTH_AGENTS
def test_agent_killed_from_outside_is_lost_and_its_job_cleaned_up(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    instance = provider.launch(request(provider))
    record = InstanceDir(home / "instances", instance.instance_id).load()
    assert record is not None and record.pid is not None
    wait_for(lambda: len(procs(record)) == 2)
    os.kill(record.pid, signal.SIGKILL)  # only the agent: its job lives on until the provider looks
    wait_for(lambda: only(provider).state is InstanceState.TERMINATED)
    assert only(provider).reason is EndReason.LOST
    assert procs(record) == []


# --- spot reclamation ------------------------------------------------------------------------------


@BOTH_AGENTS
def test_spot_reclaimed_with_notice_and_the_job_saves(home: Path, agent: list[str], tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.json", [1, 0], gap=0.3)
    provider = make(home, agent)
    req = request(provider, SAVER, market=Market.SPOT, options={"trace": trace, "notice_seconds": 10})
    instance = provider.launch(req)
    idir = InstanceDir(home / "instances", instance.instance_id)
    wait_for(lambda: bool(provider.notices()))
    [notice] = provider.notices()
    assert notice.instance_id == instance.instance_id and notice.deadline == pytest.approx(notice.at + 10)
    written = json.loads(idir.notice_path.read_text())
    assert written == {"kind": "interruption", "at": notice.at, "deadline": notice.deadline}
    wait_for(lambda: only(provider).state is InstanceState.TERMINATED)
    ended = only(provider)
    assert ended.reason is EndReason.PREEMPTED and ended.exit_code == 0
    assert "saved" in provider.read_log(ended)
    assert provider.notices() == []


@BOTH_AGENTS
def test_spot_killed_at_the_notice_deadline(home: Path, agent: list[str], tmp_path: Path) -> None:
    clock = FakeClock()
    trace = write_trace(tmp_path / "trace.json", [1, 1, 0], gap=60.0)
    provider = make(home, agent, clock)
    instance = provider.launch(request(provider, STUBBORN, market=Market.SPOT, options={"trace": trace}))
    record = InstanceDir(home / "instances", instance.instance_id).load()
    assert record is not None and record.pid is not None
    assert record.reclaim_at == pytest.approx(clock.t + 120.0)
    wait_for(lambda: "ready" in provider.read_log(instance))  # the job ignores SIGTERM from now on
    clock.t += 119.0
    assert provider.notices() == []
    clock.t += 1.0
    [notice] = provider.notices()
    assert notice.deadline == pytest.approx(clock.t + 120.0)  # default notice: two minutes
    clock.t += 119.0
    assert only(provider).state is InstanceState.RUNNING
    assert len(procs(record)) == 2
    clock.t += 1.0
    ended = only(provider)
    assert ended.state is InstanceState.TERMINATED and ended.reason is EndReason.PREEMPTED
    assert ended.ended_at == clock.t
    assert procs(record) == []


def test_spot_launch_while_unavailable_is_a_capacity_error(home: Path, agent: list[str], tmp_path: Path) -> None:
    clock = FakeClock()
    trace = write_trace(tmp_path / "trace.json", [0, 1, 1], gap=100.0)
    provider = make(home, agent, clock)
    req = request(provider, market=Market.SPOT, options={"trace": trace})
    with pytest.raises(CapacityError) as info:
        provider.launch(req)
    assert info.value.retry_after == pytest.approx(100.0)
    assert provider.instances() == []
    offers = provider.offers(Resources(gpus=("V100",)), (), job_id="job-1")
    assert {o.available for o in offers if o.market is Market.SPOT} == {False}
    clock.t += 100.0
    assert {o.available for o in provider.offers(Resources(), (), job_id="job-1")
            if o.market is Market.SPOT} == {True}
    instance = provider.launch(req)
    assert instance.state is InstanceState.RUNNING
    provider.terminate(instance)


def test_on_demand_ignores_the_market(home: Path, agent: list[str], tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.json", [0], gap=100.0)
    provider = make(home, agent, FakeClock())
    instance = provider.launch(request(provider, options={"trace": trace}))
    record = InstanceDir(home / "instances", instance.instance_id).load()
    assert record is not None and record.reclaim_at is None
    provider.terminate(instance)


# --- restart: a new provider object over the same home ---------------------------------------------


@BOTH_AGENTS
def test_new_provider_adopts_and_terminates_a_running_instance(home: Path, agent: list[str]) -> None:
    old = make(home, agent)
    instance = old.launch(request(old))
    record = InstanceDir(home / "instances", instance.instance_id).load()
    assert record is not None and record.pid is not None
    wait_for(lambda: len(procs(record)) == 2)
    new = make(home, agent)
    adopted = only(new)
    assert adopted.instance_id == instance.instance_id and adopted.state is InstanceState.RUNNING
    new.terminate(adopted)
    assert procs(record) == [] and not live(record.pid)
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


def test_job_market_is_fixed_by_the_first_launch(home: Path, agent: list[str]) -> None:
    clock = FakeClock()
    provider = make(home, agent, clock)
    epoch = clock.t
    first = provider.launch(request(provider, options={"zones": ["local-a", "z9"], "notice_seconds": 7}))
    stored = json.loads((home / "markets" / "job-1.json").read_text())
    assert stored["epoch"] == epoch and stored["settings"]["notice_seconds"] == 7.0
    clock.t += 50
    restarted = make(home, agent, clock)
    assert {o.zone for o in restarted.offers(Resources(), ("local",), job_id="job-1")} == {"local-a", "z9"}
    assert {o.zone for o in restarted.offers(Resources(), ("local",))} == {"local-a", "local-b"}
    second = restarted.launch(request(restarted, attempt="att-2", options={"notice_seconds": 99}))
    record = InstanceDir(home / "instances", second.instance_id).load()
    assert record is not None and record.notice_seconds == 7.0
    for instance in (first, second):
        restarted.terminate(instance)


# --- offers, errors, garbage collection ------------------------------------------------------------


def test_offers_use_catalog_prices_and_filter_regions(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    offers = provider.offers(Resources(gpus=("V100",), gpu_count=1), ())
    p3 = load_catalog().get("aws", "p3.2xlarge")
    assert p3 is not None
    price = p3.region("us-east-1")
    assert price is not None
    spot = [o for o in offers if o.instance_type == "p3.2xlarge" and o.market is Market.SPOT]
    assert [o.zone for o in spot] == ["local-a", "local-b"]
    assert {(o.price_per_hour, o.on_demand_price_per_hour, o.available) for o in spot} == \
        {(price.spot, price.on_demand, True)}
    assert {o.gpu for o in offers} == {"V100"}
    assert provider.offers(Resources(), ("us-east-1",)) == []
    assert provider.offers(Resources(gpus=("H100",)), ("local", "us-east-1"))


def test_bad_options_and_traces_fail_the_launch_clearly(home: Path, agent: list[str], tmp_path: Path) -> None:
    provider = make(home, agent)
    with pytest.raises(PermanentError, match=r"placement\.options\.local\.notice_seconds"):
        provider.launch(request(provider, options={"notice_seconds": "soon"}))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PermanentError, match=r"bad\.json: not valid JSON"):
        provider.launch(request(provider, market=Market.SPOT, options={"trace": "bad.json"},
                                workdir=str(tmp_path)))
    assert not (home / "markets" / "job-1.json").exists()
    assert provider.instances() == []


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
