"""A gang's rendezvous through its checkpoint storage: how every node learns the head's address.

The nodes of a gang boot on their own, with no address of each other (EC2 and GCE give addresses
only once the machines exist, and the control plane needs no inbound connection to any of them). The
object store every attempt already writes its heartbeat to is the channel, the same on every cloud:

- rank 0's agent writes `_orch/gang/<attempt id>/head.json` ({"addr", "port"}) before it starts the job;
- every other rank's agent waits for that file, then starts the job with `MASTER_ADDR`/`MASTER_PORT`;
- a notice for any node (seen by that node's agent, or by the control plane's listing) is written to
  `_orch/gang/<attempt id>/notice.json`, which every rank's agent polls: one reclaimed node stops
  the whole gang, each rank with its own grace.

Keys carry the attempt id, so a relaunched gang never reads the head of the attempt before it.
Standard library and the storage interface only: this runs in job images.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.job.checkpoint.base import ObjectNotFound, Storage, StorageError
from vocab import NoticeKind

GANG_PREFIX = "_orch/gang"
# Long enough for the slowest node of a gang to boot and pull its image.
DEFAULT_WAIT_S = 900.0


class RendezvousError(Exception):
    """The head's address did not arrive in time, or is unreadable: the node must not start the job."""


@dataclass(frozen=True, slots=True)
class GangNode:
    """Who this node is in its gang, from the environment the provider (or the agent) gave it."""

    attempt_id: str
    rank: int
    nodes: int
    port: int


def head_key(attempt_id: str) -> str:
    return f"{GANG_PREFIX}/{_safe(attempt_id)}/head.json"


def notice_key(attempt_id: str) -> str:
    return f"{GANG_PREFIX}/{_safe(attempt_id)}/notice.json"


def _safe(attempt_id: str) -> str:
    if not attempt_id or "/" in attempt_id or attempt_id in (".", ".."):
        raise ValueError(f"attempt id {attempt_id!r} cannot name a storage folder")
    return attempt_id


def gang_node(env: Mapping[str, str]) -> GangNode | None:
    """This node's place in its gang; None for a single-node attempt. ValueError names a bad variable."""
    nodes = _int(env, "ORCH_NUM_NODES", "1")
    if nodes <= 1:
        return None
    rank = _int(env, "ORCH_NODE_RANK", "")
    if not 0 <= rank < nodes:
        raise ValueError(f"ORCH_NODE_RANK={rank} is outside a gang of {nodes} nodes")
    attempt_id = env.get("ORCH_ATTEMPT_ID", "")
    _safe(attempt_id)
    return GangNode(attempt_id, rank, nodes, _int(env, "MASTER_PORT", "29500"))


def _int(env: Mapping[str, str], name: str, default: str) -> int:
    raw = env.get(name, default)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None


def own_address(env: Mapping[str, str]) -> str:
    """The address the other nodes reach this one at: ORCH_NODE_ADDR when set, else the address of the
    interface that routes outwards (a UDP connect sends no packet), else the host name."""
    if env.get("ORCH_NODE_ADDR"):
        return env["ORCH_NODE_ADDR"]
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return str(s.getsockname()[0])
    return socket.gethostname()


def publish_head(storage: Storage, node: GangNode, addr: str, now: float) -> None:
    doc = {"attempt_id": node.attempt_id, "addr": addr, "port": node.port, "at": now}
    storage.put_bytes(head_key(node.attempt_id), json.dumps(doc).encode())


def read_head(storage: Storage, attempt_id: str) -> tuple[str, int] | None:
    """(addr, port) of the head, or None while it has not written them."""
    try:
        doc = json.loads(storage.get_bytes(head_key(attempt_id)))
    except ObjectNotFound:
        return None
    except ValueError as exc:
        raise RendezvousError(f"{head_key(attempt_id)} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("addr"), str) or not isinstance(doc.get("port"), int):
        raise RendezvousError(f"{head_key(attempt_id)} lacks addr/port")
    return doc["addr"], doc["port"]


def rendezvous(storage: Storage, node: GangNode, env: Mapping[str, str], *, wait_s: float = DEFAULT_WAIT_S,
               poll_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.time) -> dict[str, str]:
    """The variables this node's job needs to find the head: MASTER_ADDR and MASTER_PORT.

    Rank 0 publishes its own address and returns at once; the others wait up to `wait_s` for it
    (storage errors meanwhile are retried: a blip must not fail a gang) and raise `RendezvousError`
    after that. Where the provider already knows the head (the local provider: 127.0.0.1), MASTER_ADDR
    is in `env` and nothing is read or written.
    """
    if env.get("MASTER_ADDR"):
        return {"MASTER_ADDR": env["MASTER_ADDR"], "MASTER_PORT": str(node.port)}
    if node.rank == 0:
        addr = own_address(env)
        publish_head(storage, node, addr, now())
        return {"MASTER_ADDR": addr, "MASTER_PORT": str(node.port)}
    give_up = monotonic() + wait_s
    last_error = ""
    while True:
        try:
            head = read_head(storage, node.attempt_id)
        except StorageError as exc:
            head, last_error = None, str(exc)
        if head is not None:
            return {"MASTER_ADDR": head[0], "MASTER_PORT": str(head[1])}
        if monotonic() >= give_up:
            why = f" (last storage error: {last_error})" if last_error else ""
            raise RendezvousError(f"rank {node.rank}: no head address after {wait_s:g} s{why}")
        sleep(poll_s)


def forward_gang_notice(storage: Storage, attempt_id: str, *, at: float, deadline: float | None,
                        source: str = "control-plane") -> None:
    """Tell every rank of a gang that one of its nodes is being reclaimed (the loop's entry point).

    Idempotent: an earlier notice with a nearer deadline is kept, so every rank acts on the first.
    """
    key = notice_key(attempt_id)
    with contextlib.suppress(ObjectNotFound, ValueError):
        old = json.loads(storage.get_bytes(key))
        old_deadline = old.get("deadline") if isinstance(old, dict) else None
        if isinstance(old_deadline, int | float) and (deadline is None or old_deadline <= deadline):
            return
    doc = {"kind": NoticeKind.INTERRUPTION.value, "at": at, "deadline": deadline, "source": source}
    storage.put_bytes(key, json.dumps(doc).encode())


@dataclass(frozen=True, slots=True)
class GangNotice:
    at: float | None
    deadline: float | None
    source: str


def read_gang_notice(storage: Storage, attempt_id: str) -> GangNotice | None:
    """The gang's notice, if one was forwarded; None otherwise (or while the file is unreadable)."""
    try:
        doc = json.loads(storage.get_bytes(notice_key(attempt_id)))
    except (StorageError, ValueError):  # ObjectNotFound included: no notice yet
        return None
    if not isinstance(doc, dict):
        return None
    at, deadline = doc.get("at"), doc.get("deadline")
    return GangNotice(float(at) if isinstance(at, int | float) else None,
                      float(deadline) if isinstance(deadline, int | float) else None, str(doc.get("source", "")))
