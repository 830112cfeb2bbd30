"""`orch agent -- CMD …`: runs beside a job on its instance or in its pod, and speaks for it.

The agent starts the job in its own process group, turns the provider's interruption notice into one
signal to that group (and a SIGKILL once the grace period is spent), and publishes a heartbeat to the
task's checkpoint storage, the only channel the control plane reads. It uses the standard library and
orch's checkpoint package only, so it runs in any image that has Python and orch installed.

Exit status: the job's own, or 128 + N when the job was killed by signal N (as a shell reports it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from orchestrator.job.checkpoint.filestore import write_atomic
from orchestrator.job.checkpoint.publisher import HeartbeatPublisher
from orchestrator.job.checkpoint.rendezvous import (
    DEFAULT_WAIT_S,
    GangNode,
    RendezvousError,
    forward_gang_notice,
    gang_node,
    read_gang_notice,
    rendezvous,
)
from orchestrator.job.checkpoint.storage import Storage, StorageError, open_storage
from orchestrator.job.notices import (
    AgentNotice,
    FileNoticeSource,
    GceNoticeSource,
    ImdsNoticeSource,
    NoticeSource,
    NoticeSourceError,
)
from vocab import NoticeKind

log = logging.getLogger("orch.agent")
# sysexits' EX_TEMPFAIL: a gang node that never found its head; the job did not start.
RENDEZVOUS_FAILED = 75


@dataclass(frozen=True, slots=True)
class AgentOptions:
    command: tuple[str, ...]
    notice_file: Path | None = None
    imds: str | None = None
    gce_metadata: str | None = None
    grace: float = 120.0
    signal: signal.Signals = signal.SIGTERM
    heartbeat_interval: float = 5.0
    poll_interval: float = 1.0
    status_file: Path | None = None
    rendezvous_timeout: float = DEFAULT_WAIT_S


def parse_signal(text: str) -> signal.Signals:
    """'TERM', 'SIGTERM', 'term' or '15' -> signal.SIGTERM."""
    name = text.strip().upper()
    try:
        if name.isdigit():
            return signal.Signals(int(name))
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}") from None


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_args(argv: Sequence[str]) -> AgentOptions:
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, command = argv[:split], argv[split + 1 :]
    p = argparse.ArgumentParser(
        prog="orch agent",
        usage="%(prog)s [options] -- CMD [ARGS...]",
        description="Run a job, relay interruption notices to it, publish its heartbeat.",
    )
    p.add_argument("--notice-file", type=Path, help="JSON notice file (the local provider writes it)")
    p.add_argument("--imds", metavar="URL", help="AWS instance metadata base URL (IMDSv2)")
    p.add_argument("--gce-metadata", metavar="URL", help="GCE metadata server base URL")
    p.add_argument("--grace", type=float, default=120.0, help="seconds from notice to SIGKILL (default 120)")
    p.add_argument("--signal", type=parse_signal, default=signal.SIGTERM, help="signal sent on a notice")
    p.add_argument("--heartbeat-interval", type=_positive, default=5.0, metavar="S")
    p.add_argument("--poll-interval", type=_positive, default=1.0, metavar="S")
    p.add_argument("--status-file", type=Path, help="write the job's exit status here as JSON")
    p.add_argument("--rendezvous-timeout", type=_positive, default=DEFAULT_WAIT_S, metavar="S",
                   help="a gang node's wait for the head's address (default 900)")
    ns = p.parse_args(own)
    if not command:
        p.error("give the job's command after '--'")
    return AgentOptions(
        command=tuple(command),
        notice_file=ns.notice_file,
        imds=ns.imds,
        gce_metadata=ns.gce_metadata,
        grace=max(ns.grace, 0.0),
        signal=ns.signal,
        heartbeat_interval=ns.heartbeat_interval,
        poll_interval=ns.poll_interval,
        status_file=ns.status_file,
        rendezvous_timeout=ns.rendezvous_timeout,
    )


def notice_sources(options: AgentOptions, now: Callable[[], float] = time.time) -> list[NoticeSource]:
    sources: list[NoticeSource] = []
    if options.notice_file is not None:
        sources.append(FileNoticeSource(options.notice_file))
    if options.imds:
        sources.append(ImdsNoticeSource(options.imds))
    if options.gce_metadata:
        sources.append(GceNoticeSource(options.gce_metadata, now=now))
    return sources


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    """One job process group: its start, the signals it gets, and its end.

    `monotonic` times the grace period and `now` (Unix seconds) reads a notice's deadline; both are
    injected so tests can run out a long grace in a few polls instead of waiting it out.
    """

    def __init__(self, options: AgentOptions, sources: Sequence[NoticeSource], *,
                 monotonic: Callable[[], float] = time.monotonic, now: Callable[[], float] = time.time) -> None:
        self.options = options
        self.sources = list(sources)
        self._monotonic = monotonic
        self._now = now
        self.child: subprocess.Popen[bytes] | None = None
        self._early_signals: list[int] = []
        self.interrupted = False
        self._signalled = False
        self._rebalance_seen = False
        self._kill_at: float | None = None  # monotonic seconds
        self._killed = False
        self._failing: set[str] = set()
        self.publisher: HeartbeatPublisher | None = None
        # A gang node tells its peers of its own notice through this (see `join_gang`).
        self.on_interrupt: Callable[[float | None, str], None] | None = None

    def start(self, env: Mapping[str, str]) -> int:
        """Start the job in a process group of its own; pass on signals that came first.

        A group, not a new session: whoever started the agent (the local provider kills whole
        sessions) must still reach the job when the agent itself is gone.
        """
        self.child = subprocess.Popen(self.options.command, env=dict(env), process_group=0)  # noqa: S603
        for signum in self._early_signals:
            self.signal_group(signum)
        return self.child.pid

    def signal_group(self, signum: int) -> None:
        if self.child is None:
            self._early_signals.append(signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, signum)

    def interrupt(self, signum: int, grace: float, why: str) -> None:
        """Signal the group once, whatever says so first (a notice, a pod's SIGTERM), and start the
        clock towards SIGKILL; a later source only brings the deadline closer.

        A second SIGTERM is a common "abort now" in training frameworks: it would cut the save short.
        """
        if not self._signalled:
            log.info("%s: sending %s to the job", why, signal.Signals(signum).name)
            self.signal_group(signum)
            self._signalled = True
            if self.on_interrupt is not None:
                self.on_interrupt(self._now() + max(grace, 0.0), why)
        self.interrupted = True
        if self.publisher is not None:
            self.publisher.mark(interrupted=True)
        kill_at = self._monotonic() + max(grace, 0.0)
        self._kill_at = kill_at if self._kill_at is None else min(self._kill_at, kill_at)

    def on_agent_signal(self, signum: int, _frame: FrameType | None) -> None:
        """A pod's SIGTERM (or a person's Ctrl-C) is the job's notice too: the job gets the signal it
        listens for (`--signal`), with the same grace."""
        self.interrupt(self.options.signal, self.options.grace, f"agent received {signal.Signals(signum).name}")

    def poll_notices(self) -> None:
        if self._signalled:
            return
        for source in self.sources:
            try:
                notice = source.poll()
            except NoticeSourceError as e:
                if source.name not in self._failing:
                    log.warning("notice source %s failed (will keep trying): %s", source.name, e)
                self._failing.add(source.name)
                continue
            self._failing.discard(source.name)
            if notice is None:
                continue
            if notice.kind is NoticeKind.REBALANCE:
                if not self._rebalance_seen:
                    log.info("rebalance recommendation from %s: no action, the control plane decides", source.name)
                    self._rebalance_seen = True
                    if self.publisher is not None:
                        self.publisher.mark(rebalance=True)
                continue
            grace = self.options.grace
            if notice.deadline is not None:  # the capacity leaves at the deadline whatever our grace says
                grace = min(grace, max(notice.deadline - self._now(), 0.0))
            self.interrupt(self.options.signal, grace, f"interruption notice from {source.name}")
            return

    def wait(self) -> int:
        """Poll notices until the job ends; enforce the grace period; return the job's exit status."""
        assert self.child is not None, "start() first"
        while True:
            timeout = self.options.poll_interval
            if self._kill_at is not None and not self._killed:
                timeout = min(timeout, max(self._kill_at - self._monotonic(), 0.0))
            try:
                returncode = self.child.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                pass
            if self._kill_at is not None and not self._killed and self._monotonic() >= self._kill_at:
                log.warning("the job outlived its grace period: SIGKILL")
                self._killed = True
                self.signal_group(signal.SIGKILL)
            self.poll_notices()
        self.signal_group(signal.SIGKILL)  # the job's group ends with the job: no stragglers
        return exit_status(returncode)


