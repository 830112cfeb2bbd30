"""A gang's all-reduce over plain TCP: rank 0 gathers every rank's vector, sums, and sends the sum back.

Written with the standard library only, so the example runs where torch is not installed; a real job
would call `torch.distributed.all_reduce` on the same MASTER_ADDR/MASTER_PORT. What it shows is what a
gang on spot capacity needs from its collective, whatever implements it:

* Ranks start in any order and at different times (each node boots on its own): a member retries its
  connection until `connect_timeout`, and the head waits that long for every member to join.
* At the join every member shows which checkpoint it resumed from (step and a digest of its
  parameters); a gang whose ranks disagree refuses to train rather than diverge silently.
* Each step carries every rank's "interrupted" flag, so one node's notice stops the whole gang after
  the same step, and rank 0 saves exactly the state every rank holds.
* A peer that dies closes its socket and a peer that hangs hits `peer_timeout`: either way the others
  raise `PeerLost` within seconds instead of blocking until the grace period's SIGKILL.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_LENGTH = struct.Struct("!I")
MAX_MESSAGE = 16 << 20  # a bound on what a stray or broken peer can make us allocate


class PeerLost(Exception):
    """A peer closed its connection, failed, or did not answer in time: the gang cannot go on."""


class GangMismatch(Exception):
    """The ranks do not describe one gang (sizes, steps or parameters differ): a setup error, not luck."""


@dataclass(frozen=True, slots=True)
class Hello:
    """What a rank resumed from; every rank of a gang must say the same (besides its rank)."""

    rank: int
    nodes: int
    step: int
    digest: str

    def differs(self, other: Hello) -> str | None:
        for name in ("nodes", "step", "digest"):
            theirs, ours = getattr(other, name), getattr(self, name)
            if theirs != ours:
                return f"rank {other.rank} has {name} {theirs!r}, rank 0 has {name} {ours!r}"
        return None


def send(sock: socket.socket, doc: Mapping[str, Any]) -> None:
    data = json.dumps(doc).encode()
    try:
        sock.sendall(_LENGTH.pack(len(data)) + data)
    except OSError as exc:  # BrokenPipe, ConnectionReset, a timeout
        raise PeerLost(f"send failed: {exc}") from None


def receive(sock: socket.socket) -> dict[str, Any]:
    (size,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size))
    if size > MAX_MESSAGE:
        raise PeerLost(f"a message of {size} bytes is not ours")
    try:
        doc = json.loads(_exactly(sock, size))
    except ValueError:
        raise PeerLost("a message that is not JSON") from None
    if not isinstance(doc, dict):
        raise PeerLost("a message that is not a JSON object")
    return doc


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(left)
        except TimeoutError:
            raise PeerLost(f"no answer within {sock.gettimeout():g} s") from None
        except OSError as exc:
            raise PeerLost(f"receive failed: {exc}") from None
        if not chunk:
            raise PeerLost("the peer closed its connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _vector(msg: Mapping[str, Any], key: str, size: int) -> list[float]:
    """The message's vector, or PeerLost: a peer that sends something else is not one of ours."""
    value = msg.get(key)
    if not isinstance(value, list) or len(value) != size or not all(isinstance(x, int | float) for x in value):
        raise PeerLost(f"a message without a {key} of {size} numbers")
    return [float(x) for x in value]


def vector_sum(vectors: Sequence[Sequence[float]]) -> list[float]:
    """In rank order, so even values that do not add exactly give the same sum on every run."""
    return [sum(column) for column in zip(*vectors, strict=True)]


class Alone:
    """A gang of one: the all-reduce of one vector is the vector itself."""

    def exchange(self, step: int, grad: list[float], stop: bool) -> tuple[list[float], bool]:
        return grad, stop

    def close(self) -> None:
        pass


