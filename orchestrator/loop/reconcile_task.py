"""One task's share of a reconcile tick: read its attempt's fate, then act on the core's decision."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import TYPE_CHECKING

from orchestrator.core.campaign_plan import (
    CampaignFacts,
    SlotPlan,
    offers_for_items,
    plan_slot,
    worker_work_hours,
)
from orchestrator.core.decide import Context, Launch, OverBudget, Stop, Wait, choose, judge_ended, replace_on_notice
from orchestrator.core.live import Listing, exited_ok_but_alive, keep_or_stop, read_listing, silent
from orchestrator.core.model import (
    LOST,
    AttemptState,
    AttemptView,
    IllegalTransition,
    Outcome,
    TaskState,
    TaskView,
    Transition,
)
from orchestrator.core.policy import Situation
from orchestrator.core.status import task_work_hours
from orchestrator.core.totals import JobTotals
from orchestrator.loop.executor import CallTimedOut
from orchestrator.loop.observation import Observation
from orchestrator.loop.pending import with_notes, with_progress
from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.loop.step_context import StepContext
from orchestrator.loop.step_store import StepStore
from orchestrator.loop.task_facts import (
    Seen,
    asked_to_stop,
    attempt_key,
    draining,
)
from orchestrator.loop.zones import ZoneView
from orchestrator.store.item_source import worker_environment
from orchestrator.store.observations import progress_values
from providers.base import (
    RESUME_NOT_BEFORE,
    CapacityError,
    EndReason,
    Instance,
    InstanceState,
    LaunchRequest,
    Market,
    Notice,
    NoticeKind,
    Offer,
    PermanentError,
    ProviderError,
    QuotaError,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("orch.reconciler")
MAX_OFFERS_PER_TICK = 3
# An offer whose spot capacity is being reclaimed is not offered again for this long after the deadline.
RECLAIMED_AVOID_S = 300.0
# A quota error avoids every offer of its provider and region for this long (a person must act).
QUOTA_AVOID_S = 600.0


class TaskWorker:
    """One task's step, over the tick's snapshot of its job (see `orchestrator.loop.snapshot`)."""

    def __init__(self, r: StepContext, snap: JobSnapshot, task: TaskView, live: AttemptView | None,
                 totals: JobTotals | None = None, campaign: CampaignFacts | None = None,
                 offers: list[Offer] | None = None) -> None:
        self.r, self.snap, self.job, self.task, self.live = r, snap, snap.job, task, live
        # The job's offers this tick, shared by its steps (fetched here for a lone step).
        self.job_offers = offers if offers is not None else r.job_offers(snap.job)
        self.campaign = campaign  # a campaign's item counts this tick (None: not a campaign)
        self.zones = ZoneView(r, snap, task)  # several zones: the multi-zone policy's view (loop/zones.py)
        # The job's budget sums, shared by the job's steps this tick (built here for a lone step).
        idle = r.offer_summary(self.job_offers).idle_price(snap.job.spec)
        self.totals = totals if totals is not None else JobTotals.of(
            snap.job.spec, snap.tasks, snap.attempts_of, idle=idle, now=r.clock.now())
        # Observations wait for the tick's end (`loop.pending`); any other write sends this task's first.
        self.store = StepStore(r.store, r.pending, task.id)

    @property
    def wrote(self) -> bool:
        """Whether this step changed the store since it last re-read its task (the snapshot must then
        read it again)."""
        return self.store.wrote

    @property
    def now(self) -> float:
        return self.r.clock.now()

    def step(self, obs: Observation) -> None:
        try:
            self._step(obs)
        finally:
            self.zones.close_tick()

    def _step(self, obs: Observation) -> None:
        live = self.live
        if live is not None:
            if live.provider not in obs.listed:
                return  # this provider could not be listed this tick: decide nothing about it (live.Listing)
            inst = obs.instances.get(live.id)
            if live.state is AttemptState.LAUNCHING:
                if inst is None:
                    self._launch_again(live)
                    return
                if self._still_starting(live, inst):
                    return
                if inst.alive or not self.r.providers[live.provider].abilities.bills_from_start:
                    self._started(live, inst)
                    live = self.live = self.store.attempt(live.id)
                    assert live is not None
            listing = read_listing(listed=True, present=inst is not None, alive=inst is not None and inst.alive,
                                   since=self.r.seen_since(live.id, live.started_at or live.launched_at), now=self.now)
            if listing is Listing.SETTLING and not self._stopped_on_cancel(live):
                return
            if inst is not None and inst.state is InstanceState.STOPPING and self.job.cancel_requested_at is not None:
                return  # cancelled, still saving (a pod's grace period): billed, and live until it has stopped
            if inst is None or listing is Listing.ENDED:
                if inst is None and not self._stop_unlisted(live):
                    return  # it may still run: not given up before the stop was asked for
                self._finish(live, inst)
                if inst is None:  # ended now, a guess: the listing may tell the real end later
                    self.r.guessed_ends[live.id] = self.now
                self.live = None
                self._refresh()
                if self.task.state is TaskState.PENDING and self.job.cancel_requested_at is None:
                    self._place()  # relaunch in the same tick, as a reclaimed job wants to
                return
            seen = self._observe(live, inst)
            if seen.moved:
                self._refresh()  # decide on the progress just observed, not last tick's
                live = self.live = self.snap.attempt(self.task.id, live.id) or live
            if exited_ok_but_alive(seen.exit_code):
                # Record the success, then `_finish` stops the instance (the reaper retries if that fails).
                self._finish(live, dataclasses.replace(inst, state=InstanceState.TERMINATED,
                                                       reason=EndReason.EXITED, exit_code=0, ended_at=self.now),
                             seen=seen)
                return
            notice = obs.notices.get(live.id)
            if notice is not None:
                self._note_notice(live, notice.kind, notice.deadline)
                if self._replace_early(live, notice):
                    return
            if not self._manage_live(live, inst, seen):
                return
            self.live = None
        self._refresh()
        if self.job.cancel_requested_at is not None:
            self.store.transition(self.task.id, Transition.CANCEL, self.now, message="cancelled before launch")
            return
        if self.task.state is TaskState.PENDING:
            self._place()

    # --- a live attempt ------------------------------------------------------------------------

    def _manage_live(self, live: AttemptView, inst: Instance, seen: Seen) -> bool:
        """Cancel, stop or keep the live attempt (`live.keep_or_stop`); True when it was stopped and the
        task may relaunch."""
        since = live.started_at or live.launched_at
        stop = keep_or_stop(number=live.number, cancel_requested=self.job.cancel_requested_at is not None,
                            policy=lambda: choose(self._context(live)),
                            is_silent=not seen.unread and silent(
                                heartbeat_at=seen.heartbeat_at, provider_progress=seen.provider_progress,
                                since=since, now=self.now))
        if stop is None:
            return False
        self._terminate(live, inst, stop.outcome, stop.transitions, stop.reason)
        return stop.outcome in (Outcome.SWITCHED, Outcome.LOST)

    def _stopped_on_cancel(self, live: AttemptView) -> bool:
        """A cancelled attempt this loop asked to stop gracefully is gone once unlisted: no listing grace."""
        return self.job.cancel_requested_at is not None and asked_to_stop(self.r.store, self.job.id, live.id)

    def _still_starting(self, live: AttemptView, inst: Instance) -> bool:
        """A launched instance that has not started the job yet (a pod waiting for a node): nothing is
        billed, so it waits, unless the job was cancelled. True when there is nothing more to do."""
        if inst.state is not InstanceState.PENDING or not self.r.providers[live.provider].abilities.bills_from_start:
            return False
        if self.job.cancel_requested_at is not None:
            self._terminate(live, inst, Outcome.CANCELLED, (Transition.CANCEL,),
                            f"attempt {live.number} cancelled before its instance started", unbilled=True)
        return True

    def _started(self, attempt: AttemptView, inst: Instance) -> None:
        """Record the attempt as running. A provider that bills from the start is billed from now (the
        instance was seen running by this tick); others from the launch request, as they bill."""
        started_at = None if self.r.providers[attempt.provider].abilities.bills_from_start else (
            inst.launched_at if inst.launched_at is not None else attempt.launched_at)  # the cloud's launch time
        self.store.attempt_running(attempt, inst.instance_id, self.now, started_at=started_at)

    def _terminate(self, live: AttemptView, inst: Instance, outcome: Outcome,
                   transitions: tuple[Transition, ...], reason: str, *, unbilled: bool = False) -> None:
        # The instance goes first: if terminating fails, the attempt stays live and the next tick retries.
        provider = self.r.providers[live.provider]
        provider.terminate(inst)
        if outcome is Outcome.CANCELLED and provider.abilities.stops_gracefully and not unbilled:
            # The instance stops in its own time (a pod's grace period, for the job to save): it runs
            # and is billed until then, so the attempt stays live and ends when the listing shows it gone.
            if not asked_to_stop(self.r.store, self.job.id, live.id):
                self.store.add_event(self.job.id, "stopping", f"attempt {live.number}: {reason}; its instance "
                                     "may save until it stops", self.now, task_id=self.task.id, attempt_id=live.id)
            return
        self.store.end_attempt(live, outcome, self.now, task_transitions=transitions, message=reason,
                               unbilled=unbilled)
        self._release_items(live, failure=None)

    def _stop_unlisted(self, live: AttemptView) -> bool:
        """An instance missing from the listing past its grace is stopped by id before its attempt is given
        up: a listing can lag, and one still running beside its replacement would do the work twice and
        bill unseen. True when the stop was asked (or there is nothing to stop)."""
        if live.instance_id is None:
            return True
        ghost = Instance(provider=live.provider, region=live.region, zone=live.zone, instance_id=live.instance_id,
                         instance_type=live.instance_type, market=live.market, state=InstanceState.RUNNING,
                         attempt_id=live.id, job_id=self.job.id, task_id=self.task.id)
        try:
            self.r.providers[live.provider].terminate(ghost)
        except ProviderError as exc:
            log.warning("stopping unlisted instance %s failed: %s", live.instance_id, exc)
            return False
        return True

    def _finish(self, live: AttemptView, inst: Instance | None, *, seen: Seen | None = None) -> None:
        if seen is None:
            seen = self._observe(live, inst) if inst is not None else Seen()
        verdict = judge_ended(self.job.spec, self.task, live, inst, seen.exit_code,
                              cancel_requested=self.job.cancel_requested_at is not None,
                              interrupted=seen.interrupted,
                              items_left=self.campaign.counts.left if self.campaign is not None else 0)
        ended_at = inst.ended_at if inst is not None and inst.ended_at is not None else self.now
        self.store.end_attempt(live, verdict.outcome, self.now, task_transitions=verdict.transitions,
                               message=verdict.message, exit_code=verdict.exit_code, failures=verdict.failures,
                               ended_at=max(ended_at, live.launched_at), unbilled=verdict.unbilled)
        self._release_items(live, failure=verdict.message if verdict.outcome is Outcome.FAILED else None)
        if inst is not None:
            # Recorded first; now let the provider release what is left (a pod's finalizer, a stopped VM).
            try:
                self.r.providers[live.provider].terminate(inst)
            except ProviderError as exc:
                log.warning("releasing ended instance %s failed: %s", inst.instance_id, exc)

    def _observe(self, live: AttemptView, inst: Instance) -> Seen:
        """Record progress and the newest checkpoint if they moved; report what the heartbeat says.

        A checkpoint store that cannot be read means nothing was observed this tick, never that
        nothing may be done: cancellation, the budget and ended instances are handled regardless.
        """
        now = self.now
        hb = None
        committed: float | None
        own_committed: float | None
        reported: float | None
        if inst.progress is not None:
            committed = reported = inst.progress
            own_committed = committed
            checkpoint_at: float | None = now
        else:
            # Read before the steps, within the tick's budget (`loop.progress_reads`); a task not read
            # this tick is stepped on its last heartbeat, and nothing is observed as moved.
            got = self.r.progress.of(live.id)
            if got is None:
                return Seen(unread=True)  # never read, or every read failed: nothing observed
            read, fresh = got
            hb, manifest = read.heartbeat, read.manifest
            if not fresh:
                return Seen(exit_code=hb.exit_code if hb is not None else None,
                            interrupted=bool(hb is not None and hb.interrupted),
                            heartbeat_at=hb.at if hb is not None else None)
            reported = hb.progress if hb is not None else None
            committed = manifest.progress if manifest is not None else None
            # A predecessor's final save (written during its notice window, after this attempt was
            # launched to replace it) is the task's progress, not work this attempt has done.
            own_committed = committed if manifest is not None and manifest.attempt >= live.number else None
            checkpoint_at = manifest.created_at if manifest is not None else None
            if checkpoint_at is not None and checkpoint_at < live.launched_at:
                checkpoint_at = None
        task = self.task
        moved = (committed is not None and committed != task.progress_committed) or (
            reported is not None and reported != task.progress_reported)
        if moved:
            values = progress_values(committed, reported)
            self.r.pending.progress(task.id, values)  # written at the tick's end (`loop.pending`)
            self.snap.apply_task(with_progress(task, values))
        notes: dict[str, float] = {}
        seen = max(x for x in (own_committed, reported, 0.0) if x is not None)
        if live.productive_at is None and seen > live.progress_start:
            # Progress is seen a tick late: back-date the moment work began by the work done since,
            # at the estimated rate, so the measured restart overhead does not grow with the tick.
            work_s = (seen - live.progress_start) * task_work_hours(self.job.spec, task) * 3600.0
            notes["productive_at"] = max(live.launched_at, now - work_s)
        if checkpoint_at is not None and checkpoint_at != live.last_checkpoint_at and (inst.progress is None or moved):
            notes["last_checkpoint_at"] = checkpoint_at
        if committed is not None and committed != live.progress_end:
            notes["progress_end"] = committed
        if notes:
            self.r.pending.note(task.id, live.id, notes)
            self.snap.apply_attempt(with_notes(live, notes))
        return Seen(exit_code=hb.exit_code if hb is not None else None, moved=moved or bool(notes),
                    interrupted=bool(hb is not None and hb.interrupted),
                    heartbeat_at=hb.at if hb is not None else None, provider_progress=inst.progress is not None)

    def _note_notice(self, live: AttemptView, kind: str, deadline: float | None) -> None:
        if self.store.has_event(self.job.id, "notice", attempt_id=live.id):
            return  # recorded once per attempt, however many ticks the notice stays pending
        left = f", {max(0.0, deadline - self.now):.0f} s to save" if deadline else ""
        self.store.add_event(self.job.id, "notice", f"{kind} notice for attempt {live.number}{left}",
                             self.now, task_id=self.task.id, attempt_id=live.id)

    def _replace_early(self, live: AttemptView, notice: Notice) -> bool:
        """On an interruption notice, hand the task over to a new attempt now, if the policy continues.

        The old attempt is ended as preempted at the notice's deadline (the provider bills it until
        then, so the overlap is recorded as spent), its instance is left to save until that deadline
        (the reaper spares it, see `draining`), and the replacement is launched at once with
        ORCH_RESUME_NOT_BEFORE = the deadline: it boots during the grace window but its job starts
        only once the old one can no longer write a checkpoint, and so resumes from its final save.
        True when the task was handed over (whatever the launch then did).
        """
        # Which notices can lead to a replacement is the core's rule (`decide.replace_on_notice`); here
        # only what the core cannot see: the attempt, the provider's ability, a pending cancel.
        if (notice.deadline is None or self.job.cancel_requested_at is not None
                or live.state is not AttemptState.RUNNING or live.market is not Market.SPOT
                or not self.r.providers[live.provider].abilities.replaces_on_notice):
            return False
        now = self.now
        if notice.kind is NoticeKind.INTERRUPTION:  # that capacity is going away: not for the successor
            self.r.capacity.refuse(attempt_key(live), notice.deadline + RECLAIMED_AVOID_S)
        action = replace_on_notice(self._context(None), kind=notice.kind, deadline=notice.deadline)
        if not isinstance(action, Launch):
            return False
        offers = tuple(o for o in action.offers if self.r.providers[o.provider].abilities.replaces_on_notice)
        if not offers:
            return False
        try:
            self.store.end_attempt(
                live, Outcome.PREEMPTED, now, task_transitions=LOST, ended_at=notice.deadline,
                message=f"attempt {live.number} preempted: {live.market} capacity reclaimed in "
                        f"{notice.deadline - now:.0f} s; it may save until then, and its replacement "
                        "starts now and resumes once it is gone")
        except IllegalTransition:
            return False  # ended meanwhile (another controller, a race with cancel): the normal path applies
        self.r.guessed_ends[live.id] = now  # ended at the notice's deadline: the cloud may take it sooner
        self.live = None
        self._refresh()
        if self.task.state is TaskState.PENDING:
            self._launch(offers, action.reason)
        return True

    # --- placing a pending task ----------------------------------------------------------------

    def _place(self) -> None:
        if self.campaign is not None:
            plan, why = plan_slot(self.campaign)
            if plan is SlotPlan.RETIRE:
                self.store.transition(self.task.id, Transition.RETIRE, self.now, message=f"worker slot done: {why}")
                return
            if plan is SlotPlan.WAIT:
                return
        action = choose(self._context(None))
        if isinstance(action, OverBudget):
            self.store.transition(self.task.id, Transition.OVER_BUDGET, self.now, message=action.reason)
        elif isinstance(action, Launch):
            self._launch(action.offers, action.reason)
        elif isinstance(action, Wait | Stop):
            return

    def _launch(self, offers: tuple[Offer, ...], reason: str = "") -> None:
        if any(draining(a, self.now) for a in self.snap.attempts_of(self.task.id)):
            # A predecessor may still be saving: only a provider that can hold the job back may start now.
            offers = tuple(o for o in offers if self.r.providers[o.provider].abilities.replaces_on_notice)
        for offer in offers[:MAX_OFFERS_PER_TICK]:
            attempt = self.store.begin_attempt(self.task, offer, self.now, reason=reason)
            if self._start(attempt, offer):
                if self.campaign is not None:
                    self.campaign.add_worker(offer.market, offer.zone)
                return
            self._refresh()
            if self.task.state is not TaskState.PENDING:
                return

    def _launch_again(self, attempt: AttemptView) -> None:
        """An attempt left `launching` by a dead controller: same token, so no second instance."""
        offer = next((o for o in self._all_offers() if o.key == attempt_key(attempt)), None)
        if offer is None:
            self.store.end_attempt(attempt, Outcome.LAUNCH_FAILED, self.now,
                                   task_transitions=(Transition.LAUNCH_FAILED,),
                                   message="offer no longer available on restart", unbilled=True)
            return
        self._start(attempt, offer)

    def _start(self, attempt: AttemptView, offer: Offer) -> bool:
        provider = self.r.providers[offer.provider]
        where = f"{offer.market} {offer.instance_type} in {offer.zone or offer.region}"
        try:
            inst = provider.launch(self._request(attempt, offer))
        except CallTimedOut as exc:
            # The cloud may still make the instance: the attempt stays launching, and the next tick
            # launches it again with the same token, which returns that instance or makes it once.
            log.warning("launch of attempt %s on %s: %s", attempt.id, where, exc)
            self.store.add_event(self.job.id, "provider_error", f"launch on {where}: {exc}", self.now,
                                 task_id=self.task.id, attempt_id=attempt.id)
            return True
        except ProviderError as exc:
            if isinstance(exc, CapacityError):
                self.r.capacity.refuse(offer.key, self.now + exc.retry_after)
            elif isinstance(exc, QuotaError):  # an account limit covers the whole region
                self.r.capacity.refuse_all([o.key for o in self._all_offers()
                                            if o.provider == offer.provider and o.region == offer.region],
                                           self.now + QUOTA_AVOID_S)
            # A permanent error (bad settings, no permission) will fail every retry: fail the task now.
            transitions = ((Transition.LAUNCH_FAILED, Transition.FAIL) if isinstance(exc, PermanentError)
                           else (Transition.LAUNCH_FAILED,))
            self.store.end_attempt(attempt, Outcome.LAUNCH_FAILED, self.now, task_transitions=transitions,
                                   message=f"launch on {where} failed: {exc}", unbilled=True)
            return False
        except Exception as exc:
            # A provider let an untranslated error out (a bug, or input it cannot pass on, such as a
            # NUL byte in an argument): nothing is known to run, so nothing is billed, and the same
            # launch would fail again on every tick, so the task fails with the error in one line.
            log.exception("launching attempt %s on %s failed unexpectedly", attempt.id, where)
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            self.store.end_attempt(attempt, Outcome.LAUNCH_FAILED, self.now,
                                   task_transitions=(Transition.LAUNCH_FAILED, Transition.FAIL),
                                   message=f"launch on {where} failed: {reason}", unbilled=True)
            return False
        try:
            if inst.state is InstanceState.PENDING and provider.abilities.bills_from_start:
                self.store.attempt_instance(attempt, inst.instance_id)  # running (and billed) once started
            else:
                self._started(attempt, inst)
        except IllegalTransition:
            log.warning("attempt %s changed while launching; the reaper will settle it", attempt.id)
        return True

    def _request(self, attempt: AttemptView, offer: Offer) -> LaunchRequest:
        spec, task = self.job.spec, self.task
        env = dict(spec.env)
        # The contract variables (ids, checkpoint URI, market) come from the request's own fields:
        # `LaunchRequest.environment` adds them for every provider. These are the loop's additions.
        env.update(ORCH_CHECKPOINT_KEEP=str(spec.checkpoint.keep))
        if self.campaign is not None:  # how the worker reaches the items (see worker_environment)
            env.update(worker_environment(self.r.store.engine.url.render_as_string(hide_password=False),
                                          provider=offer.provider, gpu_memory_gb=offer.gpu_memory_gb,
                                          endpoint=self.r.item_endpoint, job_id=self.job.id, attempt_id=attempt.id,
                                          checkpoint_uri=self.job.checkpoint_uri))
        if task.item_start is not None and task.item_end is not None and self.campaign is None:
            env.update(ORCH_ITEM_START=str(task.item_start), ORCH_ITEM_END=str(task.item_end))
        # Fixed for the attempt (a relaunch with the same token sends the same request): the latest
        # deadline of the predecessors that were still draining when this attempt began.
        not_before = max((a.ended_at for a in self.snap.attempts_of(task.id) if a.id != attempt.id
                          and a.ended_at is not None and draining(a, attempt.launched_at)), default=None)
        if not_before is not None:
            env[RESUME_NOT_BEFORE] = str(math.ceil(not_before))
        return LaunchRequest(
            job_id=self.job.id, task_id=task.id, attempt_id=attempt.id, attempt_number=attempt.number,
            offer=offer, command=spec.command, env=env, checkpoint_uri=task.checkpoint_uri,
            grace_seconds=spec.checkpoint.grace_seconds, image=spec.image, workdir=spec.workdir,
            estimated_hours=task_work_hours(spec, task), progress=task.progress_committed,
            options=dict(spec.placement.options.get(offer.provider, {})),
        )

    # --- inputs to the pure core ---------------------------------------------------------------

    def _all_offers(self) -> list[Offer]:
        offers = self.job_offers
        return list(offers_for_items(offers, self.campaign)) if self.campaign is not None else offers

    def _release_items(self, live: AttemptView, *, failure: str | None) -> None:
        """A campaign worker's attempt ended: the items it held go back to the queue now, not when their
        leases lapse (`failure`: it died of an error, charged to the item it was working on)."""
        if self.campaign is None:
            return
        self.r.items.release_worker(live.id, now=self.now, failure=failure,
                                    max_failures=self.job.spec.retry.max_failures)
        self.campaign.remove_worker(live.market, live.zone)

    def _context(self, live: AttemptView | None) -> Context:
        spec, task, now = self.job.spec, self.task, self.now
        offers = self._all_offers()
        work_h = (task_work_hours(spec, task) if self.campaign is None else
                  worker_work_hours(self.campaign, total_h=spec.schedule.estimated_hours, slots=len(self.snap.tasks)))
        overhead_h = self.totals.overhead_h()
        summary = self.r.offer_summary(offers)  # once per offer list and tick, not per task
        running_spot = live is not None and live.market is Market.SPOT
        overhead_left = 0.0
        if live is not None and live.productive_at is None:
            overhead_left = max(0.0, overhead_h - (now - live.launched_at) / 3600.0)
        situation = Situation(
            elapsed_h=(now - self.job.created_at) / 3600.0,
            deadline_h=None if self.job.deadline_at is None else (self.job.deadline_at - self.job.created_at) / 3600.0,
            work_h=work_h, done_h=task.progress_committed * work_h, overhead_h=overhead_h,
            price_ratio=summary.price_ratio,
            current=live.market if live is not None else None, spot_available=bool(summary.spot) or running_spot,
            tick_h=self.r.tick_seconds / 3600.0, overhead_left_h=overhead_left,
            history=self.r.history.get(self.job.id),
        )
        # What the job has spent and what its other tasks will still cost, by the same projection
        # `orch status` shows (`status.remaining_usd`), kept per task (`core.totals`): O(1) per step.
        placement, zone, region = self.zones.placement(situation, live, offers)
        return Context(spec=spec, situation=situation, live=live, offers=offers, avoid=self.r.capacity, now=now,
                       spent_usd=self.totals.spent, others_usd=self.totals.others_usd(task.id),
                       placement=placement, placement_zone=zone, placement_region=region)

    def _refresh(self) -> None:
        """Take this task and its attempts from the snapshot, re-reading them first (not the whole job)
        if this step wrote to the store; observations held in memory are already in the snapshot."""
        if self.store.wrote:
            self.r.reread_task(self.snap, self.task.id)
            self.store.wrote = False  # the snapshot holds every write so far: no second re-read after the step
        self.task = self.snap.task(self.task.id) or self.task
        self.totals.update(self.task, self.snap.attempts_of(self.task.id))
