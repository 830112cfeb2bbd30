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
import threading
import uuid
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from functools import partial

from orchestrator.checkpoint.storage import Storage, StorageError, open_storage
from orchestrator.core.campaign_plan import CampaignFacts, largest_memory, workers_wanted
from orchestrator.core.item_records import ItemCounts
from orchestrator.core.model import AttemptState, job_state
from orchestrator.core.placement import OfferSummary, summarize
from orchestrator.core.plan.progress import progress_values
from orchestrator.core.plan.task import draining
from orchestrator.core.policy.base import SpotHistory
from orchestrator.core.policy.multizone_base import ZoneSeen
from orchestrator.core.reasons import workers_reason
from orchestrator.core.totals import JobTotals
from orchestrator.loop import snapshot
from orchestrator.loop.campaign_bucket import pump_buckets
from orchestrator.loop.campaign_output import write_results
from orchestrator.loop.executor import Executor
from orchestrator.loop.heap import Heap
from orchestrator.loop.ledger import reaped, settle_ends
from orchestrator.loop.observation import Observation
from orchestrator.loop.pending import PendingWrites, with_progress
from orchestrator.loop.progress_reads import ProgressReads, Want
from orchestrator.loop.reconcile_task import TaskStep
from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.loop.task_facts import CampaignMemory, observe_campaign
from orchestrator.loop.zones import ZoneEvidence
from orchestrator.store import Store
from orchestrator.store.item_source import ItemEndpoint
from orchestrator.store.items import ItemStore
from orchestrator.store.views import JobView
from providers.base import (
    CapacityMemory,
    Clock,
    Instance,
    Notice,
    Offer,
    Provider,
    ProviderError,
    Resources,
    SharesCapacity,
)