class GangNoticeSource:
    """The gang's shared notice (`rendezvous.forward_gang_notice`), read at most every `every_s`: one
    object read per node every few seconds, not every poll."""

    def __init__(self, storage: Storage, attempt_id: str, *, every_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self.attempt_id = attempt_id
        self.name = f"gang:{attempt_id}"
        self._every = every_s
        self._monotonic = monotonic
        self._next = 0.0

    def poll(self) -> AgentNotice | None:
        if self._monotonic() < self._next:
            return None
        self._next = self._monotonic() + self._every
        notice = read_gang_notice(self.storage, self.attempt_id)
        return None if notice is None else AgentNotice(NoticeKind.INTERRUPTION, self.name, notice.deadline)


def node_rank(sources: Sequence[NoticeSource]) -> int:
    """A gang node's rank where one boot template made every node (EC2, GCE): asked of the instance."""
    errors = []
    for source in sources:
        ask = getattr(source, "node_rank", None)
        if ask is None:
            continue
        try:
            return int(ask())
        except NoticeSourceError as e:
            errors.append(str(e))
    raise RendezvousError("ORCH_NODE_RANK is not set and no metadata source gives it"
                          + (f": {'; '.join(errors)}" if errors else ""))


def join_gang(supervisor: Supervisor, env: Mapping[str, str], *,
              sleep: Callable[[float], None] = time.sleep) -> tuple[dict[str, str], GangNode | None]:
    """A gang node's environment once the head is known, and its notices shared with every rank.

    Single nodes pass through untouched. Raises `RendezvousError` (or ValueError, StorageError) when
    the node cannot join: the job must not start without its peers.
    """
    out = dict(env)
    if int(out.get("ORCH_NUM_NODES", "1") or 1) <= 1:
        return out, None
    if not out.get("ORCH_NODE_RANK"):
        rank = node_rank(supervisor.sources)
        out.update(ORCH_NODE_RANK=str(rank), NODE_RANK=str(rank))
    node = gang_node(out)
    assert node is not None
    uri = out.get("ORCH_CHECKPOINT_URI")
    if not uri:
        if not out.get("MASTER_ADDR"):
            raise RendezvousError("a gang node needs ORCH_CHECKPOINT_URI to find its head")
        return out, node
    storage = open_storage(uri)
    out.update(rendezvous(storage, node, out, wait_s=supervisor.options.rendezvous_timeout,
                          monotonic=supervisor._monotonic, sleep=sleep, now=supervisor._now))
    supervisor.sources.append(GangNoticeSource(storage, node.attempt_id, every_s=5 * supervisor.options.poll_interval,
                                               monotonic=supervisor._monotonic))

    def share(deadline: float | None, why: str) -> None:
        if why.startswith("interruption notice from gang:"):
            return  # the peers have it already
        try:
            forward_gang_notice(storage, node.attempt_id, at=supervisor._now(), deadline=deadline,
                                source=f"rank {node.rank}: {why}")
        except StorageError as e:
            log.warning("could not tell the gang of the notice: %s", e)

    supervisor.on_interrupt = share
    log.info("gang node %d of %d; head at %s:%s", node.rank, node.nodes, out["MASTER_ADDR"], out["MASTER_PORT"])
    return out, node


def child_env(options: AgentOptions, base: Mapping[str, str], workdir: Path) -> dict[str, str]:
    env = dict(base)
    env.setdefault("ORCH_PROGRESS_FILE", str(workdir / "progress.json"))
    env["ORCH_INTERRUPT_SIGNAL"] = options.signal.name
    return env


def make_publisher(env: Mapping[str, str], pid: int, interval: float) -> HeartbeatPublisher | None:
    uri = env.get("ORCH_CHECKPOINT_URI")
    if not uri:
        log.warning("ORCH_CHECKPOINT_URI is not set: no heartbeat will be published")
        return None
    try:
        storage = open_storage(uri)
    except (StorageError, ImportError) as e:  # ImportError: the image lacks that backend's library
        log.warning("cannot open checkpoint storage, no heartbeat will be published: %s", e)
        return None
    return HeartbeatPublisher(
        storage,
        attempt=int(env.get("ORCH_ATTEMPT", "0") or 0),
        pid=pid,
        progress_file=Path(env["ORCH_PROGRESS_FILE"]),
        interval=interval,
    )


def write_status(path: Path, exit_code: int, interrupted: bool, *, started: bool = True) -> None:
    """The provider's record of how the job ended. `started` False: the job never ran (nothing to bill)."""
    doc = {"exit_code": exit_code, "ended_at": time.time(), "interrupted": interrupted, "started": started}
    write_atomic(path, json.dumps(doc).encode())


def run(options: AgentOptions, base_env: Mapping[str, str] | None = None, *,
        monotonic: Callable[[], float] = time.monotonic, now: Callable[[], float] = time.time) -> int:
    """Run the job to its end under the agent; `monotonic` and `now` as for `Supervisor` (tests inject them)."""
    base_env = os.environ if base_env is None else base_env
    supervisor = Supervisor(options, notice_sources(options, now), monotonic=monotonic, now=now)
    # Handlers go in before the job starts, so a stop that arrives meanwhile is not lost.
    forwarded = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, supervisor.on_agent_signal) for s in forwarded}
    try:
        with tempfile.TemporaryDirectory(prefix="orch-agent-") as tmp:
            return _supervise(supervisor, child_env(options, base_env, Path(tmp)))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _supervise(supervisor: Supervisor, env: Mapping[str, str]) -> int:
    options = supervisor.options
    try:
        env, node = join_gang(supervisor, env)
    except (RendezvousError, ValueError, StorageError) as e:
        log.error("cannot join the gang: %s", e)
        if options.status_file is not None:
            write_status(options.status_file, RENDEZVOUS_FAILED, False, started=False)
        return RENDEZVOUS_FAILED
    try:
        pid = supervisor.start(env)
    except OSError as e:
        log.error("cannot start %s: %s", options.command[0], e)
        exit_code = 127 if isinstance(e, FileNotFoundError) else 126
        if options.status_file is not None:
            write_status(options.status_file, exit_code, False, started=False)
        return exit_code
    # Rank 0's heartbeat and checkpoint are the gang's; the other ranks publish none of their own.
    publisher = make_publisher(env, pid, options.heartbeat_interval) if node is None or node.rank == 0 else None
    if publisher is not None:
        publisher.mark(interrupted=supervisor.interrupted)
        supervisor.publisher = publisher
        publisher.start()
    exit_code = supervisor.wait()
    log.info("job exited with %d%s", exit_code, " after an interruption" if supervisor.interrupted else "")
    # Heartbeat first: once the status file appears, the local provider reports the attempt ended,
    # and the control plane should then find the final heartbeat in place.
    if publisher is not None:
        publisher.finish(exit_code)
    if options.status_file is not None:
        write_status(options.status_file, exit_code, supervisor.interrupted)
    return exit_code


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="orch-agent: %(message)s", stream=sys.stderr)
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
