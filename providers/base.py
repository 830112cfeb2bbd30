"""The seam between orch and the clouds: typed records, the `Provider` protocol, and errors.

Everything that crosses from the reconciler into a provider, or back, is one of the frozen records
below. Providers import this module (and the catalog) and nothing of the orchestrator, so a provider
can be tested, replaced or vendored on its own. Vendor exceptions never cross this line: each provider
translates them into one of the errors at the bottom, whose type says what the caller should do next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Market(StrEnum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"


# Newer architectures can run what older ones can (bf16 needs ampere or newer).
ARCHITECTURES: tuple[str, ...] = ("kepler", "volta", "turing", "ampere", "ada", "hopper", "blackwell")


def architecture_rank(name: str) -> int:
    """Position of an architecture in `ARCHITECTURES`; ValueError names the known ones."""
    try:
        return ARCHITECTURES.index(name.lower())
    except ValueError:
        raise ValueError(f"unknown GPU architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


@runtime_checkable
class Clock(Protocol):
    """Where every component reads time: the wall clock live, a simulated one in `sim` runs."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Resources:
    """What a task needs from one instance. Empty `gpus` means any GPU model."""

    gpus: tuple[str, ...] = ()
    gpu_count: int = 1
    min_gpu_memory_gb: float | None = None
    min_architecture: str | None = None

    def admits(self, gpu: str, gpu_count: int, gpu_memory_gb: float, architecture: str | None) -> bool:
        """Whether a machine with these GPUs will do. An unknown architecture (None) cannot prove
        `min_architecture`, so it is refused whenever one is asked for."""
        if self.gpus and gpu.lower() not in {g.lower() for g in self.gpus}:
            return False
        if gpu_count < self.gpu_count:
            return False
        if self.min_gpu_memory_gb is not None and gpu_memory_gb < self.min_gpu_memory_gb:
            return False
        if self.min_architecture is None:
            return True
        required = architecture_rank(self.min_architecture)  # also validates the name
        return architecture is not None and architecture_rank(architecture) >= required


