"""One task's plan for one tick: its facts in, the actions that carry out every rule out.

The rules, in the order a tick applies them (each a few lines below, each tested on plain values in
`tests/test_plan.py`):

1. A provider that could not be listed: nothing is decided about its attempts.
2. A launching attempt: missing (a controller died mid-launch) -> launch again with the same token;
   its instance waiting unbilled (a pod pending for a node) -> wait, or stop it if cancelled; seen ->
   record it as started, billed from the cloud's launch time or from now (`bills_from_start`).
3. A running attempt missing from the listing: wait out the listing grace (none once a graceful stop
   was asked), then stop it by id and end it as lost; one listed as ended: judge how it ended
   (`decide.judge_ended`); either way the task is placed again in the same tick.
4. The job said it is done but its instance lives on: record the success, then stop the instance.
5. A notice: record it once; an interruption on a spot attempt whose provider can hold a successor
   back avoids that capacity, and if the policy would launch now, hands the task over at once.
6. Keep or stop (`live.keep_or_stop`): cancel, then the policy (budget, market switch), then silence.
   One end-of-attempt mechanism: a stop is asked of the provider first; a provider that stops
   gracefully keeps a cancelled attempt live (and billed) until its instance is seen gone.
7. No live attempt: cancel, or place the task by the policy (a campaign's worker slot first asks
   `campaign_plan.plan_slot`); a predecessor still saving limits the offers to providers that can
   hold the new job back.

A gang's attempt (`[resources] nodes`) runs these rules on its head, rank 0, with the rules of
`core.plan.gang` (G1-G5) where holding N nodes changes them.
"""

from __future__ import annotations

import dataclasses

from orchestrator.core.campaign_plan import SlotPlan, plan_slot
from orchestrator.core.decide import Launch as LaunchChoice
from orchestrator.core.decide import OverBudget, choose, judge_ended, replace_on_notice
from orchestrator.core.live import Listing, exited_ok_but_alive, keep_or_stop, read_listing, silent
from orchestrator.core.model import LOST, AttemptState, AttemptView, Outcome, TaskState, Transition
from orchestrator.core.plan import gang
from orchestrator.core.plan.actions import (
    Action,
    AvoidOffers,
    EndAttempt,
    ForwardNotice,
    Launch,
    LaunchAgain,
    MarkStarted,
    MoveTask,
    Note,
    Plan,
    RecordNodes,
    ReleaseItems,
    Replan,
    StopInstance,
)
from orchestrator.core.plan.facts import LiveFacts, TaskFacts
from orchestrator.core.plan.progress import Seen
from vocab import EndReason, Instance, InstanceState, Market, NoticeKind, Offer, offer_key

# An offer whose spot capacity is being reclaimed is not offered again for this long after the deadline.
RECLAIMED_AVOID_S = 300.0


def plan_task(f: TaskFacts) -> Plan:
    """The actions for one task this tick (rules 1-7 of the module's docstring)."""
    if f.live is not None:
        return _live(f, f.live)
    return _idle(f)


def draining(attempt: AttemptView, now: float) -> bool:
    """An attempt ended on an interruption notice whose instance may still run (and save) until its deadline."""
    return attempt.outcome is Outcome.PREEMPTED and attempt.ended_at is not None and attempt.ended_at > now


def attempt_key(a: AttemptView) -> str:
    return offer_key(a.provider, a.region, a.zone, a.instance_type, a.market)


# --- a live attempt ----------------------------------------------------------------------------------


