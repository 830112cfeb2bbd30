"""Simulated campaign workers: the SDK's item loop, run in simulated time on top of the `sim` provider.

The `sim` provider models an instance as a single task that works one hour per hour and exits when
its `estimated_hours` are done. A campaign worker is different: its process runs `orch.items()`,
leases one item at a time, works ~14 s on it, commits it, and exits 0 as soon as a lease comes back
empty. So the benchmark wraps the provider in `CampaignWorkers`, which

- passes offers, launches, terminations and reclamations through to the `SimProvider` unchanged
  (the traces decide availability and when a spot worker is reclaimed);
- launches the instance with work that never ends on its own, and instead ends it (exit 0) at the
  moment its simulated SDK finds nothing to lease, as the real worker's process does;
- reports the campaign's progress (items settled over all items) as the instance's progress, the
  figure the loop itself gives every slot, so the provider and the loop never disagree about it;
- between two loop ticks, runs every live worker's item loop through the real `ItemStore`
  (`lease`, `start`, `complete`, with the attempt id as owner, at the simulated moment of each
  call), in time order across workers (a heap of next events), so a reclaimed worker leaves the item
  in its hand started but unfinished and the loop's `release_worker` returns it to the queue.

It also counts, on the workers' side, what the store cannot tell apart afterwards: how often each
item was started (an item started twice was redone) and how many commits were refused because the
item already had its result (a duplicate that the store dropped).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.job.item_records import Lease
from orchestrator.store.items import ItemStore
from providers.sim import SimProvider
from vocab import EndReason, Instance, InstanceState, LaunchRequest, Notice, Offer, Resources

NEVER_DONE_HOURS = 1e6  # the sim instance's own work: never finished; the worker decides when it exits
LEASE_SECONDS = 120.0  # the SDK's default lease (docs/campaigns.md)


@dataclass(slots=True)
class _Worker:
    """One attempt's worker process: where its item loop stands in simulated time."""

    attempt_id: str
    job_id: str
    at: float  # simulated up to here (work begins after the sim's restart overhead)
    held: Lease | None = None  # the item in hand (started, not finished)
    held_until: float = 0.0  # when the item in hand will be finished
    exited_at: float | None = None  # found nothing to lease and exited 0
    first_item_at: float | None = None  # when it started its first item: launch to here is its overhead
    stopped: bool = False  # its instance ended (reclaimed, terminated) or it exited: no more work


class CampaignWorkers:
    """A `Provider` for the loop: the `sim` provider with simulated campaign workers on its instances."""

    name = "sim"

    def __init__(self, sim: SimProvider, items: ItemStore, *, item_seconds: float) -> None:
        self.sim = sim
        self.abilities = sim.abilities
        self.items = items
        self.item_seconds = float(item_seconds)
        self.workers: dict[str, _Worker] = {}
        self.starts: Counter[int] = Counter()  # item index -> times a worker started it
        self.commits: Counter[int] = Counter()  # item index -> commits accepted (must never pass 1)
        self.refused_commits = 0  # commits the store refused: the item already had its result
        self.done_by: Counter[str] = Counter()  # attempt id -> items it committed
        self._progress: dict[str, float] = {}  # job -> items settled / total, after the last `work`

    # --- Provider protocol (what the loop calls) ------------------------------------------------

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        return self.sim.offers(resources, regions, job_id=job_id, options=options)

    def launch(self, request: LaunchRequest) -> Instance:
        inst = self.sim.launch(dataclasses.replace(request, estimated_hours=NEVER_DONE_HOURS, progress=0.0))
        if request.attempt_id not in self.workers:
            launched = self.sim.clock.now() if inst.launched_at is None else inst.launched_at
            self.workers[request.attempt_id] = _Worker(request.attempt_id, request.job_id,
                                                       at=launched + self.sim.overhead_s)
        return self._view(inst)

    def instances(self) -> list[Instance]:
        return [self._view(i) for i in self.sim.instances()]

    def terminate(self, instance: Instance) -> None:
        self.sim.terminate(instance)  # for a worker that exited, `_view` keeps its own end time

    def notices(self) -> list[Notice]:
        return []  # the public traces hold no interruption notices

    # --- the workers' side ----------------------------------------------------------------------

    def work(self, until: float) -> None:
        """Run every live worker's item loop up to `until` (the clock's now), events in time order
        across workers. A worker whose instance ended (reclaimed, terminated) stops at that moment,
        with whatever it had in hand left started and unfinished."""
        ended_at = {i.attempt_id: i.ended_at for i in self.sim.instances() if i.attempt_id}
        stops: dict[str, float] = {}
        heap: list[tuple[float, str]] = []
        for w in self.workers.values():
            if w.stopped:
                continue
            ended = ended_at.get(w.attempt_id)
            stops[w.attempt_id] = until if ended is None else min(until, ended)
            first = w.held_until if w.held is not None else w.at
            if first <= stops[w.attempt_id]:
                heapq.heappush(heap, (first, w.attempt_id))
            elif ended is not None:
                w.stopped = True
        while heap:
            when, attempt_id = heapq.heappop(heap)
            w = self.workers[attempt_id]
            nxt = self._step(w, when)
            if nxt is None:
                continue
            if nxt <= stops[attempt_id]:
                heapq.heappush(heap, (nxt, attempt_id))
            elif ended_at.get(attempt_id) is not None:
                w.stopped = True
        for job_id in {w.job_id for w in self.workers.values()}:
            c = self.items.counts(job_id)
            self._progress[job_id] = 1.0 if c.total == 0 else (c.done + c.quarantined) / c.total

    def _step(self, w: _Worker, now: float) -> float | None:
        """One event of a worker's loop at `now`: finish the item in hand, then take the next one.
        Returns the time of its next event, or None when it exited."""
        if w.held is not None:
            if self.items.complete(w.job_id, w.attempt_id, w.held, now=now, result='"ok"',
                                   work_seconds=self.item_seconds):
                self.commits[w.held.index] += 1
                self.done_by[w.attempt_id] += 1
            else:
                self.refused_commits += 1
            w.held = None
        while True:
            got = self.items.lease(w.job_id, w.attempt_id, 1, now=now, lease_seconds=LEASE_SECONDS)
            if not got:
                w.exited_at = now  # `for item in orch.items()` ends: the process exits 0
                w.stopped = True
                w.at = now
                return None
            if self.items.start(w.job_id, w.attempt_id, got[0], now=now):
                break
        w.held, w.held_until, w.at = got[0], now + self.item_seconds, now
        if w.first_item_at is None:
            w.first_item_at = now
        self.starts[got[0].index] += 1
        return w.held_until

    def _view(self, inst: Instance) -> Instance:
        """The sim's instance as the worker on it makes it: exited 0 when the worker did, with the
        campaign's progress."""
        w = self.workers.get(inst.attempt_id or "")
        if w is None:
            return inst
        progress = self._progress.get(w.job_id, 0.0)
        if w.exited_at is not None and (inst.ended_at is None or inst.ended_at > w.exited_at):
            return dataclasses.replace(inst, state=InstanceState.TERMINATED, ended_at=w.exited_at,
                                       reason=EndReason.EXITED, exit_code=0, progress=progress)
        return dataclasses.replace(inst, progress=progress)
