"""The ledger follows the cloud's bill: an ended attempt's end is moved to the moment its provider
reports the instance gone.

The loop ends some attempts before the cloud has said when their instance stopped: one replaced on an
interruption notice is ended at the notice's deadline (the cloud may reclaim it earlier, and bills
only to then), one missing from the listing past its grace is ended as lost at that tick (it may
still run, and be reaped later). The listing tells the truth afterwards: a terminated instance
carries the time it ended. `settle_ends` applies it, so that what orch records is what the cloud
charges, for every kind of stop (design.md: "an attempt ends when the provider's listing shows its
instance gone, at the time the cloud reports").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from orchestrator.core.model import AttemptView, Outcome
from orchestrator.store import Store
from vocab import Instance

if TYPE_CHECKING:
    from orchestrator.loop.observation import Observation
    from orchestrator.loop.snapshot import JobSnapshot

log = logging.getLogger("orch.reconciler")
GUESS_WATCH_S = 7200.0  # a guessed end is watched this long (EC2 lists a terminated instance about an hour)
SETTLE_TOLERANCE_S = 0.5  # below this an end is already the cloud's (float round trips)
# Ends the loop records before the cloud has said when: on a notice (at its deadline), or lost (at the
# tick whose listing missed the instance past its grace).
GUESSED = frozenset({Outcome.PREEMPTED, Outcome.LOST})


def settle_ends(store: Store, listed: Iterable[Instance], attempts: Mapping[str, AttemptView], now: float) -> list[str]:
    """Bring forward the end of each attempt among `attempts` (by id) that was ended on a guess (`GUESSED`),
    when its listed instance ended before the moment it was recorded at; returns the ids moved (their
    jobs' snapshots must be read again).

    Only those guesses are corrected here, and only earlier: every other end is the cloud's already (read
    from the listing by `_finish`) or the moment orch stopped the instance, and a provider whose end
    time is approximate (a pod without a finish time reads as "now") must never stretch a bill. An
    instance that ran on after its attempt was given up is billed to its stop by `reaped`.
    """
    moved = []
    for inst in listed:
        if inst.alive or inst.ended_at is None or inst.attempt_id is None:
            continue
        a = attempts.get(inst.attempt_id)
        if a is not None and a.nodes > 1 and not a.live and not a.unbilled:
            # A gang's nodes are billed to their own ends (`core.plan.gang.ended_nodes`): a node's end the
            # loop guessed (missing from the listing, or asked to stop) moves to the cloud's, earlier only;
            # a node left open when its attempt ended (a controller that died before recording the nodes'
            # ends, harness seed 4269) would be billed to the attempt's end: it is closed at the cloud's.
            span = next((s for s in a.node_spans if s.instance_id == inst.instance_id), None)
            if span is None:
                continue
            end = span.ended_at if span.ended_at is not None else a.ended_at
            if end is None or max(inst.ended_at, span.launched_at) >= end - SETTLE_TOLERANCE_S:
                continue
            if (store.settle_node_end(a.id, inst.instance_id, inst.ended_at) if span.ended_at is not None
                    else store.end_attempt_node(a.id, inst.instance_id, inst.ended_at)):
                moved.append(a.id)
            continue
        if a is None or a.live or a.unbilled or a.ended_at is None or a.outcome not in GUESSED:
            continue
        if max(inst.ended_at, a.launched_at) >= a.ended_at - SETTLE_TOLERANCE_S:
            continue
        why = ("its instance was reclaimed before the notice's deadline" if a.outcome is Outcome.PREEMPTED
               else "its instance had ended before the listing that missed it")
        if store.settle_end(a, inst.ended_at, now, why=why):
            moved.append(a.id)
    return moved


def reaped(store: Store, attempt: AttemptView, instance_id: str, now: float) -> None:
    """An instance whose attempt had ended ran on until the reaper terminated it now: billed to now. For a
    gang, the node on that instance is, and only it (`ended_nodes` bills each node to its own end, and an
    end the loop recorded when it asked the node to stop is wrong if the stop never happened)."""
    if attempt.unbilled:
        return
    if attempt.nodes > 1 and attempt.node_spans:
        # Each node is billed by its own span: moving the attempt's end too would bill every node left
        # open to the reaping, one that had exited long before included (harness seed 4269).
        store.reap_node_end(attempt.id, instance_id, now)
        return
    if attempt.ended_at is not None and attempt.ended_at < now - SETTLE_TOLERANCE_S:
        store.settle_end(attempt, now, now, why="its instance ran on until the reaper stopped it")


def settle_tick(store: Store, obs: Observation, snapshots: Mapping[str, JobSnapshot], guessed: Mapping[str, float],
                now: float) -> tuple[dict[str, float], set[str]]:
    """`settle_ends` for one tick's listing: the held jobs' ended attempts, and those this controller ended
    on a guess lately (`guessed`: attempt id -> when), whose job may have finished since (read from the
    store). Returns the guesses still watched and the held jobs whose attempts moved."""
    watched = {a: at for a, at in guessed.items() if now - at < GUESS_WATCH_S}
    if all(inst.alive for _, inst in obs.seen):
        return watched, set()
    by_id = {a.id: (job_id, a) for job_id, snap in snapshots.items() for t in snap.tasks
             for a in snap.attempts_of(t.id) if not a.live}
    attempts = {k: a for k, (_, a) in by_id.items()}
    for _, inst in obs.seen:
        aid = inst.attempt_id
        if aid is not None and aid in watched and aid not in attempts and not inst.alive:
            found = store.attempt(aid)
            if found is not None:
                attempts[aid] = found
    moved = settle_ends(store, (i for _, i in obs.seen), attempts, now)
    for aid in moved:
        watched.pop(aid, None)
    return watched, {by_id[a][0] for a in moved if a in by_id}