@dataclass(frozen=True, slots=True)
class Billing:
    """How a provider turns seconds into a bill (AWS and GCE: per second, one minute minimum)."""

    increment_seconds: int = 1
    minimum_seconds: int = 60

    def billed_seconds(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        seconds = max(seconds, float(self.minimum_seconds))
        increments = -(-seconds // self.increment_seconds)  # ceiling without floats drifting
        return float(increments * self.increment_seconds)


@dataclass(frozen=True, slots=True)
class Offer:
    """One purchasable option: provider x region/zone x instance type x market x price."""

    provider: str
    region: str
    zone: str | None
    instance_type: str
    market: Market
    price_per_hour: float
    gpu: str
    gpu_count: int
    gpu_memory_gb: float
    architecture: str
    on_demand_price_per_hour: float
    # Where the price came from: "catalog" (list price), "api" (provider's price history), "trace".
    price_source: str = "catalog"
    # Latest knowledge of spot capacity: None means unknown (try and see).
    available: bool | None = None
    billing: Billing = field(default_factory=Billing)

    @property
    def key(self) -> str:
        """Stable identity of the offer, used to remember capacity failures."""
        return offer_key(self.provider, self.region, self.zone, self.instance_type, self.market)


def offer_key(provider: str, region: str, zone: str | None, instance_type: str, market: Market) -> str:
    return f"{provider}/{region}/{zone or '-'}/{instance_type}/{market}"


# Set by the loop on a replacement launched while its predecessor still has its notice window: Unix
# seconds before which the job must not start (the predecessor may still be saving). Providers that
# say `replaces_on_notice` honour it (AWS waits in the user data); see docs/providers/aws.md.
RESUME_NOT_BEFORE = "ORCH_RESUME_NOT_BEFORE"
# torchrun's default rendezvous port: rank 0 of a gang listens on it unless the launch says otherwise.
DEFAULT_MASTER_PORT = 29500


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """Everything a provider needs to start one attempt; `attempt_id` is the idempotency token."""

    job_id: str
    task_id: str
    attempt_id: str
    attempt_number: int
    offer: Offer
    command: tuple[str, ...]
    env: Mapping[str, str]
    checkpoint_uri: str
    grace_seconds: float
    image: str | None = None
    workdir: str | None = None
    # The work, for providers that simulate it (`sim`): hours on the offer's GPU, and the committed
    # fraction this attempt resumes from. Live providers ignore both.
    estimated_hours: float = 0.0
    progress: float = 0.0
    # The job's `[placement.options.<provider>]` table, passed through untouched.
    options: Mapping[str, object] = field(default_factory=dict)
    # A gang: this many identical nodes of `offer`, launched all or nothing by `launch_gang` (one node:
    # the ordinary `launch`). `master_port` is where rank 0 listens for the job's own rendezvous.
    nodes: int = 1
    master_port: int = DEFAULT_MASTER_PORT

    def environment(self, rank: int | None = 0) -> dict[str, str]:
        """The attempt's environment: `env` plus orch's checkpoint contract (docs/checkpointing.md).

        The one place it is built, for every provider: the contract variables win over anything in
        `env` (a job file cannot set ORCH_* anyway), so a job always sees its own ids and market.
        A gang's node also gets its rank and torchrun's static variables (`gang_environment`); rank
        None where every node boots from one template (EC2 `MinCount`, GCE `bulkInsert`): the agent
        then reads the node's rank from the instance itself.
        """
        out = dict(self.env)
        out.update(ORCH_JOB_ID=self.job_id, ORCH_TASK_ID=self.task_id, ORCH_ATTEMPT=str(self.attempt_number),
                   ORCH_ATTEMPT_ID=self.attempt_id, ORCH_CHECKPOINT_URI=self.checkpoint_uri,
                   ORCH_MARKET=self.offer.market.value)
        if self.nodes > 1:
            out.update(gang_environment(rank, self.nodes, self.offer.gpu_count, self.master_port))
        return out


def gang_environment(rank: int | None, nodes: int, gpus_per_node: int, master_port: int) -> dict[str, str]:
    """What every node of a gang knows before it boots (docs/gangs.md).

    WORLD_SIZE follows torchrun: the number of processes in the whole job, one per GPU, so
    nodes x GPUs per node (torchrun overwrites it for the workers it spawns with the same value).
    MASTER_ADDR is absent on purpose: rank 0's address exists only once it runs, so the agent learns it
    through the rendezvous file (`orchestrator.checkpoint.rendezvous`) before it starts the job.
    """
    out = {"ORCH_NUM_NODES": str(nodes), "ORCH_GPUS_PER_NODE": str(gpus_per_node), "NNODES": str(nodes),
           "WORLD_SIZE": str(nodes * max(gpus_per_node, 1)), "MASTER_PORT": str(master_port)}
    if rank is not None:
        if not 0 <= rank < nodes:
            raise ValueError(f"rank {rank} is outside a gang of {nodes} nodes")
        out.update(ORCH_NODE_RANK=str(rank), NODE_RANK=str(rank))
    return out


class InstanceState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    TERMINATED = "terminated"


class EndReason(StrEnum):
    EXITED = "exited"  # the job's process ended by itself; see exit_code
    PREEMPTED = "preempted"  # the provider reclaimed spot capacity
    TERMINATED = "terminated"  # orch (or someone) asked for termination
    FAILED_TO_START = "failed-to-start"
    LOST = "lost"  # the instance vanished without a recorded reason


@dataclass(frozen=True, slots=True)
class Instance:
    """A provider's view of one orch-managed instance, as of the last list call."""

    provider: str
    region: str
    zone: str | None
    instance_id: str
    instance_type: str
    market: Market
    state: InstanceState
    attempt_id: str | None
    job_id: str | None = None
    task_id: str | None = None
    launched_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    reason: EndReason | None = None
    # Where this attempt's output can be read (a file path, an object URI), if the provider keeps one.
    log_uri: str | None = None
    # Progress known to the provider itself (simulated instances only); live providers leave None and
    # the reconciler reads the job's heartbeat from checkpoint storage instead.
    progress: float | None = None
    # A gang's node: its rank (0 is the head, whose checkpoint is the gang's); a single node is rank 0.
    node_rank: int = 0

    @property
    def alive(self) -> bool:
        return self.state in (InstanceState.PENDING, InstanceState.RUNNING)


class NoticeKind(StrEnum):
    INTERRUPTION = "interruption"  # capacity will be taken back at `deadline`
    REBALANCE = "rebalance"  # elevated risk; no deadline yet


@dataclass(frozen=True, slots=True)
class Notice:
    provider: str
    instance_id: str
    attempt_id: str | None
    kind: NoticeKind
    at: float
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Abilities:
    """What a provider can do beyond the protocol's five calls: the loop asks this record, never the type.

    Every provider declares one (`abilities = Abilities(...)`); the conformance suite checks each.
    """

    # A replacement may start while its predecessor drains an interruption notice: the provider holds
    # the new job back until ORCH_RESUME_NOT_BEFORE (AWS does, in the user data).
    replaces_on_notice: bool = False
    # A launched instance may wait unbilled (a pod pending for a node): its attempt stays launching, and
    # is billed from the moment it is seen running.
    bills_from_start: bool = False
    # `terminate` only asks (a pod's grace period): the instance is seen stopping, then gone, and a
    # cancelled attempt ends then, not when asked.
    stops_gracefully: bool = False
    # Offers depend on the job (the local provider's simulated market is configured per job).
    offers_per_job: bool = False
    # The most nodes `launch_gang` starts as one all-or-nothing gang (1: no gangs; see `LaunchesGangs`).
    max_gang_nodes: int = 1


@runtime_checkable
class SharesCapacity(Protocol):
    """Optional: adapters that fall back between zones themselves take the controller's capacity memory,
    so that the loop and the adapter never disagree about where capacity was refused."""

    def share_capacity(self, memory: CapacityMemory) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """A place that runs attempts. Every method may raise only the errors below.

    `instances()` returns every orch-managed instance in one call per region: the reconciler
    never asks per job. `terminate()` is idempotent: terminating a gone instance is not an error.
    `launch()` with an `attempt_id` seen before returns the instance already made for it.
    """

    name: str
    abilities: Abilities

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        """Offers matching `resources` (all regions when `regions` is empty).

        `job_id` and `options` (the job's `[placement.options.<provider>]`), when given, let a provider
        whose market depends on the job (the local simulated market, configured per job: its zones,
        its trace) answer for that job even before its first launch; others ignore them.
        """
        ...

    def launch(self, request: LaunchRequest) -> Instance: ...

    def instances(self) -> list[Instance]: ...

    def terminate(self, instance: Instance) -> None: ...

    def notices(self) -> list[Notice]: ...


@runtime_checkable
class LaunchesGangs(Protocol):
    """Providers whose `abilities.max_gang_nodes` > 1: launch and release gangs of identical nodes.

    `launch_gang(request)` starts `request.nodes` nodes of `request.offer`, all or nothing: it returns
    one `Instance` per rank (sorted by rank, each tagged with the attempt id and its `node_rank`), or
    raises (`CapacityError` when the cloud could not place them all) with nothing left running: what
    was started is terminated before the error leaves. Repeated with the same `attempt_id` it returns
    the gang already made. `release_gang` deletes what the gang held besides its nodes (a placement
    group, a resource policy, a PodGroup) once its nodes are gone: idempotent; False while the cloud
    still holds it in use (call again on a later tick).
    """

    def launch_gang(self, request: LaunchRequest) -> list[Instance]: ...

    def release_gang(self, request: LaunchRequest) -> bool: ...


def launch_nodes(provider: Provider, request: LaunchRequest) -> list[Instance]:
    """One launch for any number of nodes: the loop's single entry point for gangs and single nodes."""
    if request.nodes == 1:
        return [provider.launch(request)]
    limit = provider.abilities.max_gang_nodes
    if request.nodes < 1 or request.nodes > limit or not isinstance(provider, LaunchesGangs):
        raise PermanentError(f"{provider.name} cannot launch {request.nodes} nodes as one gang (at most {limit})",
                             provider=provider.name, code="GangTooLarge")
    return provider.launch_gang(request)


def check_gang(instances: Sequence[Instance], nodes: int, provider: str) -> list[Instance]:
    """A gang's instances sorted by rank, refused unless there is exactly one per rank 0..nodes-1."""
    ranked = sorted(instances, key=lambda i: i.node_rank)
    if [i.node_rank for i in ranked] != list(range(nodes)):
        raise PermanentError(f"{provider}: a gang of {nodes} came back with ranks {[i.node_rank for i in ranked]}",
                             provider=provider, code="GangIncomplete")
    return ranked


class CapacityMemory(Mapping[str, float]):
    """Where capacity was lately refused or is being reclaimed: offer key -> until when to avoid it.

    One memory per controller, shared by the loop and every adapter that falls back between zones
    itself (AWS launches try the next zone on a capacity error): a refusal learnt by either is seen by
    both, so the loop does not send a launch to a zone the adapter just found empty, nor the adapter
    back to one the loop saw reclaimed. Before, the reconciler, the AWS adapter and the GCP adapter
    each kept their own and could disagree for minutes. Thread-safe: launches may run in parallel.

    It is a read-only `Mapping` for the pure core (`placement.usable` reads `avoid.get(key)`); only
    `refuse`/`refuse_all` write, and an entry never moves earlier (the longer avoidance wins).
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        # Moves whenever an entry is added, lengthened or dropped: what was derived from the memory at
        # one generation (a tick's usable offers, cached per offer list) holds until it moves.
        self.generation = 0

    def refuse(self, key: str, until: float) -> None:
        with self._lock:
            if until > self._until.get(key, 0.0):
                self._until[key] = until
                self.generation += 1

    def refuse_all(self, keys: Sequence[str], until: float) -> None:
        for key in keys:
            self.refuse(key, until)

    def avoided(self, key: str, now: float) -> bool:
        return self._until.get(key, 0.0) > now

    def forget_before(self, now: float) -> None:
        """Drop what has expired, so a long-lived controller's memory stays the size of what matters."""
        with self._lock:
            kept = {k: u for k, u in self._until.items() if u > now}
            if len(kept) != len(self._until):
                self._until = kept
                self.generation += 1

    def __getitem__(self, key: str) -> float:
        return self._until[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._until))

    def __len__(self) -> int:
        return len(self._until)


@runtime_checkable
class ChecksOptions(Protocol):
    """Optional: providers whose `[placement.options.<name>]` can be checked at submission.

    Raises `PermanentError` naming the bad key, so a typo is refused before anything is stored
    instead of failing the first launch.
    """

    def check_options(self, options: Mapping[str, object], workdir: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class ZoneSignal:
    """A provider's own published reading of spot capacity in one zone, got without launching there.

    `available` is what the multi-zone policy takes as this tick's observation of the zone when
    nothing more direct (a running or reclaimed instance, a failed launch, an offer's flag) speaks for
    it; None: the signal says nothing either way. `source` names it ("spot-placement-score",
    "spot-price"), `detail` the figure behind it, for events and docs.
    """

    available: bool | None
    source: str
    detail: str = ""


@runtime_checkable
class SignalsZones(Protocol):
    """Optional: providers that publish availability signals per zone (AWS spot placement scores and
    spot prices). Must be cheap to call once per task and tick: a signal that costs an API call is
    cached by the provider. Errors are the provider's to swallow: a signal is worth having, never
    worth failing a tick over."""

    def zone_signals(self, offers: Sequence[Offer]) -> Mapping[str, ZoneSignal]: ...


def zone_signals(provider: object, offers: Sequence[Offer]) -> Mapping[str, ZoneSignal]:
    """`provider`'s signals for the zones of `offers` (zone name -> signal); none where it has none."""
    return provider.zone_signals(offers) if isinstance(provider, SignalsZones) else {}


@runtime_checkable
class LogSource(Protocol):
    """Optional: providers that can show an attempt's output implement this too."""

    def read_log(self, instance: Instance) -> str: ...


class ProviderError(Exception):
    """Base of every error a provider may raise. `retryable` says whether the same call may succeed."""

    retryable: bool = False

    def __init__(self, message: str, *, provider: str = "", code: str = "") -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code


class CapacityError(ProviderError):
    """No capacity for this offer now: try another offer and avoid this one for `retry_after` s."""

    retryable = True

    def __init__(self, message: str, *, provider: str = "", code: str = "", retry_after: float = 300.0):
        super().__init__(message, provider=provider, code=code)
        self.retry_after = retry_after


class QuotaError(ProviderError):
    """An account limit: no offer of this provider/region will work until a person raises it."""


class TransientError(ProviderError):
    """Throttling, 5xx, a dropped connection: retry the same call with backoff."""

    retryable = True


class PermanentError(ProviderError):
    """A bad request or missing permission: retrying will not help."""
