"""What the local provider's tests share: a stand-in agent, a market clock, fixtures and helpers.

The agent is a tiny stand-in written here (runs the job, forwards the notice as SIGTERM, writes
status.json, with `"started": false` when the job could not be started), so the tests do not depend
on `orchestrator.job.agent`. The `home` fixture kills every
process a test started, found without the code under test, and fails the test if one survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from providers.local.proc import Attempt, ProcInfo, attempt_processes, proc_info
from providers.local.provider import LocalProvider, LocalSettings
from providers.local.records import InstanceDir, InstanceRecord
from vocab import Clock, Instance, LaunchRequest, Market, Resources, SystemClock

AGENT = r"""
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
own_session = args[0] == "--own-session"  # what orch's agent does: the job in a session of its own
args = args[1:] if own_session else args
sep = args.index("--")
opts = dict(zip(args[:sep:2], args[1:sep:2]))
notice, status = opts["--notice-file"], opts["--status-file"]
try:
    child = subprocess.Popen(args[sep + 1:], start_new_session=own_session)
except OSError:  # the job never started: say so, as orch's agent does
    with open(status + ".tmp", "w") as out:
        json.dump({"exit_code": 127, "ended_at": time.time(), "interrupted": False, "started": False}, out)
    os.replace(status + ".tmp", status)
    sys.exit(127)
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
            workdir: str | None = None, grace: float = 2.0) -> LaunchRequest:
    offer = next(o for o in provider.offers(Resources(gpus=("V100",)), ("local",))
                 if o.instance_type == "p3.2xlarge" and o.market is market and o.zone == zone)
    return LaunchRequest(job_id=job, task_id=f"{job}-0", attempt_id=attempt, attempt_number=0, offer=offer,
                         command=command, env=env or {}, checkpoint_uri="file:///tmp/ckpt", grace_seconds=grace,
                         workdir=workdir, options=options or {})


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def only(provider: LocalProvider) -> Instance:
    [instance] = provider.instances()
    return instance


def record_and_pid(home: Path, instance: Instance) -> tuple[InstanceRecord, int]:
    """A launched instance's record and its agent's pid: a launch that returned has saved both."""
    record = InstanceDir(home / "instances", instance.instance_id).load()
    assert record is not None and record.pid is not None
    return record, record.pid


def launch_running(home: Path, provider: LocalProvider) -> tuple[Instance, InstanceRecord, int]:
    """Launch the default request and wait until both the agent and its job run."""
    instance = provider.launch(request(provider))
    record, pid = record_and_pid(home, instance)
    wait_for(lambda: len(procs(record)) == 2)
    return instance, record, pid


def procs(record: InstanceRecord) -> list[ProcInfo]:
    """The attempt's live processes, wherever the agent put the job."""
    return attempt_processes(Attempt(record.instance_id, record.pid, record.pid_start_time))


def live(pid: int) -> bool:
    info = proc_info(pid)
    return info is not None and not info.zombie
