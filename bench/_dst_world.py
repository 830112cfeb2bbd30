"""The simulated cloud of the deterministic simulation harness (`bench.dst`): a `Provider` named `sim`
with the hard parts of the world kept, and the job side running on its instances.

What the loop meets here and not on the trace-replaying `providers.sim`:

- spot capacity per zone goes away in outages, and the instances of a zone are reclaimed one at a
  time (each at its own moment within the outage's first minutes), not all at once;
- on-demand capacity can run out too (a zone's on-demand outage refuses launches);
- interruption notices: most arrive two minutes ahead, some late (seconds before), some never, some
  with a deadline later than the moment the cloud actually reclaims (the cloud bills to the real end);
- the job itself runs through the real checkpoint SDK (`Checkpointer`) against in-memory object
  storage: it resumes from the newest verified checkpoint, saves every `ckpt_every_s` and once more on
  a notice, and writes the agent's heartbeat, which the loop reads as in production;
- campaign workers lease and commit items through the real `ItemStore`, and can die holding one;
- a ledger: every instance is billed by the world from its launch to its real end, at its price,
  with the offer's billing rule. The harness holds the loop's recorded cost to this bill;
- gangs (`launch_gang`): N nodes made at once, each reclaimed by its own draw (one at a time); a notice
  for any node reaches the head's job (as the agents share it), and a node lost without one either
  makes every other rank's job save and exit 75 (a broken all-reduce) or hangs the gang, which then
  makes no progress until the loop stops it.

Everything is a function of the seed: ids, reclamation moments and notice fates come from seeded
generators keyed by attempt id, so a run replays exactly.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Mapping, Sequence

from bench._dst_parts import (
    BILLING,
    LEASE_SECONDS,
    LISTED_AFTER_END_S,
    MAX_GANG_NODES,
    NOTICE_S,
    PEER_LOST_EXIT,
    Facts,
    MemStorage,
    SimInstance,
    ZoneSpec,
)
from orchestrator.job.checkpoint.heartbeat import Heartbeat, write_heartbeat
from orchestrator.job.checkpoint.manifest import MANIFEST_NAME, checkpoint_prefix, scan
from orchestrator.job.checkpoint.sdk import Checkpointer
from orchestrator.store.items import ItemStore
from providers.catalog import load_catalog
from vocab import (
    RESUME_NOT_BEFORE,
    Abilities,
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
    Resources,
)


class World:
    """The simulated cloud: zones, instances, storage and the job side, advanced by `advance(now)`."""

    name = "sim"
    # As AWS: a replacement may start while its predecessor drains its notice.
    abilities = Abilities(replaces_on_notice=True, max_gang_nodes=MAX_GANG_NODES)

    def __init__(self, clock: Callable[[], float], zones: Sequence[ZoneSpec], *, seed: int, items: ItemStore,
                 ckpt_every_s: float, save_s: float, item_seconds: Mapping[str, float],
                 p_corrupt: float = 0.0, p_worker_death: float = 0.0) -> None:
        self.clock = clock
        self.zones = {z.name: z for z in zones}
        self.seed = seed
        self.items = items
        self.ckpt_every_s = ckpt_every_s
        self.save_s = save_s
        self.item_seconds = dict(item_seconds)  # job id -> seconds per item (campaigns)
        self.p_corrupt = p_corrupt
        self.p_worker_death = p_worker_death
        self.storages: dict[str, MemStorage] = {}
        self.instances_by_attempt: dict[str, SimInstance] = {}  # the head of a gang
        self.members: dict[str, list[SimInstance]] = {}  # a gang's ranks 1..N-1, by attempt id
        self.by_id: dict[str, SimInstance] = {}
        self.facts = Facts()
        self.kind = load_catalog().find("p3.2xlarge")
        assert self.kind is not None
        self.extra_outages: dict[str, list[tuple[float, float]]] = {}
        self.duplicate_notices = False
        self._time = 0.0  # the moment the job side is at (the SDK reads it through `now`)
        self._damaged: dict[str, set[int]] = {}  # uri -> checkpoints whose data was damaged
        # (when, seconds, paused): the harness held the controller back (a stall, a fault that costs a
        # tick): a deadline that this ate into may have become infeasible. `paused`: no controller ticked
        # at all then, so nothing could stop what the instances spent.
        self.holds: list[tuple[float, float, bool]] = []
        # Work a job had saved and must do again because its newest checkpoints were damaged: seconds, by job.
        self.redone: dict[str, float] = {}
        self._newest_saved: dict[str, float] = {}  # checkpoint uri -> the most progress any save of it held

    # --- Provider protocol ----------------------------------------------------------------------

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        k = self.kind
        if k is None or not k.satisfies(resources):
            return []
        now = self.clock()
        out = []
        for z in self.zones.values():
            if regions and z.region not in regions:
                continue
            for market, price, avail in ((Market.SPOT, z.spot_price, self.spot_up(z, now)),
                                         (Market.ON_DEMAND, z.on_demand_price, None)):
                out.append(Offer(provider=self.name, region=z.region, zone=z.name, instance_type=k.name,
                                 market=market, price_per_hour=price, gpu=k.gpu, gpu_count=k.gpu_count,
                                 gpu_memory_gb=k.gpu_memory_gb, architecture=k.architecture,
                                 on_demand_price_per_hour=z.on_demand_price, available=avail, billing=BILLING))
        return out

    def launch(self, request: LaunchRequest) -> Instance:
        now = self.clock()
        known = self.instances_by_attempt.get(request.attempt_id)
        if known is not None:
            return self._view(known, now)  # the idempotency token: the instance already made
        z = self.zones.get(request.offer.zone or "")
        if z is None or request.offer.provider != self.name:
            raise PermanentError(f"sim: no zone {request.offer.zone!r}", provider=self.name, code="unknown-zone")
        market = request.offer.market
        if market is Market.SPOT and not self.spot_up(z, now):
            raise CapacityError(f"sim: no spot capacity in {z.name}", provider=self.name, retry_after=300.0)
        if market is Market.ON_DEMAND and _inside(z.on_demand_outages, now):
            raise CapacityError(f"sim: no on-demand capacity in {z.name}", provider=self.name, retry_after=300.0)
        rng = random.Random(f"{self.seed}:{request.attempt_id}")
        overhead = max(0.0, float(request.env.get("DST_OVERHEAD_S", "360")))
        not_before = float(request.env.get(RESUME_NOT_BEFORE, "0") or 0)
        campaign = request.job_id in self.item_seconds
        inst = SimInstance(request=request, instance_id=f"i-{len(self.instances_by_attempt) + 1:05d}", zone=z,
                           market=market, price=z.spot_price if market is Market.SPOT else z.on_demand_price,
                           launched_at=now, work_start=max(now + overhead, not_before), campaign=campaign, rng=rng)
        if market is Market.SPOT:
            self._plan_reclaim(inst)
        if campaign and self.p_worker_death and rng.random() < self.p_worker_death:
            inst.dies_at = inst.work_start + rng.uniform(0.0, 3 * 3600.0)
        self.instances_by_attempt[request.attempt_id] = self.by_id[inst.instance_id] = inst
        return self._view(inst, now)

    def launch_gang(self, request: LaunchRequest) -> list[Instance]:
        """All `request.nodes` at once or none (the head's launch refuses for all); the same again for
        the same attempt."""
        head_view = self.launch(request)
        head = self.instances_by_attempt[request.attempt_id]
        if request.attempt_id not in self.members:
            nodes = []
            for rank in range(1, request.nodes):
                node = SimInstance(request=request, instance_id=f"{head.instance_id}-r{rank}", zone=head.zone,
                                   market=head.market, price=head.price, launched_at=head.launched_at,
                                   work_start=head.work_start, campaign=False,
                                   rng=random.Random(f"{self.seed}:{request.attempt_id}:r{rank}"), rank=rank)
                if node.market is Market.SPOT:
                    self._plan_reclaim(node)
                nodes.append(node)
                self.by_id[node.instance_id] = node
            self.members[request.attempt_id] = nodes
        now = self.clock()
        return [head_view, *(self._view(m, now) for m in self.members[request.attempt_id])]

    def release_gang(self, request: LaunchRequest) -> bool:
        return not any(n.alive for n in self.nodes(request.attempt_id))

    def nodes(self, attempt_id: str) -> list[SimInstance]:
        head = self.instances_by_attempt.get(attempt_id)
        return [*([head] if head is not None else []), *self.members.get(attempt_id, ())]

    def all_nodes(self) -> list[SimInstance]:
        return list(self.by_id.values())

    def instances(self) -> list[Instance]:
        now = self.clock()
        return [self._view(i, now) for i in self.by_id.values()
                if i.ended_at is None or now - i.ended_at < LISTED_AFTER_END_S]

    def terminate(self, instance: Instance) -> None:
        inst = self.by_id.get(instance.instance_id)
        if inst is not None and inst.alive and inst.terminated_at is None:
            inst.terminated_at = self.clock()
            self._end(inst, inst.terminated_at, EndReason.TERMINATED, None)

    def notices(self) -> list[Notice]:
        now = self.clock()
        out = []
        for inst in self.by_id.values():
            if inst.notice_at is None or inst.notice_at > now or inst.notice_deadline is None:
                continue
            if inst.alive or (self.duplicate_notices and inst.ended_at is not None and now - inst.ended_at < 120):
                n = Notice(provider=self.name, instance_id=inst.instance_id, attempt_id=inst.request.attempt_id,
                           kind=NoticeKind.INTERRUPTION, at=inst.notice_at, deadline=inst.notice_deadline)
                out.extend([n, n] if self.duplicate_notices else [n])
        return out

    # --- the world ------------------------------------------------------------------------------

    def storage(self, uri: str) -> MemStorage:
        found = self.storages.get(uri)
        if found is None:
            found = self.storages[uri] = MemStorage(uri)
        return found

    def spot_up(self, z: ZoneSpec, at: float) -> bool:
        return not _inside(z.spot_outages, at) and not _inside(self.extra_outages.get(z.name, ()), at)

    def storm(self, zone: str, start: float, end: float) -> None:
        """A reclamation storm: the zone's spot capacity goes now, every instance there within minutes."""
        self.extra_outages.setdefault(zone, []).append((start, end))
        for inst in self.by_id.values():
            if inst.alive and inst.market is Market.SPOT and inst.zone.name == zone:
                self._plan_reclaim(inst)

    def _plan_reclaim(self, inst: SimInstance) -> None:
        """When this spot instance is taken back (the first outage after launch, plus its own delay: nodes
        go one at a time), and what notice it gets: on time, early-reclaimed, late or none."""
        outs = sorted([*inst.zone.spot_outages, *self.extra_outages.get(inst.zone.name, ())])
        start = next((s for s, e in outs if e > inst.launched_at and s >= inst.launched_at - 1e-9), None)
        now = self.clock()
        if start is None:
            return
        rng = random.Random(f"{self.seed}:{inst.request.attempt_id}:{start}" + (f":r{inst.rank}" if inst.rank else ""))
        length = next(e - s for s, e in outs if s == start)
        reclaim = max(start, now) + rng.uniform(0.0, min(600.0, length))
        if inst.reclaim_at is not None and inst.reclaim_at <= reclaim:
            return
        inst.reclaim_at = reclaim
        fate = rng.random()
        if fate < 0.70:  # on time
            inst.notice_at, inst.notice_deadline = reclaim - NOTICE_S, reclaim
        elif fate < 0.80:  # the cloud reclaims before the deadline it announced
            inst.notice_at = reclaim - rng.uniform(20.0, 100.0)
            inst.notice_deadline = inst.notice_at + NOTICE_S
        elif fate < 0.90:  # late: seconds before the end
            inst.notice_at, inst.notice_deadline = reclaim - rng.uniform(1.0, 10.0), reclaim
        else:  # never
            inst.notice_at = inst.notice_deadline = None
        if inst.notice_at is not None:
            inst.notice_at = max(inst.notice_at, inst.launched_at)

    def advance(self, now: float) -> None:
        """Run the job side of every live instance up to `now`, events in time order across instances."""
        heap: list[tuple[float, str]] = []
        for iid, inst in self.by_id.items():
            if inst.alive:
                heapq.heappush(heap, (self._next_event(inst), iid))
        while heap:
            at, iid = heapq.heappop(heap)
            inst = self.by_id[iid]
            if at > now or not inst.alive:
                continue
            self._fire(inst, at)
            if inst.alive:
                heapq.heappush(heap, (self._next_event(inst), iid))
        for inst in self.instances_by_attempt.values():
            if inst.alive and not inst.campaign and inst.started:
                self._heartbeat(inst, now)

    def _heard(self, inst: SimInstance) -> float | None:
        """When the job heard of a notice: its own, or (a gang's head) the first of any node's."""
        ats = [n.notice_at for n in (inst, *self.members.get(inst.request.attempt_id, ())) if n.notice_at is not None]
        return min(ats, default=None)

    def _next_event(self, inst: SimInstance) -> float:
        stop = inst.stop_at
        if inst.rank:
            return stop  # a gang's other rank: only its own end
        if inst.dies_at is not None:
            stop = min(stop, max(inst.dies_at, inst.work_start))
        if not inst.started:
            return min(inst.work_start, stop)
        cands = [stop]
        if inst.campaign:
            cands.append(inst.held_until if inst.held is not None else inst.work_start)
        else:
            cands.append(self._done_at(inst))
            cands.append(inst.next_ckpt)
            heard = self._heard(inst)
            if heard is not None and not inst.saved_on_notice:
                cands.append(max(heard, inst.work_start) + self.save_s)
        return min(cands)

    def _done_at(self, inst: SimInstance) -> float:
        work_s = max(1.0, inst.request.estimated_hours * 3600.0)
        if inst.interrupted:
            return math.inf  # saved on its notice and stopped working: it waits to be reclaimed
        return inst.work_start + (1.0 - inst.resumed_from) * work_s

    def _fire(self, inst: SimInstance, at: float) -> None:
        stop = inst.stop_at
        if inst.dies_at is not None and at >= inst.dies_at and at >= inst.work_start and at < stop:
            self._end(inst, at, EndReason.EXITED, 1)  # the worker process died holding its item
            return
        if at >= stop - 1e-9:
            reason = EndReason.PREEMPTED if inst.reclaim_at is not None and at >= inst.reclaim_at - 1e-9 \
                else EndReason.TERMINATED
            self._end(inst, stop, reason, None)
            if inst.rank and reason is EndReason.PREEMPTED:
                self._peer_lost(inst, stop)
            return
        if not inst.started:
            self._start(inst, at)
            return
        if inst.campaign:
            self._work_items(inst, at)
            return
        p = self._progress_at(inst, at)
        if at >= self._done_at(inst) - 1e-9:
            self._save(inst, at, 1.0)
            self._heartbeat(inst, at, exit_code=0)
            self._end(inst, at, EndReason.EXITED, 0)
            return
        heard = self._heard(inst)
        if heard is not None and not inst.saved_on_notice and at >= heard:
            inst.saved_on_notice = True
            self._save(inst, at, p)
            inst.resumed_from, inst.work_start, inst.interrupted = p, at, True  # stops working: waits for the end
            inst.next_ckpt = math.inf
            self._heartbeat(inst, at)
            return
        if at >= inst.next_ckpt:
            self._save(inst, at, p)
            inst.next_ckpt = at + self.ckpt_every_s

    def _peer_lost(self, lost: SimInstance, at: float) -> None:
        """A gang's node reclaimed: its peers' collective breaks. Either every other rank's job exits 75
        (the head saving its last complete step first), or the gang hangs, working no more, until the loop
        stops it (the seeded draw of the lost node)."""
        head = self.instances_by_attempt.get(lost.request.attempt_id)
        if head is None or not head.alive:
            return
        exits = lost.rng.random() < 0.5
        if head.started and not head.interrupted:
            p = self._progress_at(head, at)
            if exits:
                self._save(head, at, p)
            head.resumed_from, head.work_start, head.interrupted, head.next_ckpt = p, at, True, math.inf
        if exits:
            for node in self.nodes(lost.request.attempt_id):
                if node.alive:
                    self._end(node, at, EndReason.EXITED, PEER_LOST_EXIT)

    def _progress_at(self, inst: SimInstance, at: float) -> float:
        if inst.interrupted:
            return inst.resumed_from
        work_s = max(1.0, inst.request.estimated_hours * 3600.0)
        return min(1.0, inst.resumed_from + max(0.0, at - inst.work_start) / work_s)

    def _start(self, inst: SimInstance, at: float) -> None:
        inst.started = True
        inst.work_start = at
        task = inst.request.task_id
        self.facts.working.setdefault(task, set()).add(inst.request.attempt_id)
        if inst.campaign:
            self._work_items(inst, at)
            return
        storage = self.storage(inst.request.checkpoint_uri)
        self._time = at
        inst.ckpt = Checkpointer(storage, attempt=inst.request.attempt_number, keep=3, now=lambda: self._time)
        loaded = inst.ckpt.load()
        p = 0.0 if loaded is None or loaded.progress is None else float(loaded.progress)
        seq = None if loaded is None else loaded.seq
        newest_ok = self._newest_verified(storage)
        if newest_ok is not None and (seq is None or seq < newest_ok):
            self.facts.stale.append(f"task {task} attempt {inst.request.attempt_number} resumed from "
                                    f"{seq} while {newest_ok} was the newest verified checkpoint")
        self.facts.resumes.append((task, inst.request.attempt_number, at, seq, p))
        written = self._newest_saved.get(storage.uri, 0.0)
        if written > p:  # a newer save was damaged: its work is done again
            job = inst.request.job_id
            self.redone[job] = self.redone.get(job, 0.0) + (written - p) * max(1.0, inst.request.estimated_hours * 3600)
        inst.resumed_from, inst.progress, inst.newest_seq = p, p, seq
        inst.next_ckpt = at + self.ckpt_every_s

    def _newest_verified(self, storage: MemStorage) -> int | None:
        _, complete = scan(storage)
        damaged = self._damaged.get(storage.uri, set())
        good = [s for s in complete if s not in damaged]
        return max(good, default=None)

    def _save(self, inst: SimInstance, at: float, progress: float) -> None:
        assert inst.ckpt is not None
        self._time = at
        task = inst.request.task_id
        for other_task, number, when, _seq, _p in self.facts.resumes:
            if other_task == task and number > inst.request.attempt_number and when <= at:
                self.facts.stale.append(f"task {task}: attempt {inst.request.attempt_number} saved at {at:.0f} "
                                        f"after attempt {number} had resumed at {when:.0f}")
                break
        m = inst.ckpt.save({"state.txt": f"{progress:.9f}".encode()}, progress=progress)
        inst.newest_seq, inst.progress = m.seq, progress
        uri = inst.request.checkpoint_uri
        self._newest_saved[uri] = max(progress, self._newest_saved.get(uri, 0.0))
        self.facts.writes.append((task, inst.request.attempt_number, at, m.seq))
        if self.p_corrupt and inst.rng.random() < self.p_corrupt:
            self.corrupt(inst.request.checkpoint_uri, m.seq)

    def corrupt(self, uri: str, seq: int | None = None, *, missing: bool = False) -> None:
        """Damage a checkpoint's data, or lose it (`missing`), the newest when `seq` is None: the SDK must
        skip it on load and resume from the one before."""
        storage = self.storage(uri)
        _, complete = scan(storage)
        if not complete:
            return
        seq = complete[-1] if seq is None else seq
        keys = [k for k in storage.objects if k.startswith(checkpoint_prefix(seq)) and not k.endswith(MANIFEST_NAME)]
        for k in keys:
            if missing:
                del storage.objects[k]
            else:
                storage.objects[k] = b"damaged"
        if keys:
            self._damaged.setdefault(uri, set()).add(seq)

    def _heartbeat(self, inst: SimInstance, at: float, exit_code: int | None = None) -> None:
        hb = Heartbeat(attempt=inst.request.attempt_number, at=at, progress=self._progress_at(inst, at),
                       newest_checkpoint=inst.newest_seq, exit_code=exit_code, interrupted=inst.interrupted)
        write_heartbeat(self.storage(inst.request.checkpoint_uri), hb)

    def _work_items(self, inst: SimInstance, at: float) -> None:
        """A campaign worker's item loop at `at`: commit the item in hand, lease the next; exit 0 on none."""
        r = inst.request
        if inst.held is not None:
            if self.items.complete(r.job_id, r.attempt_id, inst.held, now=at, result='"ok"',
                                   work_seconds=self.item_seconds[r.job_id]):
                key = (r.job_id, inst.held.index)
                self.facts.commits[key] = self.facts.commits.get(key, 0) + 1
            inst.held = None
        while True:
            got = self.items.lease(r.job_id, r.attempt_id, 1, now=at, lease_seconds=LEASE_SECONDS)
            if not got:
                self._end(inst, at, EndReason.EXITED, 0)
                return
            if self.items.start(r.job_id, r.attempt_id, got[0], now=at):
                inst.held, inst.held_until = got[0], at + self.item_seconds[r.job_id]
                return

    def _end(self, inst: SimInstance, at: float, reason: EndReason, exit_code: int | None) -> None:
        if inst.ended_at is not None:
            return
        inst.ended_at, inst.reason, inst.exit_code = at, reason, exit_code
        if inst.ckpt is not None:
            inst.ckpt.close()
        if not inst.rank:
            self.facts.working.get(inst.request.task_id, set()).discard(inst.request.attempt_id)

    def _view(self, inst: SimInstance, now: float) -> Instance:
        k = self.kind
        assert k is not None
        r = inst.request
        return Instance(provider=self.name, region=inst.zone.region, zone=inst.zone.name,
                        instance_id=inst.instance_id, instance_type=k.name, market=inst.market,
                        state=InstanceState.RUNNING if inst.alive else InstanceState.TERMINATED,
                        attempt_id=r.attempt_id, job_id=r.job_id, task_id=r.task_id, launched_at=inst.launched_at,
                        ended_at=inst.ended_at, exit_code=inst.exit_code, reason=inst.reason, node_rank=inst.rank)


def _inside(windows: Sequence[tuple[float, float]], at: float) -> bool:
    return any(s <= at < e for s, e in windows)
