"""What a launch's answer means, and what a launch asks for: the rules around the one provider call
that the executor makes for a `Launch` (`orchestrator.loop.act`), as values.

- `refused`: a refusal avoids the offer (capacity) or the whole region of that provider (quota), ends the
  attempt unbilled, and fails the task when no retry can succeed (bad settings, no permission, an
  error the provider did not translate: the same launch would fail on every tick).
- `unanswered`: a call that did not answer in time may still make the instance; the attempt stays
  launching and the next tick launches it again with the same token.
- `launched`: an instance that waits unbilled is only recorded; any other is started. A gang's nodes are
  recorded first, one span each, and the gang is its head (rank 0) from then on (`core.plan.gang`).
- `launch_request`: the request, fixed for the attempt (a relaunch with the same token sends the same).
- `gang_sizes`: the sizes a gang is launched at, largest first: its `nodes`, and for an elastic gang
  (`min_nodes` < `nodes`) a few smaller ones down to `min_nodes`, tried on the same offer when a larger
  one is refused for capacity (the job resumes on however many nodes it gets, from rank 0's checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from orchestrator.core.model import AttemptView, Outcome, TaskView, Transition
from orchestrator.core.plan.actions import AvoidOffers, EndAttempt, Note, Plan, RecordInstance, RecordNodes
from orchestrator.core.plan.task import draining, started
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import task_work_hours
from vocab import (
    RESUME_NOT_BEFORE,
    CapacityError,
    Instance,
    InstanceState,
    LaunchRequest,
    Offer,
    PermanentError,
    ProviderError,
    QuotaError,
)

MAX_OFFERS_PER_TICK = 3
# A quota error avoids every offer of its provider and region for this long (a person must act).
QUOTA_AVOID_S = 600.0


def where(offer: Offer) -> str:
    return f"{offer.market} {offer.instance_type} in {offer.zone or offer.region}"


def refused(exc: Exception, attempt: AttemptView, offer: Offer, offers: Sequence[Offer], now: float) -> Plan:
    """The launch raised `exc`: nothing is known to run, so nothing is billed."""
    avoid: Plan = ()
    if isinstance(exc, CapacityError):
        avoid = (AvoidOffers((offer.key,), now + exc.retry_after),)
    elif isinstance(exc, QuotaError):  # an account limit covers the whole region
        avoid = (AvoidOffers(tuple(o.key for o in offers if o.provider == offer.provider and o.region == offer.region),
                             now + QUOTA_AVOID_S),)
    if isinstance(exc, ProviderError):
        final = isinstance(exc, PermanentError)
        text = str(exc)
    else:  # an untranslated error (a bug, or input it cannot pass on, such as a NUL byte): in one line
        final = True
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
    transitions = (Transition.LAUNCH_FAILED, Transition.FAIL) if final else (Transition.LAUNCH_FAILED,)
    return (*avoid, EndAttempt(attempt, Outcome.LAUNCH_FAILED, transitions,
                               f"launch on {where(offer)} failed: {text}", unbilled=True))


def unanswered(attempt: AttemptView, offer: Offer, exc: Exception) -> Plan:
    return (Note("provider_error", f"launch on {where(offer)}: {exc}", attempt.id),)


def launched(attempt: AttemptView, nodes: Sequence[Instance], bills_from_start: bool, price_per_hour: float) -> Plan:
    """`nodes`: what the launch returned, one instance per node (one for a single node)."""
    head = min(nodes, key=lambda i: i.node_rank)
    record: Plan = (RecordNodes(attempt, tuple(nodes), price_per_hour),) if attempt.nodes > 1 else ()
    if bills_from_start and any(i.state is InstanceState.PENDING for i in nodes):
        return (*record, RecordInstance(attempt, head.instance_id))  # running (and billed) once started
    return (*record, started(attempt, head, bills_from_start))


def gang_sizes(spec: JobSpec) -> tuple[int, ...]:
    """`nodes`, then (elastic) three quarters, half and `min_nodes`: at most four launches an offer, so a
    gang of 128 does not make 65 calls a tick."""
    g = spec.gang
    if not g.elastic:
        return (g.nodes,)
    steps = (g.nodes, (g.nodes * 3) // 4, g.nodes // 2, g.min_nodes)
    return tuple(sorted({max(g.min_nodes, k) for k in steps}, reverse=True))


def launch_request(spec: JobSpec, job_id: str, task: TaskView, attempt: AttemptView, offer: Offer,
                   attempts: Sequence[AttemptView], campaign_env: Mapping[str, str] | None = None) -> LaunchRequest:
    """`campaign_env`: how a campaign's worker reaches its items (only the loop knows; None: no campaign)."""
    env = dict(spec.env)
    # The contract variables (ids, checkpoint URI, market) come from the request's own fields:
    # `LaunchRequest.environment` adds them for every provider. These are the loop's additions.
    env.update(ORCH_CHECKPOINT_KEEP=str(spec.checkpoint.keep))
    if campaign_env is not None:
        env.update(campaign_env)
    elif task.item_start is not None and task.item_end is not None:
        env.update(ORCH_ITEM_START=str(task.item_start), ORCH_ITEM_END=str(task.item_end))
    # The latest deadline of the predecessors that were still draining when this attempt began.
    not_before = max((a.ended_at for a in attempts if a.id != attempt.id and a.ended_at is not None
                      and draining(a, attempt.launched_at)), default=None)
    if not_before is not None:
        env[RESUME_NOT_BEFORE] = str(math.ceil(not_before))
    return LaunchRequest(
        job_id=job_id, task_id=task.id, attempt_id=attempt.id, attempt_number=attempt.number,
        offer=offer, command=spec.command, env=env, checkpoint_uri=task.checkpoint_uri,
        grace_seconds=spec.checkpoint.grace_seconds, image=spec.image, workdir=spec.workdir,
        estimated_hours=task_work_hours(spec, task), progress=task.progress_committed,
        options=dict(spec.placement.options.get(offer.provider, {})), nodes=attempt.nodes,
    )
