"""Processes of the `local` provider as the kernel sees them, read from /proc.

The provider must find, judge and kill processes that a previous provider object (a controller
that has since restarted) started, so nothing here relies on being the parent. The agent is named
by (pid, start time): a pid alone could have been reused by an unrelated program after ours died.

Each attempt starts as a new session led by the agent. The agent may move the job into a session
of its own (orch's agent does, to signal the job's group alone), and a job outlives a SIGKILLed
agent, so the session is not enough to find an attempt's processes: each attempt's environment
also carries `ORCH_LOCAL_INSTANCE_ID`, inherited by everything the job starts, and a process with
that variable (or in the agent's session) belongs to the attempt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vocab import Clock

PROC = Path("/proc")
INSTANCE_ENV = "ORCH_LOCAL_INSTANCE_ID"
# Cloud credentials of the controller must not leak into a job's environment (or its logs).
CREDENTIAL_PREFIXES = ("AWS_", "GOOGLE_", "CLOUDSDK_AUTH_", "AZURE_")
# The controller's own secrets and cloud configuration, which a job has no business reading.
CREDENTIAL_NAMES = frozenset({"ORCH_DATABASE_URL", "ORCH_TEST_POSTGRES_URL", "KUBECONFIG", "BOTO_CONFIG",
                              "BOTO_PATH"})
_POLL_SECONDS = 0.05
# After SIGKILL the kernel needs a moment to tear the processes down; this bounds that wait.
_KILL_WAIT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    state: str  # one letter, as in ps: R, S, D, Z (zombie), ...
    pgrp: int
    session: int
    start_time: int  # clock ticks after boot

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


@dataclass(frozen=True, slots=True)
class Attempt:
    """How to recognise one attempt's processes: the agent's (pid, start time) and the marker."""

    instance_id: str
    pid: int | None
    start_time: int | None


def proc_info(pid: int) -> ProcInfo | None:
    """The process's state, or None when no process has this pid."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
    rest = raw[raw.rindex(")") + 2:].split()
    return ProcInfo(pid=pid, state=rest[0], pgrp=int(rest[2]), session=int(rest[3]), start_time=int(rest[19]))


def _pids() -> Iterator[int]:
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            yield int(entry.name)


def _read(pid: int, name: str) -> bytes:
    try:
        return (PROC / str(pid) / name).read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return b""


def session_members(session: int) -> list[ProcInfo]:
    """Live (non-zombie) processes of a session."""
    infos = (proc_info(pid) for pid in _pids())
    return [i for i in infos if i is not None and i.session == session and not i.zombie]


def leader_alive(pid: int, start_time: int | None) -> bool:
    info = proc_info(pid)
    if info is None or info.zombie:
        return False
    return start_time is None or info.start_time == start_time


def session_is_ours(pid: int, start_time: int | None) -> bool:
    """Whether the session numbered `pid` can still be the one we started.

    The kernel does not hand out a pid that still names a live session or group, so while any
    member lives the number is ours. If the leader's pid now belongs to a younger process, the
    number was free at some point: our session is gone and the new one is someone else's.
    """
    info = proc_info(pid)
    return info is None or start_time is None or info.start_time == start_time or info.zombie


def attempt_processes(attempt: Attempt) -> list[ProcInfo]:
    """Live processes of an attempt: the agent's session, and every process carrying its marker."""
    session = attempt.pid if attempt.pid is not None and session_is_ours(attempt.pid, attempt.start_time) else None
    needle = f"\0{INSTANCE_ENV}={attempt.instance_id}\0".encode()
    out = []
    for pid in _pids():
        info = proc_info(pid)
        if info is None or info.zombie:
            continue
        if info.session == session or needle in b"\0" + _read(pid, "environ"):
            out.append(info)
    return out


def signal_session(session: int, sig: signal.Signals) -> int:
    """Send `sig` to every process group in the session; returns how many live members it had."""
    members = session_members(session)
    for group in sorted({m.pgrp for m in members}):
        # ProcessLookupError: the group ended in between; PermissionError: it is not ours to signal.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    return len(members)


def find_by_argument(argument: str) -> ProcInfo | None:
    """The live session leader whose argv holds `argument` exactly: an agent whose pid was never saved.

    Only a session leader counts: a child the agent has forked but not yet exec'd shows the agent's
    argv for a moment too.
    """
    needle = argument.encode()
    for pid in _pids():
        if needle in _read(pid, "cmdline").split(b"\0"):
            info = proc_info(pid)
            if info is not None and not info.zombie and info.session == pid:
                return info
    return None


