"""The parts of the deterministic simulation harness's world (`bench._dst_world`): the billing rule, object
storage in memory, a zone's outages, one simulated instance with the job process on it, and the facts the
job side leaves for the invariants (`bench._dst_check`)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.job.checkpoint import ObjectNotFound
from orchestrator.job.checkpoint.sdk import Checkpointer
from orchestrator.job.item_records import Lease
from vocab import Billing, EndReason, LaunchRequest, Market

BILLING = Billing(increment_seconds=1, minimum_seconds=60)
NOTICE_S = 120.0  # AWS's two minutes
LISTED_AFTER_END_S = 3600.0  # a terminated instance stays in the listing this long (EC2: about an hour)
LEASE_SECONDS = 120.0  # the worker SDK's item lease
MAX_GANG_NODES = 8
PEER_LOST_EXIT = 75  # what the pretrain example's ranks exit with when a peer is lost


class MemStorage:
    """Object storage in memory (the `Storage` protocol), one per checkpoint URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.objects: dict[str, bytes] = {}
        self.fail_reads = False  # a fault: the store cannot be read this tick

    def put_bytes(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)

    def put_file(self, key: str, path: Path) -> None:
        self.objects[key] = path.read_bytes()

    def get_bytes(self, key: str) -> bytes:
        self._check()
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectNotFound(f"{self.uri}: no object {key}") from None

    def get_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.get_bytes(key))

    def list(self, prefix: str = "") -> list[str]:
        self._check()
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def _check(self) -> None:
        if self.fail_reads:
            from orchestrator.job.checkpoint import StorageError
            raise StorageError(f"{self.uri}: injected read failure")


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    name: str
    region: str
    spot_price: float
    on_demand_price: float
    spot_outages: tuple[tuple[float, float], ...]  # (start, end) in seconds from the epoch
    on_demand_outages: tuple[tuple[float, float], ...]


@dataclass(slots=True)
class SimInstance:
    """One instance and the job process on it."""

    request: LaunchRequest
    instance_id: str
    zone: ZoneSpec
    market: Market
    price: float
    launched_at: float
    work_start: float
    campaign: bool
    rng: random.Random
    reclaim_at: float | None = None
    notice_at: float | None = None
    notice_deadline: float | None = None
    terminated_at: float | None = None
    ended_at: float | None = None
    reason: EndReason | None = None
    exit_code: int | None = None
    # the job side
    started: bool = False
    resumed_from: float = 0.0
    progress: float = 0.0
    saved_on_notice: bool = False
    next_ckpt: float = math.inf
    ckpt: Checkpointer | None = None
    newest_seq: int | None = None
    interrupted: bool = False
    held: Lease | None = None
    held_until: float = 0.0
    dies_at: float | None = None  # a campaign worker that dies holding its item (exit 1)
    rank: int = 0  # a gang's node: ranks above 0 are passive (the head's job is the gang's)

    @property
    def stop_at(self) -> float:
        return min(t for t in (self.reclaim_at, self.terminated_at, math.inf) if t is not None)

    @property
    def alive(self) -> bool:
        return self.ended_at is None

    def bill(self) -> float:
        end = self.ended_at
        if end is None:
            return math.nan
        return self.price * BILLING.billed_seconds(end - self.launched_at) / 3600.0


@dataclass
class Facts:
    """What the job side did, for the invariants: resumes, checkpoint writes, item commits."""

    resumes: list[tuple[str, int, float, int | None, float]] = field(default_factory=list)  # task, attempt, at, seq, p
    writes: list[tuple[str, int, float, int]] = field(default_factory=list)  # task, attempt, at, seq
    stale: list[str] = field(default_factory=list)  # messages: a resume from older than the newest verified
    commits: dict[tuple[str, int], int] = field(default_factory=dict)  # (job, item) -> accepted commits
    working: dict[str, set[str]] = field(default_factory=dict)  # task -> attempt ids doing its work now
