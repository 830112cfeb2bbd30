"""One task's share of a reconcile tick: gather its facts, plan, carry the plan out.

The rules are the core's (`core.plan.task.plan_task`, which lists them); what is left here is what the
plan cannot do without I/O: reading this tick's listing, heartbeat and store for the task's facts
(`_facts`), recording what its progress reads mean (`core.plan.progress.observe`), and handing the plan
to its executor (`loop.act`). A plan that ends an attempt asks to be planned again, so a reclaimed task
is placed in the same tick; a step plans at most `MAX_ROUNDS` times.
"""

from __future__ import annotations

from orchestrator.core.campaign_plan import CampaignFacts
from orchestrator.core.decide import Context
from orchestrator.core.model import AttemptState, AttemptView, TaskView
from orchestrator.core.plan.facts import JobFacts, LiveFacts, TaskFacts
from orchestrator.core.plan.launch import launch_request
from orchestrator.core.plan.progress import ProgressRead, Seen, observe
from orchestrator.core.plan.task import RECLAIMED_AVOID_S, attempt_key, plan_task
from orchestrator.core.status import task_work_hours
from orchestrator.core.totals import JobTotals
from orchestrator.loop.act import Act
from orchestrator.loop.observation import Observation
from orchestrator.loop.pending import with_notes, with_progress
from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.loop.step_context import StepContext
from orchestrator.loop.step_store import StepStore
from orchestrator.loop.task_context import all_offers, policy_context
from orchestrator.loop.task_facts import asked_to_stop
from orchestrator.loop.zones import ZoneView
from orchestrator.store.item_source import worker_environment
from orchestrator.store.views import JobView
from vocab import Instance, LaunchRequest, Offer

MAX_ROUNDS = 4  # launching -> started -> ended -> placed is the longest chain of replans


def job_facts_of(job: JobView) -> JobFacts:
    """What the plan knows of the job, made once per job and tick."""
    return JobFacts(job.id, job.spec, job.created_at, cancel_requested=job.cancel_requested_at is not None)


