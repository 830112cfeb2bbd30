"""The tick's one listing of every provider, each instance matched to its live attempt or to the
orphans, and when each live attempt's instance was last listed (a listing that misses it is believed
only after the grace has passed since then: `core.live.read_listing`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from orchestrator.core.plan.job import stop_orphan
from orchestrator.loop.executor import Executor
from orchestrator.loop.ledger import reaped
from orchestrator.loop.observation import Observation
from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.store import Store
from providers.base import Provider
from vocab import Clock, Instance, Notice, ProviderError

log = logging.getLogger("orch.reconciler")


def _listing(provider: Provider) -> tuple[list[Instance], list[Notice]]:
    return provider.instances(), provider.notices()


@dataclass
class Listings:
    born: float  # a controller that just started gives every attempt a full grace
    last_seen: dict[str, float] = field(default_factory=dict)

    def list(self, executor: Executor, providers: Mapping[str, Provider]) -> Observation:
        """List every provider at once (each call bounded by the executor): a slow cloud delays the tick by
        its own timeout, not by the sum of all of them. `match` then tells attempts from orphans."""
        obs = Observation()
        futures = {name: executor.submit(partial(_listing, provider)) for name, provider in providers.items()}
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

    def match(self, obs: Observation, snapshots: Mapping[str, JobSnapshot], store: Store, now: float) -> Observation:
        """Each listed instance to its live attempt, or to the orphans.

        The held jobs' live attempts are in their snapshots, read (or known unchanged) after the
        listing; the store is asked only about instances they do not explain (other controllers'
        jobs, orphans). An attempt row is committed before its launch, so an instance another process
        launches meanwhile can never look like an orphan here.
        """
        nodes = {a.id: a.nodes for snap in snapshots.values() for t in snap.tasks for a in snap.attempts_of(t.id)
                 if a.live}
        live = set(nodes)
        unknown = [i.attempt_id for _, i in obs.seen if i.attempt_id is not None and i.attempt_id not in live]
        if unknown:
            live |= store.live_among(unknown)
        if len(self.last_seen) > 2 * len(live) + 1000:
            self.last_seen = {k: v for k, v in self.last_seen.items() if k in live}
        gangs: list[str] = []
        for name, inst in obs.seen:
            aid = inst.attempt_id
            if aid is not None and aid in live:
                if inst.node_rank > 0:  # a gang's node: its head stands for the attempt
                    obs.members.setdefault(aid, []).append(inst)
                    continue
                obs.instances[aid] = inst
                if nodes.get(aid, 1) > 1:
                    gangs.append(aid)
                else:
                    self.last_seen[aid] = now
            elif inst.alive:
                obs.orphans.append((name, inst))
        for aid in gangs:  # a gang counts as seen only whole: one node missing runs out its grace (G2)
            members = obs.members.get(aid, [])
            members.sort(key=lambda i: i.node_rank)
            if len(members) >= nodes[aid] - 1:
                self.last_seen[aid] = now
        return obs

    def seen_since(self, attempt_id: str, started: float) -> float:
        """Since when a live attempt's instance may be missing from the listing (`live.read_listing`)."""
        return max(started, self.last_seen.get(attempt_id, self.born))


def reap(store: Store, providers: Mapping[str, Provider], obs: Observation, clock: Clock) -> None:
    """Stop the listed instances no live attempt explains whose attempt this store has ended
    (`core.plan.job.stop_orphan` says which), and bill their attempts to then (`ledger.reaped`)."""
    now = clock.now()
    for name, inst in obs.orphans:
        attempt = store.attempt(inst.attempt_id) if inst.attempt_id else None
        if attempt is None or not stop_orphan(attempt, now):
            continue
        try:
            providers[name].terminate(inst)
        except ProviderError as exc:
            log.warning("could not terminate orphan %s: %s", inst.instance_id, exc)
            continue
        log.info("terminated orphan instance %s (attempt %s)", inst.instance_id, inst.attempt_id)
        reaped(store, attempt, inst.instance_id, now)
        if inst.job_id and store.job(inst.job_id):
            store.add_event(inst.job_id, "orphan_terminated", f"terminated {inst.instance_id}: no live attempt owns it",
                            clock.now(), attempt_id=inst.attempt_id)
