"""One task's view of its zones for the multi-zone policy, across the calls of one step.

The pure rules are in `orchestrator.core.policy.multizone_live` (the same calling sequence that
`tests/test_multizone_live.py` drives and `bench/policy.py --multi` measures); this gathers the loop's
observations for them: the task's running or just-reclaimed instance, the shared capacity memory's
refusals, the providers' availability flags. Zones are observed once per step, however often the
step asks the policy, and the observation is folded into the task's memory when the step ends.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from orchestrator.core.model import AttemptView, Outcome, TaskView
from orchestrator.core.policy import Situation
from orchestrator.core.policy.multizone import get_multi_policy, multi_policy_names
from orchestrator.core.policy.multizone_base import Placement, Zone, ZoneSeen
from orchestrator.core.policy.multizone_live import end_tick, observe, zones_of
from orchestrator.core.policy.multizone_live import situation as zone_situation
from orchestrator.loop.snapshot import JobSnapshot
from providers.base import Market, Offer

if TYPE_CHECKING:
    from orchestrator.loop.reconciler import Reconciler


class ZoneView:
    def __init__(self, r: Reconciler, snap: JobSnapshot, task: TaskView) -> None:
        self.r, self.snap, self.task_id = r, snap, task.id
        self._zones: tuple[Zone, ...] = ()
        self._seen: tuple[ZoneSeen, ...] | None = None

    def placement(self, task: Situation, live: AttemptView | None,
                  offers: list[Offer]) -> tuple[Placement | None, str | None, str | None]:
        """The multi-zone policy's (placement, its zone, the checkpoint's region) when the job may run spot
        in several zones and its policy has a multi-zone form (`multi_policy_names`); all None otherwise,
        and the single-zone policy decides as before."""
        job, now = self.snap.job, self.r.clock.now()
        zones = zones_of(offers)
        if len(zones) < 2 or job.spec.policy_name not in multi_policy_names():
            return None, None, None
        mine = self.snap.attempts_of(self.task_id)
        home = mine[-1].zone if mine else None  # where the newest attempt ran: the checkpoint's zone
        names, seen, history = self.r.zone_memory.get(self.task_id, ((), (), None))
        if self._seen is None or self._zones != zones:
            if names != tuple(z.name for z in zones):
                seen = tuple(ZoneSeen() for _ in zones)
            newest = mine[-1] if mine else None
            reclaimed = (newest.zone if newest is not None and newest.outcome is Outcome.PREEMPTED
                         and newest.ended_at is not None and now - newest.ended_at <= self.r.tick_seconds else None)
            refused = {o.zone for o in offers if o.market is Market.SPOT and o.zone is not None
                       and self.r.capacity.avoided(o.key, now)}
            running = live.zone if live is not None and live.market is Market.SPOT else None
            self._zones = zones
            self._seen = observe(zones, seen, offers, at_h=(now - job.created_at) / 3600.0, reclaimed_zone=reclaimed,
                                 running_zone=running, capacity_errors=refused)
        m = zone_situation(dataclasses.replace(task, history=history), zones, self._seen,
                           zone=live.zone if live is not None else None, home=home)
        chosen = get_multi_policy(job.spec.policy_name)(m)
        zone = zones[chosen.zone].name if chosen.zone is not None else None
        return chosen, zone, next((z.region for z in zones if z.name == home), None)

    def close_tick(self) -> None:
        """Fold this step's observations into the task's memory (once per tick)."""
        if self._seen is None:
            return
        job = self.snap.job
        _, _, history = self.r.zone_memory.get(self.task_id, ((), (), None))
        seen, history = end_tick(self._seen, history, (self.r.clock.now() - job.created_at) / 3600.0,
                                 self.r.tick_seconds / 3600.0)
        self.r.zone_memory[self.task_id] = (tuple(z.name for z in self._zones), seen, history)
