"""The reconcile loop: observe -> decide -> act -> record, level-triggered and idempotent.

One tick lists every provider's orch-managed instances once (never once per job), reads the
heartbeat and newest checkpoint manifest of each running attempt from checkpoint storage, then for
every task asks the pure core what to do and does it. A controller killed at any point converges on
restart: an attempt left `launching` is launched again with the same token (providers return the
instance already made), an instance whose attempt this store has ended is terminated (no leak, no
double billing), and an attempt whose instance vanished is ended and its task requeued.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from functools import partial

from orchestrator.core.campaign_plan import CampaignFacts
from orchestrator.core.placement import OfferSummary
from orchestrator.core.plan.job import finished
from orchestrator.core.policy.base import SpotHistory
from orchestrator.core.policy.multizone_base import ZoneSeen
from orchestrator.core.totals import JobTotals
from orchestrator.job.checkpoint.storage import Storage, open_storage
from orchestrator.loop import snapshot
from orchestrator.loop.campaign_tick import Campaigns
from orchestrator.loop.executor import Executor
from orchestrator.loop.gangs import GangReleases
from orchestrator.loop.heap import Heap
from orchestrator.loop.ledger import settle_tick
from orchestrator.loop.listing import Listings, reap
from orchestrator.loop.observation import Observation
from orchestrator.loop.offers import OfferBook
from orchestrator.loop.pending import PendingWrites
from orchestrator.loop.progress_reads import ProgressReads, wanted
from orchestrator.loop.reconcile_task import TaskStep, job_facts_of
from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.loop.zones import ZoneEvidence
from orchestrator.store import Store
from orchestrator.store.item_source import ItemEndpoint
from orchestrator.store.items import ItemStore
from orchestrator.store.views import JobView
from providers.base import Provider, SharesCapacity
from vocab import Abilities, CapacityMemory, Clock, Offer, ProviderError, Resources

log = logging.getLogger("orch.reconciler")


@dataclass
class Reconciler:
    store: Store
    providers: Mapping[str, Provider]
    clock: Clock
    owner: str = field(default_factory=lambda: f"orch-{uuid.uuid4().hex[:12]}")
    tick_seconds: float = 5.0
    lease_seconds: float = 60.0
    storage: Callable[[str], Storage] = open_storage
    # Offers refused for capacity (or being reclaimed) are avoided until the time stored here; the
    # same memory is handed to every adapter that keeps one (`SharesCapacity`), see `CapacityMemory`.
    capacity: CapacityMemory = field(default_factory=CapacityMemory)
    # Spot availability seen by this controller, per job, one observation a tick (policies learn from it;
    # a restarted controller starts afresh, as a user without a zone history would).
    history: dict[str, SpotHistory] = field(default_factory=dict)
    # The held jobs' tasks and attempts, kept from tick to tick and read again where they changed.
    snapshots: snapshot.Snapshots = field(default_factory=snapshot.Snapshots)
    # Runs each job's share of a tick and bounds every provider call (inline unless a controller asks
    # for a pool, see `orchestrator.loop.executor`).
    executor: Executor = field(default_factory=Executor)
    # Jobs whose share of an earlier tick is still running (a slow provider): skipped until done.
    _inflight: dict[str, Future[bool]] = field(default_factory=dict)
    # Where campaign workers that may not hold the database URL (pods) reach the item service.
    item_endpoint: ItemEndpoint | None = None
    # Per task: what its multi-zone policy has seen of each zone (names, ZoneSeen per zone, "spot
    # somewhere" history). In memory, as `history`: a restarted controller starts afresh.
    zone_memory: dict[str, tuple[tuple[str, ...], tuple[ZoneSeen, ...], SpotHistory | None]] = field(
        default_factory=dict)
    # What this tick's listing shows of each zone (other jobs' instances running or reclaimed there).
    zone_evidence: ZoneEvidence = field(default_factory=ZoneEvidence)
    # The collector kept off the snapshots and other state that outlive a tick (`loop.heap`).
    heap: Heap = field(default_factory=Heap)
    # Progress and attempt notes observed this tick, written together when it ends (`loop.pending`).
    pending: PendingWrites = field(default_factory=PendingWrites)
    # Heartbeats and manifests read from checkpoint storage within a per-tick budget (`loop.progress_reads`).
    progress: ProgressReads = field(default_factory=ProgressReads)
    # Attempts this controller ended on a guess (lost, or on a notice) -> when: their end is set to the
    # cloud's once the listing shows it, even after their job has finished (`loop.ledger`).
    guessed_ends: dict[str, float] = field(default_factory=dict)
    # Ended gangs whose provider still holds their placement (`loop.gangs`): released at a later tick.
    gang_releases: GangReleases = field(default_factory=GangReleases)
    # Made from the fields above (`__post_init__`): the tick's offers, campaigns and listing.
    book: OfferBook = field(init=False)
    campaigns: Campaigns = field(init=False)
    listings: Listings = field(init=False)
    abilities: dict[str, Abilities] = field(init=False)  # by provider name, for the plan

    def __post_init__(self) -> None:
        for provider in self.providers.values():
            if isinstance(provider, SharesCapacity):
                provider.share_capacity(self.capacity)
        self.providers = self.executor.timed(self.providers)
        self.book = OfferBook(self.store, self.providers, self.clock, self.capacity)
        self.campaigns = Campaigns(self.store, self.clock, self.capacity)
        self.listings = Listings(born=self.clock.now())
        self.abilities = {name: p.abilities for name, p in self.providers.items()}

    def tick(self, *, job_ids: Collection[str] | None = None, reap: bool = True) -> list[str]:
        """One pass over the jobs this controller holds; returns the ids of jobs still unfinished.

        `job_ids` limits the pass to those jobs (`orch cancel` acts on one job, not on every job no
        controller holds); `reap` False leaves other installations' and other jobs' instances alone.
        One job's failure is logged and recorded on it, and never stops the others or the reaper.
        """
        with self.heap.during():
            return self._tick(job_ids, reap)

    def _tick(self, job_ids: Collection[str] | None, reap: bool) -> list[str]:
        now = self.clock.now()
        self.capacity.forget_before(now)
        versions = self.store.claim(self.owner, now, self.lease_seconds, job_ids=job_ids)
        held = list(versions)
        listed = self.listings.list(self.executor, self.providers)
        self.book.new_tick()
        if job_ids is None:
            self.snapshots.forget(self._inflight)  # still working on an earlier tick: read afresh once done
            snapshots = self.snapshots.take(self.store, versions)
        else:  # a pass over a few jobs (`orch cancel`): read them afresh, and again at the next full tick
            snapshots = snapshot.take(self.store, held)
            self.snapshots.forget(held)
        obs = self.listings.match(listed, snapshots, self.store, self.clock.now())
        self._settle_ends(obs, snapshots, now)
        self._read_progress(obs, snapshots, now)
        self.zone_evidence = ZoneEvidence.of(obs)  # what this tick's listing shows of every zone
        campaigns = self.campaigns.of(snapshots, self.item_endpoint, now)
        active: list[str] = []
        try:
            started: dict[str, Future[bool]] = {}
            for job_id in held:
                snap = snapshots.get(job_id)
                if snap is None:
                    continue
                if job_id in self._inflight:
                    active.append(job_id)  # an earlier tick's work on it has not finished: leave it be
                    continue
                if not set(snap.job.spec.placement.providers) & set(self.providers):
                    self.store.release_jobs(self.owner, job_ids=[job_id])  # another controller's to run
                    continue
                started[job_id] = self._inflight[job_id] = self.executor.submit(
                    partial(self._work_job, snap, obs, now, campaigns.get(job_id)))
            if started and not self.executor.inline:
                wait(started.values(), timeout=self.executor.job_budget_s)
            for job_id, future in started.items():
                if not future.done():
                    log.warning("job %s is still waiting on a provider; later ticks leave it until it is done",
                                job_id)
                    future.add_done_callback(partial(self._settle, job_id))
                    active.append(job_id)
                    continue
                self._inflight.pop(job_id, None)
                if future.result():
                    active.append(job_id)
        finally:
            self._flush_observations()
            if self.gang_releases.waiting:
                self.gang_releases.retry(self.providers)
            if reap:
                self._reap(obs)
        return active

    def _flush_observations(self) -> None:
        """Write the tick's held progress and notes (`loop.pending`) in one transaction. A failure loses
        only observations, which the next tick makes again."""
        try:
            self.pending.flush(self.store)
        except Exception:
            log.exception("writing this tick's progress failed; the next tick observes it again")
            self.snapshots.forget()  # the snapshots hold progress the store does not: read them afresh

    def _work_job(self, snap: JobSnapshot, obs: Observation, claimed_at: float,
                  campaign: CampaignFacts | None = None) -> bool:
        """One job's share of a tick; True while the job is unfinished. Never raises: a failure is
        logged and recorded on the job, and never stops the others or the reaper."""
        job_id = snap.job.id
        try:
            if self._lease_aging(claimed_at) and not self.store.renew_lease(
                    self.owner, job_id, self.clock.now(), self.lease_seconds):
                return False  # another controller took it over while this tick was busy
            return self._reconcile_job(snap, obs, campaign)
        except Exception as exc:
            log.exception("reconciling job %s failed", job_id)
            self._record_failure(job_id, exc)
            return True

    def _settle(self, job_id: str, future: Future[bool]) -> None:
        """A job left running by an earlier tick has finished its share: later ticks take it again."""
        self._inflight.pop(job_id, None)

    def _lease_aging(self, claimed_at: float) -> bool:
        """Whether this tick has run long enough that a lease taken at its start must be renewed before
        acting on a job. `claim_jobs` renewed every held lease at `claimed_at`; a tick that outlasts a
        third of the lease (a slow provider) renews, and checks, each job's lease before touching it,
        so two controllers never work one job at once. A fast tick spends no statement per job on it."""
        return self.clock.now() - claimed_at > self.lease_seconds / 3.0

    def _record_failure(self, job_id: str, exc: Exception) -> None:
        try:
            self.store.add_event(job_id, "controller_error", f"{type(exc).__name__}: {exc}", self.clock.now())
        except Exception:
            log.exception("could not record the failure of job %s", job_id)

    def run(self, *, job_id: str | None = None, should_stop: Callable[[], bool] = lambda: False,
            max_ticks: int | None = None, on_tick: Callable[[], None] | None = None) -> None:
        """Tick until `job_id` finishes (or forever), sleeping `tick_seconds` between ticks.

        A tick that fails as a whole (the database unreachable) is logged and retried after the
        usual pause: a controller outlives a database failover.
        """
        try:
            ticks = 0
            while not should_stop():
                try:
                    active = self.tick()
                except Exception:
                    log.exception("reconcile tick failed; retrying in %.0f s", self.tick_seconds)
                    active = [job_id] if job_id is not None else []
                if on_tick is not None:
                    on_tick()
                ticks += 1
                if (job_id is not None and job_id not in active) or (max_ticks is not None and ticks >= max_ticks):
                    return
                self.clock.sleep(self.tick_seconds)
        finally:
            self.executor.shutdown()  # its threads stop; one still in a hung call does not hold the exit

    # --- observe -------------------------------------------------------------------------------

    def observe(self) -> Observation:
        """What the providers show now, each instance matched to its live attempt (asking the store) or
        to the orphans; a tick does the same in two steps around its snapshots."""
        return self.listings.match(self.listings.list(self.executor, self.providers), {}, self.store,
                                   self.clock.now())

    def _settle_ends(self, obs: Observation, snapshots: dict[str, JobSnapshot], now: float) -> None:
        """Ended attempts billed to the cloud's end (`loop.ledger.settle_tick`); a held job whose attempt
        moved is read again."""
        self.guessed_ends, moved_jobs = settle_tick(self.store, obs, snapshots, self.guessed_ends, now)
        for job_id in moved_jobs:
            snapshots[job_id] = snapshot.take(self.store, [job_id])[job_id]

    def _read_progress(self, obs: Observation, snapshots: Mapping[str, JobSnapshot], now: float) -> None:
        """This tick's share of the running attempts' heartbeats and manifests, read at once before any step."""
        held = {j: s for j, s in snapshots.items() if j not in self._inflight}
        self.progress.refresh(self.executor, self.storage, wanted(obs, held), now)

    def seen_since(self, attempt_id: str, started: float) -> float:
        return self.listings.seen_since(attempt_id, started)

    # --- offers (`loop.offers`) and campaign items (`loop.campaign_tick`) ----------------------------

    def offers(self, provider: str, resources: Resources, regions: tuple[str, ...], job_id: str,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        return self.book.offers(provider, resources, regions, job_id, options)

    def job_offers(self, job: JobView) -> list[Offer]:
        return self.book.job_offers(job)

    def offer_summary(self, offers: list[Offer]) -> OfferSummary:
        return self.book.summary(offers)

    @property
    def items(self) -> ItemStore:
        return self.campaigns.items

    # --- per job -------------------------------------------------------------------------------

    def _reconcile_job(self, snap: JobSnapshot, obs: Observation, campaign: CampaignFacts | None = None) -> bool:
        """Step every unfinished task of the job; each sees the snapshot as the steps before it left it
        (budget, attempts), since a step that changed its task re-reads that task into the snapshot."""
        job = snap.job
        offers = self.job_offers(job)  # once per job and tick: every step of the job reads this list
        spot_now = bool(self.offer_summary(offers).spot)
        self.history[job.id] = self.history.get(job.id, SpotHistory()).observe(spot_now, self.tick_seconds / 3600.0)
        if campaign is not None:
            self.campaigns.progress(snap, campaign, offers, self.pending)
        idle = self.offer_summary(offers).idle_price(job.spec)
        totals = JobTotals.of(job.spec, snap.tasks, snap.attempts_of, idle=idle, now=self.clock.now())
        facts = job_facts_of(job)
        for task in [t for t in snap.tasks if not t.state.terminal]:
            step = TaskStep(self, snap, task, totals, campaign, offers, facts)
            try:
                step.step(obs)
            except ProviderError as exc:
                self.store.add_event(job.id, "provider_error", str(exc), self.clock.now(), task_id=task.id)
            finally:
                if step.wrote:
                    self.reread_task(snap, task.id)
                    fresh = snap.task(task.id)
                    if fresh is not None:
                        totals.update(fresh, snap.attempts_of(task.id))
        done = finished([t.state for t in snap.tasks], output=job.spec.array.output
                        if campaign is not None and job.spec.array is not None else None)
        if done is None:
            return True
        if done.write_output:
            self.campaigns.write_output(job.id, done.write_output)
        now = self.clock.now()
        self.store.add_event(job.id, "finished", f"job {done.state}", now)
        self.store.mark_finished(job.id, now)
        self.history.pop(job.id, None)
        self.campaigns.forget(job.id)
        for task in snap.tasks:
            self.zone_memory.pop(task.id, None)
        return False

    def reread_task(self, snap: JobSnapshot, task_id: str) -> None:
        """Read one task and its attempts again after a step wrote them, its held observations written first
        (or the read would take back what the snapshot already holds)."""
        self.pending.flush(self.store, task_id=task_id)
        snap.refresh_task(self.store, task_id)

    def _reap(self, obs: Observation) -> None:
        """Stop orch-managed instances whose attempt this store has ended: no leak, no double billing."""
        reap(self.store, self.providers, obs, self.clock)
