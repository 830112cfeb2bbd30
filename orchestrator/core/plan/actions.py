"""What the plan asks the loop to do, as values: the loop's executor carries them out in order.

Every action is a frozen record naming the attempt or task it is about; nothing here calls a provider
or writes a row. A plan is a tuple of them, read, tested and replayed without I/O (`core.plan.task`).
The executor (`orchestrator.loop.act`) stops a plan at the first action that could not be done when
the rest depend on it (`StopInstance(must=True)`, an `EndAttempt` the store refused as illegal).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.model import AttemptView, Outcome, Transition
from vocab import Instance, Notice, Offer


@dataclass(frozen=True, slots=True)
class MarkStarted:
    """The attempt runs as `instance_id`, billed from `started_at` (None: from the moment it is recorded)."""

    attempt: AttemptView
    instance_id: str
    started_at: float | None


@dataclass(frozen=True, slots=True)
class RecordInstance:
    """The attempt's instance exists but has not started (a pod waiting for a node): not billed yet."""

    attempt: AttemptView
    instance_id: str


@dataclass(frozen=True, slots=True)
class StopInstance:
    """Ask the provider to stop an instance. `must`: the rest of the plan depends on it, so a failed stop
    ends the plan there (the next tick tries again); otherwise a failure is logged and the plan goes on."""

    instance: Instance
    must: bool = True


@dataclass(frozen=True, slots=True)
class EndAttempt:
    """End the attempt with `outcome` and move its task by `transitions`, in one store transaction.

    `guessed`: the end was not seen (the instance vanished, or it was handed over on a notice), so the
    loop watches for the cloud's real end and bills to it (`loop.ledger`)."""

    attempt: AttemptView
    outcome: Outcome
    transitions: tuple[Transition, ...]
    message: str
    exit_code: int | None = None
    failures: int | None = None
    ended_at: float | None = None
    unbilled: bool = False
    guessed: bool = False


@dataclass(frozen=True, slots=True)
class ReleaseItems:
    """A campaign worker's attempt ended: its leased items go back to the queue now (`failure`: charged
    to the item it was on)."""

    attempt: AttemptView
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class MoveTask:
    """A task transition that no attempt carries (cancel before launch, over budget, a retired slot)."""

    task_id: str
    transition: Transition
    message: str


@dataclass(frozen=True, slots=True)
class Note:
    """An event on the job's record (a notice, a graceful stop asked)."""

    kind: str
    message: str
    attempt_id: str | None = None


@dataclass(frozen=True, slots=True)
class AvoidOffers:
    """Offers not to be launched on until `until` (capacity refused or being reclaimed, a quota hit)."""

    keys: tuple[str, ...]
    until: float


@dataclass(frozen=True, slots=True)
class Launch:
    """Begin an attempt on the first of `offers` that starts (at most `MAX_OFFERS_PER_TICK` tried); each
    refusal is judged by `core.plan.launch.refused`, each start by `core.plan.launch.launched`."""

    offers: tuple[Offer, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class LaunchAgain:
    """An attempt left launching by a dead controller: the same request again (the same token), which
    returns the instance already made or makes it once."""

    attempt: AttemptView
    offer: Offer


@dataclass(frozen=True, slots=True)
class RecordNodes:
    """A gang's nodes as launched: one span each, billed at `price_per_hour` (`Store.record_attempt_nodes`)."""

    attempt: AttemptView
    nodes: tuple[Instance, ...]
    price_per_hour: float


@dataclass(frozen=True, slots=True)
class EndNodes:
    """A gang's nodes ended: (instance id, when) each, the cloud's time where the listing shows it, else the
    moment the plan asked the provider to stop the node. Each node is billed to its own end, not to the
    attempt's (the node that ended the gang went first; the others ran until they were stopped)."""

    attempt: AttemptView
    ends: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class ForwardNotice:
    """A notice for one node of a gang, written where every rank's agent reads it
    (`orchestrator.job.checkpoint.rendezvous`): one reclaimed node stops the whole gang, each rank
    saving in its own grace. A failed write ends the plan there, so the next tick writes it again."""

    attempt: AttemptView
    notice: Notice


@dataclass(frozen=True, slots=True)
class ReleaseGang:
    """A gang attempt has ended: what it held besides its nodes (a placement group, a resource policy, a
    PodGroup) is released once its nodes are gone, tried again each tick until the provider says so."""

    attempt: AttemptView


@dataclass(frozen=True, slots=True)
class Replan:
    """Gather this task's facts again and plan once more in this tick: a task whose attempt just ended is
    placed at once, as a reclaimed job wants, not a tick later."""


Action = (MarkStarted | RecordInstance | StopInstance | EndAttempt | ReleaseItems | MoveTask | Note | AvoidOffers
          | Launch | LaunchAgain | RecordNodes | EndNodes | ForwardNotice | ReleaseGang | Replan)
Plan = tuple[Action, ...]