class TaskStep:
    """One task's step, over the tick's snapshot of its job (see `orchestrator.loop.snapshot`)."""

    def __init__(self, r: StepContext, snap: JobSnapshot, task: TaskView, totals: JobTotals | None = None,
                 campaign: CampaignFacts | None = None, offers: list[Offer] | None = None,
                 job_facts: JobFacts | None = None) -> None:
        self.r, self.snap, self.job, self.task = r, snap, snap.job, task
        # The job's offers this tick, shared by its steps (fetched here for a lone step).
        self.job_offers = offers if offers is not None else r.job_offers(snap.job)
        self.offers = all_offers(self.job_offers, campaign)
        self.campaign = campaign
        self.zones = ZoneView(r, snap, task)  # several zones: the multi-zone policy's view (loop/zones.py)
        if totals is None:  # a lone step: the job's sums made here
            idle = r.offer_summary(self.job_offers).idle_price(snap.job.spec)
            totals = JobTotals.of(snap.job.spec, snap.tasks, snap.attempts_of, idle=idle, now=r.clock.now())
        self.totals = totals
        # Observations wait for the tick's end (`loop.pending`); any other write sends this task's first.
        self.store = StepStore(r.store, r.pending, task.id)
        self._act: Act | None = None  # made for the first plan with something to do (most have nothing)
        self.abilities = r.abilities
        self.job_facts = job_facts or job_facts_of(snap.job)

    @property
    def act(self) -> Act:
        if self._act is None:
            self._act = Act(self.r, self.snap.job, self.store, self.campaign, self.offers, self._refresh, self._request)
        return self._act

    @property
    def wrote(self) -> bool:
        """Whether this step changed the store since it last re-read its task (the snapshot must then
        read it again)."""
        return self.store.wrote

    def step(self, obs: Observation) -> None:
        try:
            for _ in range(MAX_ROUNDS):
                plan = plan_task(self._facts(obs))
                if not plan or not self.act.run(plan):
                    return
        finally:
            self.zones.close_tick()

    # --- the facts -------------------------------------------------------------------------------

    def _facts(self, obs: Observation) -> TaskFacts:
        task = self._refresh()
        live = self.snap.live_attempt(task.id)
        live_facts = self._live(live, obs) if live is not None else None
        if live_facts is not None and live_facts.seen.moved:
            # With the progress just observed, in the snapshot and in the job's sums the policy reads (the
            # measured restart overhead moves with a `productive_at` noted this tick).
            task = self.task = self.snap.task(task.id) or task
            self.totals.update(task, self.snap.attempts_of(task.id))
        return TaskFacts(job=self.job_facts, task=task, attempts=self.snap.attempts_of(task.id), live=live_facts,
                         now=self.r.clock.now(), context=self._context, abilities=self.abilities,
                         campaign=self.campaign)

    def _live(self, live: AttemptView, obs: Observation) -> LiveFacts:
        provider = self.r.providers[live.provider]
        inst = obs.instances.get(live.id)
        if live.provider not in obs.listed:
            return LiveFacts(live, provider.abilities, listed=False, instance=inst, seen_since=live.launched_at)
        seen = Seen()
        if live.state is AttemptState.RUNNING and inst is not None:
            seen = self._observe(live, inst)
            live = self.snap.attempt(self.task.id, live.id) or live
        cancel = self.job.cancel_requested_at is not None
        notice = obs.notices.get(live.id)
        recorded = notice is not None and self.store.has_event(self.job.id, "notice", attempt_id=live.id)
        avoided = (notice is not None and notice.deadline is not None
                   and self.r.capacity.get(attempt_key(live), 0.0) >= notice.deadline + RECLAIMED_AVOID_S)
        relaunch = None
        members = tuple(obs.members.get(live.id, ()))
        if live.state is AttemptState.LAUNCHING and (inst is None or len(members) < live.nodes - 1):
            relaunch = next((o for o in self.offers if o.key == attempt_key(live)), None)
        return LiveFacts(
            live, provider.abilities, listed=True, instance=inst,
            seen_since=self.r.seen_since(live.id, live.started_at or live.launched_at), seen=seen,
            notice=notice, notice_recorded=recorded, reclaim_avoided=avoided,
            asked_to_stop=cancel and asked_to_stop(self.r.store, self.job.id, live.id), relaunch_offer=relaunch,
            members=members)

    def _observe(self, live: AttemptView, inst: Instance) -> Seen:
        """Read what the attempt's progress says (`core.plan.progress.observe`) and hold it for the tick's
        end (`loop.pending`), applied to the snapshot at once: the plan decides on it.

        A checkpoint store that cannot be read means nothing was observed this tick, never that nothing
        may be done: cancellation, the budget and ended instances are handled regardless.
        """
        read = None
        if inst.progress is None:
            got = self.r.progress.of(live.id)  # read before the steps, within the tick's budget
            if got is not None:
                found, fresh = got
                hb, manifest = found.heartbeat, found.manifest
                read = ProgressRead(
                    fresh=fresh, heartbeat_at=hb.at if hb is not None else None,
                    reported=hb.progress if hb is not None else None,
                    exit_code=hb.exit_code if hb is not None else None,
                    interrupted=bool(hb is not None and hb.interrupted),
                    committed=manifest.progress if manifest is not None else None,
                    checkpoint_attempt=manifest.attempt if manifest is not None else None,
                    checkpoint_at=manifest.created_at if manifest is not None else None)
        task = self.task
        o = observe(task, live, provider_progress=inst.progress, read=read,
                    work_hours=task_work_hours(self.job.spec, task), now=self.r.clock.now())
        if o.task_values:
            self.r.pending.progress(task.id, o.task_values)  # written at the tick's end (`loop.pending`)
            self.snap.apply_task(with_progress(task, o.task_values))
        if o.notes:
            self.r.pending.note(task.id, live.id, o.notes)
            self.snap.apply_attempt(with_notes(live, o.notes))
        return o.seen

    def _context(self, live: AttemptView | None) -> Context:
        return policy_context(self.r, self.snap, self.snap.task(self.task.id) or self.task, live,
                              offers=self.offers, totals=self.totals, zones=self.zones, campaign=self.campaign)

    def _request(self, attempt: AttemptView, offer: Offer) -> LaunchRequest:
        job, task = self.job, self.task  # as planned: the attempt's row was written since, not the task's
        campaign_env = None
        if self.campaign is not None:  # how the worker reaches the items (see worker_environment)
            campaign_env = worker_environment(
                self.r.store.engine.url.render_as_string(hide_password=False), provider=offer.provider,
                gpu_memory_gb=offer.gpu_memory_gb, endpoint=self.r.item_endpoint, job_id=job.id,
                attempt_id=attempt.id, checkpoint_uri=job.checkpoint_uri)
        return launch_request(job.spec, job.id, task, attempt, offer, self.snap.attempts_of(task.id), campaign_env)

    def _refresh(self) -> TaskView:
        """This task as the snapshot holds it, re-read first (not the whole job) if this step wrote to the
        store; observations held in memory are already in the snapshot."""
        if self.store.wrote:
            self.r.reread_task(self.snap, self.task.id)
            self.store.wrote = False  # the snapshot holds every write so far: no second re-read after the step
            self.task = self.snap.task(self.task.id) or self.task
            self.totals.update(self.task, self.snap.attempts_of(self.task.id))  # the job's sums follow the change
        else:
            self.task = self.snap.task(self.task.id) or self.task
        return self.task