log = logging.getLogger("orch.reconciler")
PRICE_RECORD_S = 600.0
GUESS_WATCH_S = 7200.0  # a guessed end is watched this long (EC2 lists a terminated instance about an hour)


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
    # same memory is handed to every adapter that keeps one (`share_capacity`), see `CapacityMemory`.
    capacity: CapacityMemory = field(default_factory=CapacityMemory)
    _offers: dict[tuple[str, Resources, tuple[str, ...], str], list[Offer]] = field(default_factory=dict)
    # Spot availability seen by this controller, per job, one observation a tick (policies learn from it;
    # a restarted controller starts afresh, as a user without a zone history would).
    history: dict[str, SpotHistory] = field(default_factory=dict)
    _recorded: dict[str, tuple[float, bool | None, float]] = field(default_factory=dict)
    # The held jobs' tasks and attempts, kept from tick to tick and read again where they changed.
    snapshots: snapshot.Snapshots = field(default_factory=snapshot.Snapshots)
    # Runs each job's share of a tick and bounds every provider call (inline unless a controller asks
    # for a pool, see `orchestrator.loop.executor`).
    executor: Executor = field(default_factory=Executor)
    # Jobs whose share of an earlier tick is still running (a slow provider): skipped until done.
    _inflight: dict[str, Future[bool]] = field(default_factory=dict)
    _offers_lock: threading.Lock = field(default_factory=threading.Lock)
    # This tick's offer list per set of offer keys, and what is derived from each (`offer_summary`).
    _job_offers: dict[tuple[tuple[str, Resources, tuple[str, ...], str], ...], list[Offer]] = field(
        default_factory=dict)
    _summaries: dict[tuple[int, int], tuple[list[Offer], OfferSummary]] = field(default_factory=dict)
    _items: ItemStore | None = None
    # Where campaign workers that may not hold the database URL (pods) reach the item service.
    item_endpoint: ItemEndpoint | None = None
    # Per task: what its multi-zone policy has seen of each zone (names, ZoneSeen per zone, "spot
    # somewhere" history). In memory, as `history`: a restarted controller starts afresh.
    zone_memory: dict[str, tuple[tuple[str, ...], tuple[ZoneSeen, ...], SpotHistory | None]] = field(
        default_factory=dict)
    _key_locks: dict[tuple[str, Resources, tuple[str, ...], str], threading.Lock] = field(default_factory=dict)
    # What this tick's listing shows of each zone (other jobs' instances running or reclaimed there).
    zone_evidence: ZoneEvidence = field(default_factory=ZoneEvidence)
    # Per campaign: its zones' spot ages and its rate per GPU type (`task_facts.observe_campaign`).
    campaign_memory: dict[str, CampaignMemory] = field(default_factory=dict)
    # The collector kept off the snapshots and other state that outlive a tick (`loop.heap`).
    heap: Heap = field(default_factory=Heap)
    # Progress and attempt notes observed this tick, written together when it ends (`loop.pending`).
    pending: PendingWrites = field(default_factory=PendingWrites)
    # When each live attempt's instance was last listed: a listing that misses it is believed only after
    # the grace has passed since then (a controller that just started gives every attempt a full grace).
    last_seen: dict[str, float] = field(default_factory=dict)
    born: float = float("nan")
    # Heartbeats and manifests read from checkpoint storage within a per-tick budget (`loop.progress_reads`).
    progress: ProgressReads = field(default_factory=ProgressReads)
    # Attempts this controller ended on a guess (lost, or on a notice) -> when: their end is set to the
    # cloud's once the listing shows it, even after their job has finished (`loop.ledger`).
    guessed_ends: dict[str, float] = field(default_factory=dict)
    # The worker count each campaign was last said to want (a `workers` event when it changes).
    _workers_said: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.born = self.clock.now()
        self.providers = self.executor.timed(self.providers)
        for provider in self.providers.values():
            if isinstance(provider, SharesCapacity):
                provider.share_capacity(self.capacity)

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
        listed = self._list()
        self._offers.clear()
        self._job_offers.clear()
        self._summaries.clear()
        self._key_locks.clear()
        if job_ids is None:
            self.snapshots.forget(self._inflight)  # still working on an earlier tick: read afresh once done
            snapshots = self.snapshots.take(self.store, versions)
        else:  # a pass over a few jobs (`orch cancel`): read them afresh, and again at the next full tick
            snapshots = snapshot.take(self.store, held)
            self.snapshots.forget(held)
        obs = self._match(listed, snapshots)
        self._settle_ends(obs, snapshots, now)
        self._read_progress(obs, snapshots, now)
        self.zone_evidence = ZoneEvidence.of(obs)  # what this tick's listing shows of every zone
        campaigns = self._campaigns(snapshots, now)
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

    @property
    def items(self) -> ItemStore:
        """Campaign items, in the same database as the jobs."""
        if self._items is None:
            self._items = ItemStore(self.store.engine)
        return self._items

    def _campaigns(self, snapshots: Mapping[str, JobSnapshot], now: float) -> dict[str, CampaignFacts]:
        """This tick's item counts of the held campaigns (two queries for all of them), after returning
        lapsed leases."""
        ids = [j for j, s in snapshots.items() if s.job.spec.array is not None and s.job.spec.array.is_campaign]
        if not ids:
            return {}
        pump_buckets(self.item_endpoint, self.items, [snapshots[j] for j in ids], now)  # campaign_bucket.py
        self.items.release_expired(now)
        counts, memory = self.items.counts_of(ids), self.items.memory_needed_of(ids)
        return {j: CampaignFacts(counts.get(j, ItemCounts()), memory_needed=memory.get(j)) for j in ids}

    def _campaign_progress(self, snap: JobSnapshot, facts: CampaignFacts, offers: list[Offer]) -> None:
        """Each unfinished slot carries the campaign's progress (see `core.campaign_plan`): one figure for the
        policy, the budget guard and `orch status` alike. Items that no GPU on offer can hold are
        quarantined here, so that none waits for a worker that cannot exist."""
        largest = largest_memory(offers)
        if facts.memory_needed is not None and largest is not None and facts.memory_needed >= largest:
            self.items.quarantine_needing_more_than(snap.job.id, largest, now=self.clock.now())
            facts.counts = self.items.counts(snap.job.id)
            facts.memory_needed = self.items.memory_needed(snap.job.id)
        now = self.clock.now()
        job = snap.job
        hours_left = None if job.deadline_at is None else (job.deadline_at - now) / 3600.0
        self.campaign_memory[job.id] = observe_campaign(
            self.campaign_memory.get(job.id), facts, job_id=job.id, estimate_h=job.spec.schedule.estimated_hours,
            overhead_h=job.spec.schedule.restart_overhead_hours, slots=len(snap.tasks),
            attempts=[a for t in snap.tasks for a in snap.attempts_of(t.id)], offers=offers, items=self.items,
            avoid=self.capacity, now=now, hours_left=hours_left)
        facts.wanted = workers_wanted(facts, slots=len(snap.tasks), total_h=job.spec.schedule.estimated_hours,
                                      hours_left=hours_left, overhead_h=job.spec.schedule.restart_overhead_hours)
        if self._workers_said.get(job.id) != facts.wanted:  # said when it changes, with its reason
            self._workers_said[job.id] = facts.wanted
            left_h = (1.0 - facts.progress) * facts.work_hours(job.spec.schedule.estimated_hours)
            self.store.add_event(job.id, "workers", workers_reason(facts.wanted, len(snap.tasks), left_h=left_h,
                                                                   hours_left=hours_left), now)
        for task in snap.tasks:
            if task.state.terminal:
                continue
            live = snap.live_attempt(task.id)
            if live is not None:
                facts.add_worker(live.market, live.zone)
            if abs(task.progress_committed - facts.progress) > 1e-9:
                values = progress_values(facts.progress, facts.progress)
                self.pending.progress(task.id, values)  # written with the tick's other observations
                snap.apply_task(with_progress(task, values))

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
            self._run(job_id, should_stop, max_ticks, on_tick)
        finally:
            self.executor.shutdown()  # its threads stop; one still in a hung call does not hold the exit

    def _run(self, job_id: str | None, should_stop: Callable[[], bool], max_ticks: int | None,
             on_tick: Callable[[], None] | None) -> None:
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
            if job_id is not None and job_id not in active:
                return
            if max_ticks is not None and ticks >= max_ticks:
                return
            self.clock.sleep(self.tick_seconds)

    # --- observe -------------------------------------------------------------------------------

    def observe(self) -> Observation:
        """What the providers show now, each instance matched to its live attempt (asking the store) or
        to the orphans; a tick does the same in two steps around its snapshots (`_list`, `_match`)."""
        return self._match(self._list(), {})

    def _list(self) -> Observation:
        """List every provider once; `_match` then tells the instances' attempts from orphans."""
        obs = Observation()

        def listing(provider: Provider) -> tuple[list[Instance], list[Notice]]:
            return provider.instances(), provider.notices()

        # Every provider is listed at once (each call bounded by the executor): a slow cloud delays
        # the tick by its own timeout, not by the sum of all of them.
        futures = {name: self.executor.submit(partial(listing, provider)) for name, provider in self.providers.items()}
        for name, future in futures.items():
            try:
                instances, notices = future.result()
            except ProviderError as exc:
                log.warning("listing %s failed this tick: %s", name, exc)
                continue
            obs.listed.add(name)
            obs.seen.extend((name, inst) for inst in instances)
            for n in notices:
                if n.attempt_id:
                    obs.notices[n.attempt_id] = n
        return obs

    def _settle_ends(self, obs: Observation, snapshots: dict[str, JobSnapshot], now: float) -> None:
        """Ended attempts billed to the cloud's end (`loop.ledger`): those of the held jobs, and those this
        controller ended on a guess lately, whose job may have finished since (read from the store); a
        held job whose attempt moved is read again."""
        self.guessed_ends = {a: at for a, at in self.guessed_ends.items() if now - at < GUESS_WATCH_S}
        if all(inst.alive for _, inst in obs.seen):
            return
        by_id = {a.id: (job_id, a) for job_id, snap in snapshots.items() for t in snap.tasks
                 for a in snap.attempts_of(t.id) if not a.live}
        attempts = {k: a for k, (_, a) in by_id.items()}
        for _, inst in obs.seen:
            aid = inst.attempt_id
            if aid is not None and aid in self.guessed_ends and aid not in attempts and not inst.alive:
                found = self.store.attempt(aid)
                if found is not None:
                    attempts[aid] = found
        moved = settle_ends(self.store, (i for _, i in obs.seen), attempts, now)
        for aid in moved:
            self.guessed_ends.pop(aid, None)
        moved = [a for a in moved if a in by_id]
        for job_id in {by_id[a][0] for a in moved}:
            snapshots[job_id] = snapshot.take(self.store, [job_id])[job_id]

    def _read_progress(self, obs: Observation, snapshots: Mapping[str, JobSnapshot], now: float) -> None:
        """This tick's share of the running attempts' heartbeats and manifests, read at once before any
        step (those whose provider reports progress itself need none)."""
        wanted = []
        for job_id, snap in snapshots.items():
            if job_id in self._inflight:
                continue
            for t in snap.tasks:
                a = snap.live_attempt(t.id)
                inst = obs.instances.get(a.id) if a is not None else None
                if a is None or inst is None or inst.progress is not None or a.state is not AttemptState.RUNNING:
                    continue
                wanted.append(Want(a.id, t.id, t.checkpoint_uri, a.number, ended=not inst.alive))
        self.progress.refresh(self.executor, self.storage, wanted, now)

    def seen_since(self, attempt_id: str, started: float) -> float:
        """Since when a live attempt's instance may be missing from the listing (`live.read_listing`)."""
        return max(started, self.last_seen.get(attempt_id, self.born))

    def _match(self, obs: Observation, snapshots: Mapping[str, JobSnapshot]) -> Observation:
        """Each listed instance to its live attempt, or to the orphans.

        The held jobs' live attempts are in their snapshots, read (or known unchanged) after the
        listing; the store is asked only about instances they do not explain (other controllers'
        jobs, orphans). An attempt row is committed before its launch, so an instance another process
        launches meanwhile can never look like an orphan here.
        """
        live = {a.id for snap in snapshots.values() for t in snap.tasks for a in snap.attempts_of(t.id) if a.live}
        unknown = [i.attempt_id for _, i in obs.seen if i.attempt_id is not None and i.attempt_id not in live]
        if unknown:
            live |= self.store.live_among(unknown)
        now = self.clock.now()
        if len(self.last_seen) > 2 * len(live) + 1000:
            self.last_seen = {k: v for k, v in self.last_seen.items() if k in live}
        for name, inst in obs.seen:
            if inst.attempt_id is not None and inst.attempt_id in live:
                obs.instances[inst.attempt_id] = inst
                self.last_seen[inst.attempt_id] = now
            elif inst.alive:
                obs.orphans.append((name, inst))
        return obs

    def offers(self, provider: str, resources: Resources, regions: tuple[str, ...], job_id: str,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        """Offers, fetched once per tick per (provider, resources, regions) and recorded as prices.

        A provider whose market is the job's own (`offers_per_job`: the local simulated market, shaped
        by the job's `options`) is asked once per job; every other provider once for all the jobs
        that want the same resources where it is, so 1,000 jobs cost one call, not 1,000.
        """
        key = self._offers_key(provider, resources, regions, job_id)
        # One lock per key, so that job workers wanting the same offers make one call between them,
        # while a slow provider (bounded by the executor's call timeout) holds up only its own key.
        with self._offers_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._offers:
                try:
                    found = self.providers[provider].offers(resources, regions, job_id=job_id, options=options)
                except ProviderError as exc:
                    log.warning("offers from %s failed: %s", provider, exc)
                    found = []
                self._offers[key] = found
                self._record_prices(found)
            return self._offers[key]

    def _offers_key(self, provider: str, resources: Resources, regions: tuple[str, ...],
                    job_id: str) -> tuple[str, Resources, tuple[str, ...], str]:
        per_job = self.providers[provider].abilities.offers_per_job
        return (provider, resources, regions, job_id if per_job else "")

    def _record_prices(self, offers: list[Offer]) -> None:
        """Record an offer's price and availability when they change, and at least every ten minutes."""
        now = self.clock.now()
        fresh = []
        for o in offers:
            seen = self._recorded.get(o.key)
            if seen is None or seen[:2] != (o.price_per_hour, o.available) or now - seen[2] >= PRICE_RECORD_S:
                self._recorded[o.key] = (o.price_per_hour, o.available, now)
                fresh.append(o)
        self.store.record_prices(fresh, now)

    # --- per job -------------------------------------------------------------------------------

    def job_offers(self, job: JobView) -> list[Offer]:
        """Every offer of the job's providers this tick (each fetched once, see `offers`); jobs that want
        the same offers get the same list, so what is derived from it is derived once (`offer_summary`)."""
        spec = job.spec
        names = [name for name in spec.placement.providers if name in self.providers]
        key = tuple(self._offers_key(name, spec.resources, spec.placement.regions, job.id) for name in names)
        found = self._job_offers.get(key)
        if found is None:
            found = [o for name in names for o in self.offers(name, spec.resources, spec.placement.regions, job.id,
                                                               spec.placement.options.get(name))]
            found = self._job_offers.setdefault(key, found)
        return found

    def offer_summary(self, offers: list[Offer]) -> OfferSummary:
        """`placement.summarize` of one of this tick's offer lists, kept for the tick while the capacity memory
        stays as it was."""
        key = (id(offers), self.capacity.generation)
        found = self._summaries.get(key)
        if found is None:
            # The list is kept with its summary: while it lives, no other list can have its id.
            found = self._summaries[key] = (offers, summarize(offers, self.capacity, self.clock.now()))
        return found[1]

    def _observe_spot(self, job: JobView, offers: list[Offer]) -> None:
        spot_now = bool(self.offer_summary(offers).spot)
        self.history[job.id] = self.history.get(job.id, SpotHistory()).observe(spot_now, self.tick_seconds / 3600.0)

    def _reconcile_job(self, snap: JobSnapshot, obs: Observation, campaign: CampaignFacts | None = None) -> bool:
        """Step every unfinished task of the job; each sees the snapshot as the steps before it left it
        (budget, attempts), since a step that changed its task re-reads that task into the snapshot."""
        job = snap.job
        offers = self.job_offers(job)  # once per job and tick: every step of the job reads this list
        self._observe_spot(job, offers)
        if campaign is not None:
            self._campaign_progress(snap, campaign, offers)
        idle = self.offer_summary(offers).idle_price(job.spec)
        totals = JobTotals.of(job.spec, snap.tasks, snap.attempts_of, idle=idle, now=self.clock.now())
        for task in [t for t in snap.tasks if not t.state.terminal]:
            worker = TaskStep(self, snap, task, totals, campaign, offers)
            try:
                worker.step(obs)
            except ProviderError as exc:
                self.store.add_event(job.id, "provider_error", str(exc), self.clock.now(), task_id=task.id)
            finally:
                if worker.wrote:
                    self.reread_task(snap, task.id)
                    fresh = snap.task(task.id)
                    if fresh is not None:
                        totals.update(fresh, snap.attempts_of(task.id))
        states = [t.state for t in snap.tasks]
        if all(s.terminal for s in states):
            if campaign is not None and job.spec.array is not None and job.spec.array.output:
                self._write_output(job.id, job.spec.array.output)
            now = self.clock.now()
            self.store.add_event(job.id, "finished", f"job {job_state(states)}", now)
            self.store.mark_finished(job.id, now)
            self.history.pop(job.id, None)
            self.campaign_memory.pop(job.id, None)
            self._workers_said.pop(job.id, None)
            for task in snap.tasks:
                self.zone_memory.pop(task.id, None)
            return False
        return True

    def reread_task(self, snap: JobSnapshot, task_id: str) -> None:
        """Read one task and its attempts again after a step wrote them, its held observations written first
        (or the read would take back what the snapshot already holds)."""
        self.pending.flush(self.store, task_id=task_id)
        snap.refresh_task(self.store, task_id)

    def _write_output(self, job_id: str, uri: str) -> None:
        try:
            n = write_results(self.items, job_id, uri)
        except (StorageError, OSError) as exc:
            self.store.add_event(job_id, "output_failed", f"could not write the results to {uri}: {exc}; "
                                 "`orch results JOB --json` has them", self.clock.now())
            return
        self.store.add_event(job_id, "output_written", f"{n} result(s) written to {uri}", self.clock.now())

    def _reap(self, obs: Observation) -> None:
        """Terminate orch-managed instances whose attempt this store has ended: no leak, no double billing.

        An instance whose attempt this store has never seen is left alone: it belongs to another orch
        installation sharing the account (or to a store restored from an old backup), and killing it
        would destroy someone else's work. Nor is one whose attempt was handed over on an interruption
        notice, until that notice's deadline: it is saving the checkpoint its replacement resumes from.
        """
        now = self.clock.now()
        for name, inst in obs.orphans:
            attempt = self.store.attempt(inst.attempt_id) if inst.attempt_id else None
            if attempt is None or attempt.live or draining(attempt, now):
                continue
            try:
                self.providers[name].terminate(inst)
            except ProviderError as exc:
                log.warning("could not terminate orphan %s: %s", inst.instance_id, exc)
                continue
            log.info("terminated orphan instance %s (attempt %s)", inst.instance_id, inst.attempt_id)
            reaped(self.store, attempt, now)
            if inst.job_id and self.store.job(inst.job_id):
                self.store.add_event(inst.job_id, "orphan_terminated",
                                     f"terminated {inst.instance_id}: no live attempt owns it",
                                     self.clock.now(), attempt_id=inst.attempt_id)