def _live(f: TaskFacts, lf: LiveFacts) -> Plan:
    a, inst, cancel = lf.attempt, lf.instance, f.job.cancel_requested
    if not lf.listed:
        return ()  # rule 1
    if a.state is AttemptState.LAUNCHING:
        launching = _launching(f, lf)
        if launching is not None:
            return launching
    group = gang.is_gang(a)
    # A gang is present when all its nodes are listed (G2): one missing past the grace ends it.
    present = inst is not None and (not group or gang.complete(lf))
    listing = read_listing(listed=True, present=present, alive=inst is not None and inst.alive,
                           since=lf.seen_since, now=f.now)
    if listing is Listing.SETTLING and not (cancel and lf.asked_to_stop):
        return ()
    if inst is not None and inst.state is InstanceState.STOPPING and cancel:
        return ()  # cancelled, still saving (a pod's grace period): billed, and live until it has stopped
    broken = gang.broken_member(lf) if group and inst is not None and inst.alive else None
    if inst is None or listing is Listing.ENDED or broken is not None:  # rule 3, G2
        stop: Plan = ()
        head_runs = inst is not None and inst.alive
        if group and a.node_spans:
            # The gang's nodes still running are stopped first (G2), and those the listing no longer shows
            # by id, as a single node is below.
            stop = tuple(StopInstance(g) for g in gang.ghosts(lf, f.job.id))
            if inst is not None and head_runs:
                stop = (*stop, StopInstance(inst), *gang.stop_members(lf, must=True))
        elif inst is None and a.instance_id is not None:
            # A listing can lag: one still running beside its replacement would do the work twice and bill
            # unseen, so it is stopped by id before its attempt is given up.
            stop = (StopInstance(gang.ghost(a, f.job.id, a.instance_id)),)
        return (*stop, *_finish(f, lf, inst, lf.seen, stopped=bool(stop) and head_runs), Replan())
    assert inst is not None
    if exited_ok_but_alive(lf.seen.exit_code):  # rule 4
        done = dataclasses.replace(inst, state=InstanceState.TERMINATED, reason=EndReason.EXITED, exit_code=0,
                                   ended_at=f.now)
        return _finish(f, lf, done, lf.seen, release=inst)
    notes: Plan = ()
    if lf.notice is not None:  # rule 5
        if not lf.notice_recorded:
            left = (f", {max(0.0, lf.notice.deadline - f.now):.0f} s to save" if lf.notice.deadline else "")
            # A gang's every rank hears it (G4), before it is on the record: a failed write is tried again.
            forward = (ForwardNotice(a, lf.notice),) if group else ()
            notes = (*forward, Note("notice", f"{lf.notice.kind} notice for attempt {a.number}{left}", a.id))
        handed = _replace_early(f, lf)
        if handed:
            return (*notes, *handed)
    stop_choice = keep_or_stop(  # rule 6
        number=a.number, cancel_requested=cancel, policy=lambda: choose(f.context(a)),
        is_silent=not lf.seen.unread and silent(heartbeat_at=lf.seen.heartbeat_at,
                                                provider_progress=lf.seen.provider_progress,
                                                since=a.started_at or a.launched_at, now=f.now))
    if stop_choice is None:
        return notes
    ended = _stop(f, lf, inst, stop_choice.outcome, stop_choice.transitions, stop_choice.reason)
    again = (Replan(),) if stop_choice.outcome in (Outcome.SWITCHED, Outcome.LOST) else ()
    return (*notes, *ended, *again)


def _launching(f: TaskFacts, lf: LiveFacts) -> Plan | None:
    """Rule 2; None when the listing decides instead (an instance that ended before it was seen started)."""
    a, inst = lf.attempt, lf.instance
    if inst is not None and gang.is_gang(a) and not gang.complete(lf) and lf.relaunch_offer is not None:
        return (LaunchAgain(a, lf.relaunch_offer),)  # G1: the same token returns the whole gang, recorded then
    if inst is None:
        if lf.relaunch_offer is None:
            return (EndAttempt(a, Outcome.LAUNCH_FAILED, (Transition.LAUNCH_FAILED,),
                               "offer no longer available on restart", unbilled=True),)
        return (LaunchAgain(a, lf.relaunch_offer),)
    waiting = inst.state is InstanceState.PENDING
    if gang.is_gang(a) and lf.abilities.bills_from_start and inst.alive and not gang.all_started(lf):
        # G1: the gang starts when all its nodes have; none ended yet (else the listing's rules decide).
        waiting = all(m.alive for m in lf.members)
    if waiting and lf.abilities.bills_from_start:
        if not f.job.cancel_requested:
            return ()  # waiting for a node: nothing is billed yet
        return _stop(f, lf, inst, Outcome.CANCELLED, (Transition.CANCEL,),
                     f"attempt {a.number} cancelled before its instance started", unbilled=True)
    if inst.alive or not lf.abilities.bills_from_start:
        # A gang whose launch answer was lost is recorded here, from the listing (`RecordNodes` skips a node
        # recorded already).
        record = (RecordNodes(a, (inst, *lf.members), a.price_per_hour),) if gang.is_gang(a) else ()
        return (*record, started(a, inst, lf.abilities.bills_from_start), Replan())
    return None


def started(a: AttemptView, inst: Instance, bills_from_start: bool) -> MarkStarted:
    """Running: a provider that bills from the start is billed from now (the instance was seen running
    by this tick); others from the cloud's launch time, as they bill."""
    at = None if bills_from_start else (inst.launched_at if inst.launched_at is not None else a.launched_at)
    return MarkStarted(a, inst.instance_id, at)


def _stop(f: TaskFacts, lf: LiveFacts, inst: Instance, outcome: Outcome, transitions: tuple[Transition, ...],
          reason: str, *, unbilled: bool = False) -> Plan:
    """The one end-of-attempt mechanism: the stop is asked first (if that fails, the attempt stays live and
    the next tick asks again). A cancelled attempt on a provider that stops gracefully (a pod's grace
    period, for the job to save) runs and is billed until it is seen gone: it ends then, by rule 3."""
    a = lf.attempt
    ask: Plan = (StopInstance(inst), *gang.stop_members(lf, must=True))
    if outcome is Outcome.CANCELLED and lf.abilities.stops_gracefully and not unbilled:
        if lf.asked_to_stop:
            return ask
        return (*ask, Note("stopping", f"attempt {a.number}: {reason}; its instance may save until it stops", a.id))
    release = (ReleaseItems(a),) if f.campaign is not None else ()
    return (*ask, EndAttempt(a, outcome, transitions, reason, unbilled=unbilled), *gang.ended_nodes(lf, inst, f.now),
            *release, *gang.released(a))


