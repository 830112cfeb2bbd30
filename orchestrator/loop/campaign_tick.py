"""A tick's campaign work: item counts for every held campaign at once, each campaign's progress and
wanted worker count, items no offered GPU can hold quarantined, results written when it finishes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.core.campaign_plan import CampaignFacts, largest_memory, workers_wanted
from orchestrator.core.plan.progress import progress_values
from orchestrator.core.reasons import workers_reason
from orchestrator.job.checkpoint.storage import StorageError
from orchestrator.job.item_records import ItemCounts
from orchestrator.loop.campaign_bucket import pump_buckets
from orchestrator.loop.campaign_output import write_results
from orchestrator.loop.pending import PendingWrites, with_progress
from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.loop.task_facts import CampaignMemory, observe_campaign
from orchestrator.store import Store
from orchestrator.store.item_source import ItemEndpoint
from orchestrator.store.items import ItemStore
from vocab import CapacityMemory, Clock, Offer


@dataclass
class Campaigns:
    store: Store
    clock: Clock
    capacity: CapacityMemory
    _items: ItemStore | None = None
    # Per campaign: its zones' spot ages and its rate per GPU type (`task_facts.observe_campaign`).
    memory: dict[str, CampaignMemory] = field(default_factory=dict)
    # The worker count each campaign was last said to want (a `workers` event when it changes).
    _said: dict[str, int] = field(default_factory=dict)

    @property
    def items(self) -> ItemStore:
        """Campaign items, in the same database as the jobs."""
        if self._items is None:
            self._items = ItemStore(self.store.engine)
        return self._items

    def of(self, snapshots: Mapping[str, JobSnapshot], endpoint: ItemEndpoint | None,
           now: float) -> dict[str, CampaignFacts]:
        """This tick's item counts of the held campaigns (two queries for all of them), after returning
        lapsed leases."""
        ids = [j for j, s in snapshots.items() if s.job.spec.array is not None and s.job.spec.array.is_campaign]
        if not ids:
            return {}
        pump_buckets(endpoint, self.items, [snapshots[j] for j in ids], now)  # campaign_bucket.py
        self.items.release_expired(now)
        counts, memory = self.items.counts_of(ids), self.items.memory_needed_of(ids)
        return {j: CampaignFacts(counts.get(j, ItemCounts()), memory_needed=memory.get(j)) for j in ids}

    def progress(self, snap: JobSnapshot, facts: CampaignFacts, offers: list[Offer], pending: PendingWrites) -> None:
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
        self.memory[job.id] = observe_campaign(
            self.memory.get(job.id), facts, job_id=job.id, estimate_h=job.spec.schedule.estimated_hours,
            overhead_h=job.spec.schedule.restart_overhead_hours, slots=len(snap.tasks),
            attempts=[a for t in snap.tasks for a in snap.attempts_of(t.id)], offers=offers, items=self.items,
            avoid=self.capacity, now=now, hours_left=hours_left)
        facts.wanted = workers_wanted(facts, slots=len(snap.tasks), total_h=job.spec.schedule.estimated_hours,
                                      hours_left=hours_left, overhead_h=job.spec.schedule.restart_overhead_hours)
        if self._said.get(job.id) != facts.wanted:  # said when it changes, with its reason
            self._said[job.id] = facts.wanted
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
                pending.progress(task.id, values)  # written with the tick's other observations
                snap.apply_task(with_progress(task, values))

    def write_output(self, job_id: str, uri: str) -> None:
        try:
            n = write_results(self.items, job_id, uri)
        except (StorageError, OSError) as exc:
            self.store.add_event(job_id, "output_failed", f"could not write the results to {uri}: {exc}; "
                                 "`orch results JOB --json` has them", self.clock.now())
            return
        self.store.add_event(job_id, "output_written", f"{n} result(s) written to {uri}", self.clock.now())

    def forget(self, job_id: str) -> None:
        self.memory.pop(job_id, None)
        self._said.pop(job_id, None)
