"""What runs: a launch request (the attempt's id is its idempotency token), instances as listed,
and the notices a cloud gives before it takes one back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from vocab.markets import Market, Offer

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
    through the rendezvous file (`orchestrator.job.checkpoint.rendezvous`) before it starts the job.
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
