"""What the plan knows of one task in one tick: values the loop gathered, nothing it must ask again.

The loop builds these (`orchestrator.loop.reconcile_task`); the plan (`core.plan.task`) reads them.
The policy's context is the one fact given as a function: building it asks the providers for their zone
signals, and most ticks of most tasks need no policy at all (a cancelled or settling attempt, a worker
slot that waits), so the plan asks for it only when a rule needs the policy. For the plan it is a value:
the same call gives the same context within a round, and tests pass a constant.

The records are read-only by convention, not frozen: they are built for every task in every tick (a
frozen dataclass's `__init__` costs five times a plain one's, which `bench/scale.py` showed), and
nothing keeps them past the round they are planned in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.core.campaign_plan import CampaignFacts
from orchestrator.core.decide import Context
from orchestrator.core.model import AttemptView, TaskView
from orchestrator.core.plan.progress import Seen
from orchestrator.core.spec import JobSpec
from vocab import Abilities, Instance, Notice, Offer


@dataclass(slots=True)
class JobFacts:
    id: str
    spec: JobSpec
    created_at: float
    cancel_requested: bool = False


@dataclass(slots=True)
class LiveFacts:
    """The task's live attempt and what this tick saw of it."""

    attempt: AttemptView
    abilities: Abilities  # of the attempt's provider
    listed: bool  # its provider was listed this tick (if not, nothing is decided about it)
    instance: Instance | None  # as listed (None: missing from the listing)
    seen_since: float  # since when it may be missing from the listing (`live.read_listing`)
    seen: Seen = field(default_factory=Seen)  # its progress and heartbeat (`core.plan.progress.observe`)
    notice: Notice | None = None  # an interruption or rebalance notice for it, this tick
    notice_recorded: bool = False  # the notice is on the job's record already (once per attempt)
    reclaim_avoided: bool = False  # its offer is avoided past the notice's deadline already
    asked_to_stop: bool = False  # the loop asked its instance to stop gracefully (a `stopping` event)
    relaunch_offer: Offer | None = None  # a launching attempt's offer, if it is still offered
    # A gang's other nodes as listed this tick (ranks 1..N-1 that were seen, by rank); `instance` is rank 0.
    members: tuple[Instance, ...] = ()


@dataclass(slots=True)
class TaskFacts:
    job: JobFacts
    task: TaskView
    attempts: Sequence[AttemptView]  # the task's attempts, oldest first
    live: LiveFacts | None
    now: float
    # The policy's context: with the live attempt (keep or stop it), or without (place the task, or a
    # replacement on a notice). See the module's docstring for why a function.
    context: Callable[[AttemptView | None], Context]
    abilities: Mapping[str, Abilities] = field(default_factory=dict)  # by provider name
    campaign: CampaignFacts | None = None  # a campaign's item counts this tick (None: not a campaign)
