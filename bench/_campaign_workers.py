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

from bench._campaign_world import World
from orchestrator.job.item_records import Lease
from orchestrator.store.items import ItemStore
from providers.sim import SimProvider
from vocab import (
    CapacityError,
    EndReason,
    Instance,
    InstanceState,
    LaunchRequest,
    Market,
    Notice,
    NoticeKind,
    Offer,
    Resources,
)

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
    held_at: float = 0.0  # when it was started
    notice_at: float | None = None  # when it heard it will be reclaimed (then it leases nothing more)
    work_s: float = 0.0  # seconds of items it committed
    next_at: float = 0.0  # its next event while it holds an item: a lease renewal, or the item done
    exited_at: float | None = None  # found nothing to lease and exited 0
    first_item_at: float | None = None  # when it started its first item: launch to here is its overhead
    stopped: bool = False  # its instance ended (reclaimed, terminated) or it exited: no more work


class CampaignWorkers:
    """A `Provider` for the loop: the `sim` provider with simulated campaign workers on its instances."""

    name = "sim"

    def __init__(self, sim: SimProvider, items: ItemStore, *, item_seconds: float | Sequence[float],
                 world: World | None = None) -> None:
        """`item_seconds`: every item's time, or one per item (by index). `world`: the unkind world's
        draws (`bench._campaign_world`): on-demand outages and notices; the sim provider draws each
        spot worker's reclamation from it too."""
        self.sim = sim
        self.abilities = sim.abilities
        self.items = items
        self.per_item = None if isinstance(item_seconds, (int, float)) else [float(x) for x in item_seconds]
        self.item_seconds = float(item_seconds) if isinstance(item_seconds, (int, float)) else (
            sum(self.per_item or [0.0]) / max(1, len(self.per_item or [])))
        self.world = world
        self.notices_sent = 0  # notices the workers heard (on time or late)
        self.workers: dict[str, _Worker] = {}
        self.starts: Counter[int] = Counter()  # item index -> times a worker started it
        self.commits: Counter[int] = Counter()  # item index -> commits accepted (must never pass 1)
        self.refused_commits = 0  # commits the store refused: the item already had its result
        self.done_by: Counter[str] = Counter()  # attempt id -> items it committed
        self._progress: dict[str, float] = {}  # job -> items settled / total, after the last `work`

    # --- Provider protocol (what the loop calls) ------------------------------------------------

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        out = self.sim.offers(resources, regions, job_id=job_id, options=options)
        if self.world is None:
            return out
        now = self.sim.clock.now()
        return [dataclasses.replace(o, available=False) if o.market is Market.ON_DEMAND and o.zone is not None
                and not self.world.on_demand_up(o.zone, now) else o for o in out]

    def launch(self, request: LaunchRequest) -> Instance:
        now = self.sim.clock.now()
        offer = request.offer
        if (self.world is not None and request.attempt_id not in self.workers and offer.market is Market.ON_DEMAND
                and offer.zone is not None and not self.world.on_demand_up(offer.zone, now)):
            raise CapacityError(f"sim: no on-demand capacity in {offer.zone} (the bench's drawn outage)",
                                provider=self.name, code="no-capacity", retry_after=600.0)
        inst = self.sim.launch(dataclasses.replace(request, estimated_hours=NEVER_DONE_HOURS, progress=0.0))
        if request.attempt_id not in self.workers:
            launched = now if inst.launched_at is None else inst.launched_at
            w = _Worker(request.attempt_id, request.job_id, at=launched + self.sim.overhead_s)
            ends = self._reclaims().get(request.attempt_id)
            if self.world is not None and ends is not None:
                w.notice_at = self.world.notice_at(ends, launched)
            self.workers[request.attempt_id] = w
        return self._view(inst)

    def _reclaims(self) -> dict[str, float]:
        """Attempt id -> when the sim will reclaim its spot instance (known to the world, not the loop)."""
        return self.sim.reclaims()

    def instances(self) -> list[Instance]:
        return [self._view(i) for i in self.sim.instances()]

    def terminate(self, instance: Instance) -> None:
        self.sim.terminate(instance)  # for a worker that exited, `_view` keeps its own end time

    def notices(self) -> list[Notice]:
        """Interruption notices the world drew (none without one: the public traces hold none)."""
        if self.world is None:
            return []
        now = self.sim.clock.now()
        ends = self._reclaims()
        out = []
        for inst in self.sim.instances():
            w = self.workers.get(inst.attempt_id or "")
            end = ends.get(inst.attempt_id or "")
            if w is None or end is None or w.notice_at is None or inst.state is not InstanceState.RUNNING:
                continue
            if w.notice_at <= now < end:
                out.append(Notice(provider=self.name, instance_id=inst.instance_id, attempt_id=inst.attempt_id,
                                  kind=NoticeKind.INTERRUPTION, at=w.notice_at, deadline=end))
        return out

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
            first = w.next_at if w.held is not None else w.at
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
        Returns the time of its next event, or None when it exited. An item longer than a third of the
        lease is renewed every third of it, as the SDK's heartbeat does."""
        if w.held is not None and now < w.held_until - 1e-9:
            self.items.renew(w.job_id, w.attempt_id, [w.held.item_id], now=now, lease_seconds=LEASE_SECONDS)
            w.next_at = min(w.held_until, now + LEASE_SECONDS / 3.0)
            return w.next_at
        if w.held is not None:
            took = self.seconds_of(w.held.index)
            if self.items.complete(w.job_id, w.attempt_id, w.held, now=now, result='"ok"', work_seconds=took):
                self.commits[w.held.index] += 1
                self.done_by[w.attempt_id] += 1
                w.work_s += took
            else:
                self.refused_commits += 1
            w.held = None
        if w.notice_at is not None and now >= w.notice_at:
            if w.notice_at <= now:
                self.notices_sent += 1
            w.stopped, w.at = True, now  # interrupted: the SDK's loop ends, the instance waits to go
            return None
        while True:
            got = self.items.lease(w.job_id, w.attempt_id, 1, now=now, lease_seconds=LEASE_SECONDS)
            if not got:
                w.exited_at = now  # `for item in orch.items()` ends: the process exits 0
                w.stopped = True
                w.at = now
                return None
            if self.items.start(w.job_id, w.attempt_id, got[0], now=now):
                break
        w.held, w.held_until, w.held_at, w.at = got[0], now + self.seconds_of(got[0].index), now, now
        w.next_at = min(w.held_until, now + LEASE_SECONDS / 3.0)
        if w.first_item_at is None:
            w.first_item_at = now
        self.starts[got[0].index] += 1
        return w.next_at

    def seconds_of(self, index: int) -> float:
        return self.item_seconds if self.per_item is None else self.per_item[index]

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