def _finish(f: TaskFacts, lf: LiveFacts, inst: Instance | None, seen: Seen, *,
            release: Instance | None = None, stopped: bool = False) -> Plan:
    """The attempt has ended (or is given up): judge how, record it, then let the provider release what is
    left (a pod's finalizer, a stopped VM), which may fail without undoing the record.

    A gang is judged on the node that explains its end (G3), its nodes still alive are stopped after the
    record (`stopped`: the plan stopped them before it) and its resources released (G5)."""
    a = lf.attempt
    judged, exit_code, interrupted = inst, seen.exit_code, seen.interrupted
    if gang.is_gang(a):
        judged = gang.cause(lf, inst, exit_code)
        if judged is not None and judged.alive:
            judged = None  # a node missing from the listing: lost
        exit_code = exit_code if judged is inst else None  # the head's heartbeat speaks for the head only
        interrupted = gang.interrupted(lf)
    verdict = judge_ended(f.job.spec, f.task, a, judged, exit_code, cancel_requested=f.job.cancel_requested,
                          interrupted=interrupted,
                          items_left=f.campaign.counts.left if f.campaign is not None else 0)
    ended_at = judged.ended_at if judged is not None and judged.ended_at is not None else f.now
    out: list[Action] = [EndAttempt(a, verdict.outcome, verdict.transitions, verdict.message,
                                    exit_code=verdict.exit_code, failures=verdict.failures,
                                    ended_at=max(ended_at, a.launched_at), unbilled=verdict.unbilled,
                                    guessed=judged is None), *gang.ended_nodes(lf, inst, f.now)]
    if f.campaign is not None:
        out.append(ReleaseItems(a, verdict.message if verdict.outcome is Outcome.FAILED else None))
    leftover = release if release is not None else inst
    if leftover is not None and not stopped:
        out.append(StopInstance(leftover, must=False))
    if not stopped:
        out.extend(gang.stop_members(lf, must=False))
    out.extend(gang.released(a))
    return tuple(out)


def _replace_early(f: TaskFacts, lf: LiveFacts) -> Plan:
    """On an interruption notice, hand the task over to a new attempt now, if the policy continues.

    The old attempt is ended as preempted at the notice's deadline (the provider bills it until then, so
    the overlap is recorded as spent), its instance is left to save until that deadline (the reaper spares
    it while `draining`), and the replacement is launched at once with ORCH_RESUME_NOT_BEFORE = the
    deadline: it boots during the grace window but starts only once the old one can no longer write a
    checkpoint, and so resumes from its final save. Empty when the attempt runs on.
    """
    a, notice = lf.attempt, lf.notice
    assert notice is not None
    if (notice.deadline is None or f.job.cancel_requested or a.state is not AttemptState.RUNNING
            or a.market is not Market.SPOT or not lf.abilities.replaces_on_notice or gang.is_gang(a)):
        return ()
    if notice.kind is NoticeKind.INTERRUPTION and not lf.reclaim_avoided:
        # That capacity is going away: not for the successor. Avoided first, then planned again, so the
        # policy's context below is built without it.
        return (AvoidOffers((attempt_key(a),), notice.deadline + RECLAIMED_AVOID_S), Replan())
    choice = replace_on_notice(f.context(None), kind=notice.kind, deadline=notice.deadline)
    if not isinstance(choice, LaunchChoice):
        return ()
    offers = _replaceable(f, choice.offers)
    if not offers:
        return ()
    return (EndAttempt(a, Outcome.PREEMPTED, LOST, ended_at=notice.deadline, guessed=True,
                       message=f"attempt {a.number} preempted: {a.market} capacity reclaimed in "
                               f"{notice.deadline - f.now:.0f} s; it may save until then, and its replacement "
                               "starts now and resumes once it is gone"),
            Launch(offers, choice.reason))


# --- no live attempt ---------------------------------------------------------------------------------


def _idle(f: TaskFacts) -> Plan:
    if f.job.cancel_requested:
        return (MoveTask(f.task.id, Transition.CANCEL, "cancelled before launch"),)
    if f.task.state is not TaskState.PENDING:
        return ()
    if f.campaign is not None:
        slot, why = plan_slot(f.campaign)
        if slot is SlotPlan.RETIRE:
            return (MoveTask(f.task.id, Transition.RETIRE, f"worker slot done: {why}"),)
        if slot is SlotPlan.WAIT:
            return ()
    choice = choose(f.context(None))
    if isinstance(choice, OverBudget):
        return (MoveTask(f.task.id, Transition.OVER_BUDGET, choice.reason),)
    if isinstance(choice, LaunchChoice):
        offers = choice.offers
        if any(draining(a, f.now) for a in f.attempts):
            offers = _replaceable(f, offers)  # a predecessor may still be saving
        return (Launch(offers, choice.reason),) if offers else ()
    return ()  # wait, or stop (nothing to stop)


def _replaceable(f: TaskFacts, offers: tuple[Offer, ...]) -> tuple[Offer, ...]:
    """The offers whose provider can hold a new job back until its predecessor has saved."""
    return tuple(o for o in offers if (ab := f.abilities.get(o.provider)) is not None and ab.replaces_on_notice)
