"""A gang attempt's rules (`[resources] nodes = N`, docs/gangs.md): the N nodes are one decision.

The task's rules (`core.plan.task`) run on the gang's head, rank 0, whose heartbeat and checkpoint are
the gang's; this module adds what holding N nodes changes:

- G1. Launching: the gang has started when every node has (a pod-based gang waits, unbilled, until all
  its pods are bound); a cancelled gang still launching is stopped whole.
- G2. One node lost stops the gang: a node other than the head that ended other than by finishing its
  job (exit 0: the ranks of a finished job need not end together), or that is missing from the listing
  past the grace, ends the attempt. Every other node is stopped first (each stop asked of the provider,
  so the attempt stays live if one fails), and the end is judged on the node that caused it.
- G3. Which node explains the end: one that was reclaimed (or vanished) before one that failed, so the
  ranks that exit with an error because a peer went away (a broken all-reduce) never count a reclaimed
  gang as a failed job; after a notice the gang was interrupted whatever its ranks exit with.
- G4. A notice for any node is forwarded to every rank (`ForwardNotice`): the whole gang saves.
- G5. Whatever ends the attempt, every node still alive is stopped and the gang's own resources are
  released (`ReleaseGang`).
"""

from __future__ import annotations

from orchestrator.core.model import AttemptView
from orchestrator.core.plan.actions import Action, EndNodes, ReleaseGang, StopInstance
from orchestrator.core.plan.facts import LiveFacts
from vocab import EndReason, Instance, InstanceState, Market


def is_gang(a: AttemptView) -> bool:
    return a.nodes > 1


def complete(lf: LiveFacts) -> bool:
    """Every node of the gang is in this tick's listing (the head is `lf.instance`)."""
    return lf.instance is not None and len(lf.members) == lf.attempt.nodes - 1


def all_started(lf: LiveFacts) -> bool:
    """G1: every node listed and alive, none waiting for a machine."""
    return complete(lf) and all(i.state is InstanceState.RUNNING for i in (lf.instance, *lf.members) if i is not None)


def finished_ok(inst: Instance) -> bool:
    """A rank whose job exited 0: the job is finishing, its head decides when it has."""
    return not inst.alive and inst.reason is EndReason.EXITED and inst.exit_code == 0


def broken_member(lf: LiveFacts) -> Instance | None:
    """G2: a node other than the head that ended without finishing its job."""
    return next((m for m in lf.members if not m.alive and not finished_ok(m)), None)


def cause(lf: LiveFacts, head: Instance | None, head_exit: int | None) -> Instance | None:
    """G3: the node whose end the attempt's end is judged on (None: the head is gone from the listing).
    A head that exited 0 (`head_exit`: what its heartbeat says) finished the job, whatever came after."""
    if head is not None and not head.alive and 0 in (head.exit_code, head_exit):
        return head
    ended = [i for i in (head, *lf.members) if i is not None and not i.alive]
    for reason in (EndReason.PREEMPTED, EndReason.LOST):
        found = next((i for i in ended if i.reason is reason), None)
        if found is not None:
            return found
    if head is None:
        return None
    if head.alive:  # the head runs on: the first node that ended without finishing
        return next((m for m in ended if not finished_ok(m)), head)
    return head


def stop_members(lf: LiveFacts, *, must: bool) -> tuple[Action, ...]:
    """G5: stop the gang's other nodes that are still alive."""
    return tuple(StopInstance(m, must=must) for m in lf.members if m.alive)


def ghosts(lf: LiveFacts, job_id: str) -> tuple[Instance, ...]:
    """Recorded nodes missing from this listing (a lagging listing may still show them later, running):
    stopped by id before their attempt is given up, as a single node is."""
    a = lf.attempt
    listed = {i.instance_id for i in (lf.instance, *lf.members) if i is not None}
    return tuple(ghost(a, job_id, span.instance_id, zone=span.zone, market=span.market, rank=span.rank)
                 for span in a.node_spans
                 if span.instance_id is not None and span.instance_id not in listed and span.ended_at is None)


def ghost(a: AttemptView, job_id: str, instance_id: str, *, zone: str | None = None, market: Market | None = None,
          rank: int = 0) -> Instance:
    """An attempt's instance as the store knows it (a gang's node: its span's zone, market and rank), to stop
    by id when the listing no longer shows it."""
    return Instance(provider=a.provider, region=a.region, zone=zone if zone is not None else a.zone,
                    instance_id=instance_id, instance_type=a.instance_type,
                    market=market if market is not None else a.market, state=InstanceState.RUNNING,
                    attempt_id=a.id, job_id=job_id, task_id=a.task_id, node_rank=rank)


def released(a: AttemptView) -> tuple[Action, ...]:
    return (ReleaseGang(a),) if is_gang(a) else ()


def ended_nodes(lf: LiveFacts, head: Instance | None, now: float) -> tuple[Action, ...]:
    """G5: every node's own end once the gang's attempt ends: as listed where it has ended, else now (it
    is stopped in this plan, or is missing from the listing and stopped by id)."""
    a = lf.attempt
    if not is_gang(a):
        return ()
    listed = {i.instance_id: i for i in (head, *lf.members) if i is not None}
    ends = []
    for span in a.node_spans:
        if span.instance_id is None or span.ended_at is not None:
            continue
        inst = listed.get(span.instance_id)
        ended = inst is not None and not inst.alive and inst.ended_at is not None
        ends.append((span.instance_id, inst.ended_at if ended and inst is not None and inst.ended_at is not None
                     else now))
    return (EndNodes(a, tuple(ends)),) if ends else ()


def interrupted(lf: LiveFacts) -> bool:
    """G3: a notice reached the gang (the head's heartbeat says so, or a node has one this tick)."""
    return lf.seen.interrupted or lf.notice is not None