class Head:
    """Rank 0: listens on MASTER_ADDR:MASTER_PORT, waits for every member, then reduces each step."""

    def __init__(self, me: Hello, addr: str, port: int, *, connect_timeout: float, peer_timeout: float,
                 interrupted: Callable[[], bool], log: Callable[[str], None]) -> None:
        self.me, self.peer_timeout, self.log = me, peer_timeout, log
        self.members: dict[int, socket.socket] = {}
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a relaunch may reuse the port
            listener.bind((addr, port))
            listener.listen(me.nodes)
            listener.settimeout(0.2)  # short, to notice an interruption or the deadline while waiting
            self._gather_members(listener, time.monotonic() + connect_timeout, interrupted)
        except BaseException:
            self.close()
            raise
        finally:
            listener.close()

    def _gather_members(self, listener: socket.socket, deadline: float, interrupted: Callable[[], bool]) -> None:
        hellos: dict[int, Hello] = {}
        while len(hellos) < self.me.nodes - 1:
            if interrupted():
                raise PeerLost("interrupted while the gang was gathering")
            if time.monotonic() >= deadline:
                missing = sorted(set(range(1, self.me.nodes)) - set(hellos))
                raise PeerLost(f"ranks {missing} did not join before the connect timeout")
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(self.peer_timeout)
            try:
                doc = receive(conn)
                hello = Hello(int(doc["rank"]), int(doc["nodes"]), int(doc["step"]), str(doc["digest"]))
            except (PeerLost, KeyError, TypeError, ValueError) as exc:  # a stray connection, not a member
                self.log(f"ignoring a connection that did not introduce itself: {exc}")
                conn.close()
                continue
            if not 0 < hello.rank < self.me.nodes or hello.rank in hellos:
                self.log(f"ignoring a second or impossible rank {hello.rank}")
                conn.close()
                continue
            hellos[hello.rank], self.members[hello.rank] = hello, conn
        problems = [why for h in hellos.values() if (why := self.me.differs(h))]
        for conn in self.members.values():
            send(conn, {"ok": not problems, "error": "; ".join(problems)})
        if problems:
            raise GangMismatch("; ".join(problems))

    def exchange(self, step: int, grad: list[float], stop: bool) -> tuple[list[float], bool]:
        vectors = [grad]
        for rank in sorted(self.members):
            msg = receive(self.members[rank])
            if msg.get("step") != step:
                raise PeerLost(f"rank {rank} sent step {msg.get('step')!r} during step {step}")
            vectors.append(_vector(msg, "grad", len(grad)))
            stop = stop or bool(msg.get("stop"))
        total = vector_sum(vectors)
        for rank in sorted(self.members):
            send(self.members[rank], {"step": step, "total": total, "stop": stop})
        return total, stop

    def close(self) -> None:
        for conn in self.members.values():
            conn.close()


class Member:
    """Ranks 1..N-1: connect to the head (retrying while it is not listening yet), then send and wait."""

    def __init__(self, me: Hello, addr: str, port: int, *, connect_timeout: float, peer_timeout: float,
                 interrupted: Callable[[], bool]) -> None:
        deadline = time.monotonic() + connect_timeout
        self.sock = _connect(addr, port, deadline, interrupted)
        try:
            send(self.sock, {"rank": me.rank, "nodes": me.nodes, "step": me.step, "digest": me.digest})
            _wait_readable(self.sock, deadline, interrupted)  # the head answers once every rank has joined
            answer = receive(self.sock)
            if not answer.get("ok"):
                raise GangMismatch(str(answer.get("error") or "the head refused this rank"))
            self.sock.settimeout(peer_timeout)
        except BaseException:
            self.sock.close()
            raise

    def exchange(self, step: int, grad: list[float], stop: bool) -> tuple[list[float], bool]:
        send(self.sock, {"step": step, "grad": grad, "stop": stop})
        msg = receive(self.sock)
        if msg.get("step") != step:
            raise PeerLost(f"the head answered step {msg.get('step')!r} during step {step}")
        return _vector(msg, "total", len(grad)), bool(msg.get("stop"))

    def close(self) -> None:
        self.sock.close()


def _wait_readable(sock: socket.socket, deadline: float, interrupted: Callable[[], bool]) -> None:
    """Until the peer has sent something: in short slices, so an interruption is not kept waiting."""
    while not select.select([sock], [], [], 0.2)[0]:
        if interrupted():
            raise PeerLost("interrupted while the gang was gathering")
        if time.monotonic() >= deadline:
            raise PeerLost("the head did not start the gang before the connect timeout")


def _connect(addr: str, port: int, deadline: float, interrupted: Callable[[], bool]) -> socket.socket:
    pause, last = 0.05, "no attempt"
    while True:
        if interrupted():
            raise PeerLost("interrupted while connecting to the head")
        left = deadline - time.monotonic()
        if left <= 0:
            raise PeerLost(f"cannot reach the head at {addr}:{port} ({last})")
        try:
            return socket.create_connection((addr, port), timeout=min(left, 5.0))
        except OSError as exc:  # refused while the head is not listening yet; unreachable while it boots
            last = str(exc)
        time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 2, 1.0)
