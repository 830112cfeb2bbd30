"""The agent with real child processes, and its notice sources against small metadata emulators."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.job import agent
from orchestrator.job.checkpoint import Heartbeat, open_storage, read_heartbeat
from orchestrator.job.notices import FileNoticeSource, GceNoticeSource, ImdsNoticeSource, NoticeSourceError
from vocab import NoticeKind

REPO = Path(__file__).resolve().parents[1]

# The job: reports progress through the SDK, then either waits for the interruption signal and saves
# a checkpoint ("save"), ignores SIGTERM ("ignore"), or exits with a given code ("exit<N>").
CHILD = """
import json, os, signal, sys, time
from pathlib import Path
from orchestrator.job.checkpoint import INTERRUPTED_EXIT_CODE, Checkpointer

mode, marker = sys.argv[1], Path(sys.argv[2])
ckpt = Checkpointer.from_env()
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
ckpt.report_progress(0.5)
env = {k: v for k, v in os.environ.items() if k.startswith("ORCH_")}
marker.write_text(json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0), "env": env}))
if mode.startswith("exit"):
    sys.exit(int(mode[4:]))
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if ckpt.interrupted:
        ckpt.save({"state": b"saved on notice"}, progress=0.6)
        sys.exit(INTERRUPTED_EXIT_CODE)
    time.sleep(0.01)
sys.exit(99)
"""


@dataclass
class Job:
    tmp: Path
    script: Path
    marker: Path
    uri: str
    env: dict[str, str]

    def argv(self, mode: str) -> list[str]:
        return [sys.executable, str(self.script), mode, str(self.marker)]

    def heartbeat(self) -> Heartbeat | None:
        return read_heartbeat(open_storage(self.uri))


@pytest.fixture
def job(tmp_path: Path) -> Job:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    uri = (tmp_path / "ckpt").as_uri()
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(REPO),
        ORCH_JOB_ID="j1",
        ORCH_TASK_ID="j1-0",
        ORCH_ATTEMPT="4",
        ORCH_CHECKPOINT_URI=uri,
        ORCH_MARKET="spot",
    )
    env.pop("ORCH_PROGRESS_FILE", None)
    return Job(tmp_path, script, tmp_path / "started.json", uri, env)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def options(job: Job, mode: str, **kw: object) -> agent.AgentOptions:
    base: dict[str, object] = {"heartbeat_interval": 0.1, "poll_interval": 0.05, "status_file": job.tmp / "status"}
    base.update(kw)
    return agent.AgentOptions(command=tuple(job.argv(mode)), **base)  # type: ignore[arg-type]


def notice_later(path: Path, marker: Path, deadline: Callable[[], float | None] = lambda: None) -> threading.Thread:
    """Write the local provider's notice once the job has started (`deadline()` read at that moment)."""

    def write() -> None:
        wait_for(marker.exists)
        path.write_text(json.dumps({"kind": "interruption", "deadline": deadline()}))

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_notice_file_signals_the_job_which_saves_and_exits(job: Job) -> None:
    notice = job.tmp / "notice.json"
    writer = notice_later(notice, job.marker)
    code = agent.run(options(job, "save", notice_file=notice, grace=10.0), job.env)
    writer.join()
    assert code == 143
    started = json.loads(job.marker.read_text())
    assert started["pgid"] == started["pid"]  # the job leads its own process group...
    assert started["sid"] == os.getsid(0)  # ...in the agent's session, which the local provider kills
    assert started["env"]["ORCH_JOB_ID"] == "j1" and started["env"]["ORCH_INTERRUPT_SIGNAL"] == "SIGTERM"
    assert started["env"]["ORCH_PROGRESS_FILE"]
    status = json.loads((job.tmp / "status").read_text())
    assert status["exit_code"] == 143 and status["interrupted"] is True
    hb = job.heartbeat()
    assert hb is not None
    assert (hb.exit_code, hb.interrupted, hb.attempt, hb.newest_checkpoint) == (143, True, 4, 1)
    assert hb.progress == 0.6 and hb.pid == started["pid"]


