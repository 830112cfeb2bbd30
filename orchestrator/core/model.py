"""The state machine of tasks and attempts, and the plain records the core reasons about.

Every task state change is one of the named `TRANSITIONS`; the store applies them as guarded
updates (`UPDATE ... WHERE state IN (:from)`), so two controllers racing on a task cannot both win
and an illegal change is impossible rather than merely unlikely. This module only declares the
machine; `orchestrator.store` is the one place that applies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from vocab import Instance, Market


class TaskState(StrEnum):
    PENDING = "pending"
    LAUNCHING = "launching"
    RUNNING = "running"
    PREEMPTED = "preempted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUDGET_EXCEEDED = "budget_exceeded"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.BUDGET_EXCEEDED})
_LIVE = (TaskState.PENDING, TaskState.LAUNCHING, TaskState.RUNNING, TaskState.PREEMPTED)


class Transition(StrEnum):
    """The names of the task transitions: a typo is an AttributeError at import, not a row that never moves."""

    LAUNCH = "launch"
    LAUNCH_FAILED = "launch_failed"
    STARTED = "started"
    PREEMPTED = "preempted"
    REQUEUE = "requeue"
    SWITCH = "switch"  # the policy ended a running attempt to change market (spot <-> on-demand)
    RETRY = "retry"  # the job's own process failed but may be retried (failures < max_failures)
    SUCCEED = "succeed"
    FAIL = "fail"
    CANCEL = "cancel"
    OVER_BUDGET = "over_budget"
    # Campaigns: a worker that found no item to lease goes back to wait for items; a waiting worker
    # slot whose campaign has no items left is done.
    IDLE = "idle"
    RETIRE = "retire"


@dataclass(frozen=True, slots=True)
class TransitionRule:
    name: Transition
    sources: tuple[TaskState, ...]
    target: TaskState


TRANSITIONS: dict[Transition, TransitionRule] = {
    t.name: t
    for t in (
        TransitionRule(Transition.LAUNCH, (TaskState.PENDING,), TaskState.LAUNCHING),
        TransitionRule(Transition.LAUNCH_FAILED, (TaskState.LAUNCHING,), TaskState.PENDING),
        TransitionRule(Transition.STARTED, (TaskState.LAUNCHING,), TaskState.RUNNING),
        TransitionRule(Transition.PREEMPTED, (TaskState.LAUNCHING, TaskState.RUNNING), TaskState.PREEMPTED),
        TransitionRule(Transition.REQUEUE, (TaskState.PREEMPTED,), TaskState.PENDING),
        TransitionRule(Transition.SWITCH, (TaskState.RUNNING,), TaskState.PENDING),
        TransitionRule(Transition.RETRY, (TaskState.LAUNCHING, TaskState.RUNNING), TaskState.PENDING),
        TransitionRule(Transition.SUCCEED, (TaskState.LAUNCHING, TaskState.RUNNING), TaskState.SUCCEEDED),
        TransitionRule(Transition.FAIL, (*_LIVE,), TaskState.FAILED),
        TransitionRule(Transition.CANCEL, _LIVE, TaskState.CANCELLED),
        TransitionRule(Transition.OVER_BUDGET, _LIVE, TaskState.BUDGET_EXCEEDED),
        TransitionRule(Transition.IDLE, (TaskState.LAUNCHING, TaskState.RUNNING), TaskState.PENDING),
        TransitionRule(Transition.RETIRE, (TaskState.PENDING,), TaskState.SUCCEEDED),
    )
}
# The attempt ended without the job's say (reclaimed, lost): the task goes back to the queue.
LOST = (Transition.PREEMPTED, Transition.REQUEUE)


class IllegalTransition(Exception):
    """A transition whose guard did not hold: the task was not in one of its source states."""


def check_transition(name: str, current: TaskState) -> TransitionRule:
    """The transition named `name` if it is legal from `current`; `IllegalTransition` otherwise."""
    try:
        t = TRANSITIONS[Transition(name)]
    except ValueError:
        raise IllegalTransition(f"no transition named {name!r}") from None
    if current not in t.sources:
        raise IllegalTransition(f"{name}: a task in state {current} cannot go to {t.target}")
    return t


class AttemptState(StrEnum):
    LAUNCHING = "launching"
    RUNNING = "running"
    ENDED = "ended"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the job's process exited non-zero
    PREEMPTED = "preempted"
    LAUNCH_FAILED = "launch_failed"  # no instance was made (capacity, quota, error)
    SWITCHED = "switched"  # ended by orch to change market
    CANCELLED = "cancelled"
    BUDGET = "budget"  # ended by orch to stay within the budget
    LOST = "lost"  # the instance disappeared without a reason


@dataclass(frozen=True, slots=True)
class NodeSpan:
    """One node of a gang attempt, as recorded: its own price and times bill it (`cost.attempt_cost`).

    `ended_at` None: still running, or ended with its attempt (then the attempt's end bills it). An
    elastic gang that grows back gives a rank a second span."""

    rank: int
    instance_id: str | None
    zone: str | None
    market: Market
    price_per_hour: float
    launched_at: float
    ended_at: float | None = None


def spans_of(instances: Sequence[Instance], price_per_hour: float, now: float) -> tuple[NodeSpan, ...]:
    """The spans to record for a gang just launched (`Store.record_attempt_nodes`): one per node, at the
    offer's price, launched when the provider says (else `now`)."""
    return tuple(NodeSpan(i.node_rank, i.instance_id, i.zone, i.market, price_per_hour,
                          i.launched_at if i.launched_at is not None else now) for i in instances)


@dataclass(frozen=True, slots=True)
class AttemptView:
    """What the pure core knows of one attempt (read from the store, no ORM object)."""

    id: str
    task_id: str
    number: int
    provider: str
    region: str
    zone: str | None
    instance_type: str
    market: Market
    price_per_hour: float
    on_demand_price_per_hour: float
    billing_increment_s: int
    billing_minimum_s: int
    state: AttemptState
    outcome: Outcome | None
    instance_id: str | None
    launched_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    # Fraction of the task's work committed when this attempt started, and the newest figure seen.
    progress_start: float
    progress_end: float | None
    # When the newest checkpoint seen during this attempt was written (for work lost to preemption).
    last_checkpoint_at: float | None
    # When the job first made progress in this attempt: launch to here is the restart overhead.
    productive_at: float | None = None
    # A launch the provider refused: no instance, nothing billed.
    unbilled: bool = False
    # Where the price came from: "api", "catalog", or "unknown" (money figures then mean nothing).
    price_source: str = "catalog"
    # A gang's size, and its nodes' own records once launched (store.gang); () for a single node.
    nodes: int = 1
    node_spans: tuple[NodeSpan, ...] = ()

    @property
    def live(self) -> bool:
        return self.state is not AttemptState.ENDED


@dataclass(frozen=True, slots=True)
class TaskView:
    id: str
    job_id: str
    index: int
    state: TaskState
    failures: int
    progress_committed: float
    progress_reported: float
    checkpoint_uri: str
    item_start: int | None
    item_end: int | None


def clamp_progress(fraction: float) -> float:
    """Progress as stored: a fraction of the work, within [0, 1] whatever a job reports."""
    return min(1.0, max(0.0, fraction))


def job_state(states: list[TaskState]) -> str:
    """A job's state, derived from its tasks' (never stored, so it cannot disagree with them)."""
    if not states:
        return "empty"
    if any(not s.terminal for s in states):
        if any(s in (TaskState.RUNNING, TaskState.LAUNCHING) for s in states):
            return "running"
        return "preempted" if any(s is TaskState.PREEMPTED for s in states) else "pending"
    for s in (TaskState.CANCELLED, TaskState.BUDGET_EXCEEDED, TaskState.FAILED):
        if s in states:
            return str(s)
    return str(TaskState.SUCCEEDED)