def program_problem(argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str]) -> str | None:
    """Why `argv[0]` cannot be executed as the agent will execute it (PATH from `env`, relative to `cwd`).

    None when it can (or when there is no argv: an image job, whose program lives in the image).
    Checked before anything is started, so a command that is not there ends the attempt as
    FAILED_TO_START, unbilled, instead of as a job that ran and exited 127.
    """
    if not argv:
        return None
    program = argv[0]
    if "\0" in program:
        return "contains a NUL byte"
    base = Path(cwd) if cwd else Path.cwd()
    if "/" in program:
        candidates = [base / program]
    else:
        candidates = [base / folder / program for folder in os.get_exec_path(dict(env)) if folder]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return None
    if "/" in program:
        return "is not an executable file" if candidates[0].exists() else "does not exist"
    return "is not found on the job's PATH"


def job_environment(base: Mapping[str, str], extra: Mapping[str, str], instance_id: str) -> dict[str, str]:
    """`base` (the controller's environment) without cloud credentials, `extra` on top, and the marker."""
    env = {k: v for k, v in base.items() if not k.startswith(CREDENTIAL_PREFIXES) and k not in CREDENTIAL_NAMES}
    env.update(extra)
    env[INSTANCE_ENV] = instance_id
    return env


class Sessions:
    """Start, watch and end attempts' processes, whether this object started them or not.

    Children started here are also polled, so that a dead one is reaped and not mistaken for a
    live process; processes started by an earlier provider object are judged from /proc alone.
    """

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._exits: dict[int, int] = {}  # pid -> exit status, for the agents this object started

    def spawn(self, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str], log: Path) -> ProcInfo:
        """Start `argv` as a new session writing to `log`; OSError if it cannot start."""
        with open(log, "ab") as out:
            # argv list, no shell: the command is the user's, passed through verbatim.
            child = subprocess.Popen(  # noqa: S603
                list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self._children[child.pid] = child
        info = proc_info(child.pid)
        return info or ProcInfo(child.pid, "R", child.pid, child.pid, 0)

    def reap(self) -> None:
        for pid, child in list(self._children.items()):
            code = child.poll()
            if code is not None:
                del self._children[pid]
                self._exits[pid] = code
                if len(self._exits) > 10_000:  # a long-lived controller keeps the recent ones
                    self._exits.pop(next(iter(self._exits)))

    def agent_exit(self, attempt: Attempt) -> int | None:
        """How the attempt's agent process exited, when this object started it and saw it end (None
        otherwise: an agent started by an earlier controller is judged by its status file alone)."""
        self.reap()
        return self._exits.get(attempt.pid) if attempt.pid is not None else None

    def agent_alive(self, attempt: Attempt) -> bool:
        self.reap()
        return attempt.pid is not None and leader_alive(attempt.pid, attempt.start_time)

    def terminate(self, attempt: Attempt, grace: float, clock: Clock) -> None:
        """SIGTERM, `grace` seconds of the clock to finish, then SIGKILL whatever is left.

        The SIGTERM goes to the agent's session only while the agent lives: it relays the signal to
        the job, which should get it once, not twice. Without an agent, the job gets it directly.
        """
        if self.agent_alive(attempt) and attempt.pid is not None:
            # The agent's own group only (it leads its session): it relays the signal to the job.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(attempt.pid, signal.SIGTERM)
        else:
            for info in attempt_processes(attempt):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(info.pid, signal.SIGTERM)
        deadline = clock.now() + grace
        while clock.now() < deadline and self._live(attempt):
            clock.sleep(_POLL_SECONDS)
        self.kill(attempt)

    def kill(self, attempt: Attempt) -> None:
        """SIGKILL every process of the attempt and wait until none is left."""
        # Real time, not the injected clock: this waits on the kernel, not on the simulated market.
        give_up = time.monotonic() + _KILL_WAIT_SECONDS
        while time.monotonic() < give_up:
            left = attempt_processes(attempt)
            if not left:
                break
            for info in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(info.pid, signal.SIGKILL)
            self.reap()
            time.sleep(0.01)
        self.reap()

    def _live(self, attempt: Attempt) -> bool:
        self.reap()
        return bool(attempt_processes(attempt))