class SteppingClock:
    """The agent's time, one step further at each monotonic read: a grace of a minute runs out after a
    known number of the agent's polls, however slow or loaded the machine. `time()` is wall time that
    moves with it, so a notice's deadline (Unix seconds) is read against the same clock."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.elapsed = 0.0
        self._wall = time.time()

    def monotonic(self) -> float:
        self.elapsed += self.step
        return self.elapsed

    def time(self) -> float:
        return self._wall + self.elapsed


def test_job_that_ignores_the_signal_is_killed_after_grace(job: Job) -> None:
    notice = job.tmp / "notice.json"
    writer = notice_later(notice, job.marker)
    clock = SteppingClock(step=1.0)
    code = agent.run(options(job, "ignore", notice_file=notice, grace=60.0), job.env,
                     monotonic=clock.monotonic, now=clock.time)
    writer.join()
    assert code == 128 + signal.SIGKILL  # the job would have exited 99 by itself, 20 real seconds on
    assert clock.elapsed >= 60.0, "killed before the grace ran out on the agent's clock"
    assert json.loads((job.tmp / "status").read_text())["interrupted"] is True


def test_notice_deadline_caps_the_grace(job: Job) -> None:
    notice = job.tmp / "notice.json"
    clock = SteppingClock(step=1.0)
    writer = notice_later(notice, job.marker, deadline=lambda: clock.time() + 5.0)
    code = agent.run(options(job, "ignore", notice_file=notice, grace=600.0), job.env,
                     monotonic=clock.monotonic, now=clock.time)
    writer.join()
    assert code == 128 + signal.SIGKILL
    assert clock.elapsed < 600.0, "the agent waited out its own grace, not the notice's deadline"


@pytest.mark.parametrize("exit_code", [0, 3])
def test_exit_code_is_propagated(job: Job, exit_code: int) -> None:
    assert agent.run(options(job, f"exit{exit_code}"), job.env) == exit_code
    status = json.loads((job.tmp / "status").read_text())
    assert status == {"exit_code": exit_code, "ended_at": status["ended_at"], "interrupted": False, "started": True}
    hb = job.heartbeat()
    assert hb is not None and hb.exit_code == exit_code and not hb.interrupted and hb.progress == 0.5


def test_missing_command_is_127(job: Job) -> None:
    opts = agent.AgentOptions(command=(str(job.tmp / "no-such-program"),), status_file=job.tmp / "status")
    assert agent.run(opts, job.env) == 127
    status = json.loads((job.tmp / "status").read_text())
    assert status["exit_code"] == 127 and status["started"] is False, "nothing ran: the provider bills nothing"


def test_agent_cli_forwards_its_own_sigterm_and_beats_while_running(job: Job) -> None:
    argv = [
        sys.executable,
        "-m",
        "orchestrator.job.agent",
        "--heartbeat-interval",
        "0.1",
        "--poll-interval",
        "0.05",
        "--grace",
        "10",
        "--",
        *job.argv("save"),
    ]
    proc = subprocess.Popen(argv, cwd=REPO, env=job.env, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (hb := job.heartbeat()) is not None and hb.progress == 0.5 and hb.exit_code is None)
        first = job.heartbeat()
        assert first is not None
        wait_for(lambda: (hb := job.heartbeat()) is not None and hb.at > first.at)  # it keeps beating
        proc.send_signal(signal.SIGTERM)  # what the kubelet does to a pod
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr.decode()
    hb = job.heartbeat()
    assert hb is not None and hb.exit_code == 143 and hb.interrupted and hb.newest_checkpoint == 1


def test_ctrl_c_reaches_the_job_as_its_interruption_signal_once(job: Job) -> None:
    """A person's Ctrl-C (SIGINT to the agent) is forwarded as the job's signal (SIGTERM here), and a
    later notice does not signal the job a second time (a second SIGTERM often means "abort now")."""
    argv = [sys.executable, "-m", "orchestrator.job.agent", "--heartbeat-interval", "0.1", "--poll-interval", "0.05",
            "--grace", "10", "--notice-file", str(job.tmp / "notice.json"), "--", *job.argv("save")]
    proc = subprocess.Popen(argv, cwd=REPO, env=job.env, stderr=subprocess.PIPE)
    try:
        wait_for(job.marker.exists)
        proc.send_signal(signal.SIGINT)
        (job.tmp / "notice.json").write_text(json.dumps({"kind": "interruption", "deadline": None}))
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr.decode()  # the SDK saw SIGTERM, saved, exited 143 (not 130)
    assert stderr.decode().count("sending SIGTERM to the job") == 1, stderr.decode()


def test_parse_args() -> None:
    opts = agent.parse_args(["--grace", "30", "--signal", "USR1", "--imds", "http://x", "--", "python", "-c", "1"])
    assert opts.command == ("python", "-c", "1") and opts.grace == 30.0 and opts.signal == signal.SIGUSR1
    assert agent.parse_args(["--signal", "15", "--", "x"]).signal == signal.SIGTERM
    with pytest.raises(SystemExit):
        agent.parse_args(["python"])
    with pytest.raises(SystemExit):
        agent.parse_args(["--"])


def test_file_notice_source(tmp_path: Path) -> None:
    source = FileNoticeSource(tmp_path / "n.json")
    assert source.poll() is None
    (tmp_path / "n.json").write_text("{half")
    assert source.poll() is None
    (tmp_path / "n.json").write_text('{"kind": "rebalance"}')
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.REBALANCE and notice.deadline is None
    (tmp_path / "n.json").write_text('{"kind": "interruption", "deadline": 123.5}')
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.INTERRUPTION and notice.deadline == 123.5


# -- metadata emulators --------------------------------------------------------------------------


@dataclass
class Metadata:
    """What the emulated metadata server currently says, and what it saw."""

    token: str | None = None
    tokens_issued: int = 0
    unauthorized: int = 0
    action: dict[str, str] | None = None
    rebalance: bool = False
    preempted: bool = False
    paths: list[str] = field(default_factory=list)


def _handler(state: Metadata) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self.reply(400)
            state.tokens_issued += 1
            state.token = f"token-{state.tokens_issued}"
            self.reply(200, state.token.encode())

        def do_GET(self) -> None:
            state.paths.append(self.path)
            if self.path.startswith("/computeMetadata/"):
                return self.gce()
            if state.token is None or self.headers.get("X-aws-ec2-metadata-token") != state.token:
                state.unauthorized += 1
                return self.reply(401)
            if self.path == "/latest/meta-data/spot/instance-action" and state.action is not None:
                return self.reply(200, json.dumps(state.action).encode())
            if self.path == "/latest/meta-data/events/recommendations/rebalance" and state.rebalance:
                return self.reply(200, b'{"noticeTime": "2026-03-01T12:00:00Z"}')
            self.reply(404)

        def gce(self) -> None:
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.reply(403)
            if self.path != "/computeMetadata/v1/instance/preempted":
                return self.reply(404)
            self.reply(200, b"TRUE" if state.preempted else b"FALSE")

    return Handler


@pytest.fixture
def metadata() -> Iterator[tuple[Metadata, str]]:
    state = Metadata()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_imds_source_uses_tokens_and_reports_notices(metadata: tuple[Metadata, str]) -> None:
    state, url = metadata
    source = ImdsNoticeSource(url)
    assert source.poll() is None
    assert state.tokens_issued == 1 and state.unauthorized == 0
    state.token = "rotated"  # the session token expired: a 401, a new token, the same answer
    assert source.poll() is None
    assert state.tokens_issued == 2 and state.unauthorized == 1
    state.rebalance = True
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.REBALANCE
    state.action = {"action": "terminate", "time": "2026-03-01T12:02:00Z"}
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.INTERRUPTION
    assert notice.deadline == 1772366520.0  # 2026-03-01T12:02:00Z


def test_imds_source_reports_an_unreachable_server() -> None:
    with pytest.raises(NoticeSourceError):
        ImdsNoticeSource("http://127.0.0.1:9", timeout=0.5).poll()


def test_agent_relays_an_imds_instance_action_that_appears_later(job: Job, metadata: tuple[Metadata, str]) -> None:
    state, url = metadata
    state.rebalance = True  # a warning only: the job must keep running through it

    def reclaim() -> None:
        # The job is up (its SDK listens for the signal) and the agent has seen the warning and
        # published it while the job ran on: only then the action.
        wait_for(job.marker.exists)
        wait_for(lambda: (hb := job.heartbeat()) is not None and hb.rebalance and hb.exit_code is None)
        state.action = {"action": "terminate", "time": "2099-01-01T00:00:00Z"}

    thread = threading.Thread(target=reclaim, daemon=True)
    thread.start()
    code = agent.run(options(job, "save", imds=url, grace=10.0), job.env)
    thread.join()
    assert code == 143
    hb = job.heartbeat()
    assert hb is not None and hb.interrupted and hb.rebalance and hb.newest_checkpoint == 1


def test_gce_source(metadata: tuple[Metadata, str]) -> None:
    state, url = metadata
    source = GceNoticeSource(url, now=lambda: 1000.0)
    assert source.poll() is None
    state.preempted = True
    notice = source.poll()
    assert notice is not None and notice.kind is NoticeKind.INTERRUPTION and notice.deadline == 1030.0
    assert "/computeMetadata/v1/instance/preempted" in state.paths
