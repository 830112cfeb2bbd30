"""The invariants of the deterministic simulation harness, checked after every tick and at the end.

- two_live_instances: never two instances doing one task's work at once.
- leak: an instance (every node of a gang) whose attempt the store has ended (and that is not draining
  its notice) is gone within 3 ticks; at the end nothing is alive but the instances of live attempts (a
  job without a deadline may still wait out a long spot outage at the horizon).
- ledger: each attempt's recorded cost equals the world's bill for its instances (every node of a gang),
  to the cent (0 for a launch that made none).
- budget: a job's recorded spend never passes its budget, but for what its instances cost while the
  harness held every controller back (no tick could stop them).
- deadline: a job with a deadline finishes by it, unless on-demand was out, or the harness held the
  controller back, or damaged checkpoints made it do saved work again, for more than one restart
  overhead of its life, or its budget cannot pay for on-demand.
- items: every campaign item is committed exactly once and listed once in the results.
- stale_resume: no attempt resumes from older than the newest verified checkpoint, nor does an
  earlier attempt write one after a later attempt resumed.
- stuck: every job with a deadline, or on on-demand, reaches a final state (unless its budget cannot
  pay for on-demand: it may wait for spot).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench._dst_world import World
from orchestrator.core.cost import attempt_cost
from orchestrator.core.model import AttemptView
from orchestrator.store import Store
from orchestrator.store.items import ItemStore

INVARIANTS = ("two_live_instances", "leak", "ledger", "budget", "deadline", "items", "stale_resume", "stuck")
LEAK_TICKS = 3
CENT = 0.005


@dataclass
class State:
    plans: Mapping[str, Any]
    orphan_ticks: dict[str, int] = field(default_factory=dict)  # attempt id -> ticks alive after its end
    stale_seen: int = 0
    excused: dict[str, list[str]] = field(default_factory=dict)  # by invariant: what the harness excuses


def _add(violations: dict[str, list[str]], name: str, message: str) -> None:
    found = violations.setdefault(name, [])
    if message not in found:
        found.append(message)


def trace_line(n: int, now: float, store: Store, world: World) -> str:
    """One tick, as the replay compares it: the tasks' states, the attempts', the live instances."""
    parts = [f"{n} t={now:.0f}"]
    for job in store.jobs():
        tasks = store.tasks(job.id)
        parts.append(job.id[-4:] + ":" + ",".join(t.state.value[:4] for t in tasks))
        attempts = store.attempts(job.id)
        parts.append("[" + ",".join(f"{a.id[-4:]}{a.state.value[:3]}{a.market.value[:2]}" for a in attempts) + "]")
    alive = sorted(i.instance_id for i in world.all_nodes() if i.alive)
    parts.append("alive=" + ",".join(alive))
    return " ".join(parts)


def all_final(store: Store) -> bool:
    return all(j.finished_at is not None for j in store.jobs())


def after_tick(state: State, store: Store, world: World, now: float, violations: dict[str, list[str]]) -> None:
    for task, working in world.facts.working.items():
        if len(working) > 1:
            _add(violations, "two_live_instances", f"task {task}: attempts {sorted(working)} at work at {now:.0f}")
    ended = {a.id: a for job in store.jobs() for a in store.attempts(job.id) if not a.live}
    for inst in world.all_nodes():
        aid, iid = inst.request.attempt_id, inst.instance_id
        a = ended.get(aid)
        if not inst.alive or a is None or (a.ended_at is not None and a.ended_at > now):
            state.orphan_ticks.pop(iid, None)
            continue
        state.orphan_ticks[iid] = state.orphan_ticks.get(iid, 0) + 1
        if state.orphan_ticks[iid] > LEAK_TICKS:
            _add(violations, "leak", f"{inst.instance_id} (attempt {aid}) alive {LEAK_TICKS}+ ticks after its "
                                     f"attempt ended ({a.outcome})")
    for message in world.facts.stale[state.stale_seen:]:
        _add(violations, "stale_resume", message)
    state.stale_seen = len(world.facts.stale)


def at_end(state: State, store: Store, world: World, items: ItemStore, now: float,
           violations: dict[str, list[str]]) -> None:
    live = {a.id for job in store.jobs() for a in store.attempts(job.id) if a.live}
    for inst in world.all_nodes():
        if inst.alive and inst.request.attempt_id not in live:  # a live attempt's: its job still runs (`stuck`)
            _add(violations, "leak", f"{inst.instance_id} (attempt {inst.request.attempt_id}) alive at the end "
                                     "with no live attempt")
    for job in store.jobs():
        plan = state.plans[job.id]
        attempts = store.attempts(job.id)
        spent = sum(attempt_cost(a, now) for a in attempts)
        for a in attempts:
            _ledger(a, world, now, violations)
        if job.budget_usd is not None and spent > job.budget_usd + CENT:
            paused = _paused_spend(world, {a.id for a in attempts}, now)
            if spent - paused > job.budget_usd + CENT:
                _add(violations, "budget", f"job {job.id} spent {spent:.4f} of a {job.budget_usd:.2f} budget "
                                           f"({paused:.4f} of it while the controller was held)")
            else:
                state.excused.setdefault("budget", []).append(
                    f"job {job.id} ({plan.name}) over budget by {spent - job.budget_usd:.4f}, spent while the "
                    f"controller was held ({paused:.4f})")
        tasks = store.tasks(job.id)
        done_at = job.finished_at
        succeeded = bool(tasks) and all(t.state.value == "succeeded" for t in tasks)
        # Whether the budget pays for the whole job on on-demand, with two restarts and a fifth more for what
        # spot may have spent or lost first; otherwise orch rightly waits for spot, whatever the deadline.
        sched = job.spec.schedule
        on_demand_usd = (sched.estimated_hours + 2 * sched.restart_overhead_hours) * 1.2 * max(
            z.on_demand_price for z in world.zones.values()) * job.spec.gang.nodes
        affordable = job.budget_usd is None or job.budget_usd >= on_demand_usd
        on_time = succeeded and done_at is not None and job.deadline_at is not None and done_at <= job.deadline_at
        if affordable and job.deadline_at is not None and not on_time:
            over_budget = any(t.state.value == "budget_exceeded" for t in tasks)
            blocked = _blocked_s(world, job, plan)
            # The policy keeps two restart overheads in hand once it must buy on-demand; time taken from it
            # beyond one of them (on-demand out, the controller held back) may make any deadline late.
            if not over_budget and blocked <= job.spec.schedule.restart_overhead_hours * 3600.0:
                _add(violations, "deadline", f"job {job.id} ({plan.name}) not done by its deadline "
                                             f"({'succeeded late' if succeeded else [t.state.value for t in tasks]}; "
                                             f"{blocked:.0f} s held back)")
            elif not over_budget:
                state.excused.setdefault("deadline", []).append(
                    f"job {job.id} ({plan.name}) late with {blocked:.0f} s held back")
        if job.finished_at is None and affordable and (job.deadline_at is not None
                                                        or job.spec.schedule.market == "on-demand"):
            _add(violations, "stuck", f"job {job.id} ({plan.name}) not final at the end: "
                                      f"{[t.state.value for t in tasks]}")
        if plan.items:
            _items(job.id, plan, world, items, succeeded, violations)


def _ledger(a: AttemptView, world: World, now: float, violations: dict[str, list[str]]) -> None:
    nodes = world.nodes(a.id)
    recorded = attempt_cost(a, now)
    if not nodes:
        if recorded > CENT:
            _add(violations, "ledger", f"attempt {a.id} recorded {recorded:.4f} with no instance made")
        return
    if any(n.ended_at is None for n in nodes) or a.live:
        return  # still running at the end: counted by `leak` or `stuck`
    bill = sum(n.bill() for n in nodes)
    if abs(recorded - bill) >= CENT:
        ends = ", ".join(f"{n.ended_at} ({n.reason})" for n in nodes)
        _add(violations, "ledger", f"attempt {a.id} ({a.outcome}, {a.market}, {len(nodes)} node(s)) recorded "
                                   f"{recorded:.4f}, billed {bill:.4f}: ended {a.ended_at} vs {ends}")


def _paused_spend(world: World, attempt_ids: set[str], now: float) -> float:
    """What the job's instances cost while the harness held every controller back: no tick could stop
    them then, so the budget guard (which prices one tick ahead) cannot answer for it."""
    usd = 0.0
    for inst in world.all_nodes():
        if inst.request.attempt_id not in attempt_ids:
            continue
        end = inst.ended_at if inst.ended_at is not None else now
        for at, sec, paused in world.holds:
            if paused:
                usd += inst.price * max(0.0, min(end, at + sec) - max(inst.launched_at, at)) / 3600.0
    return usd


def _blocked_s(world: World, job: Any, plan: Any) -> float:
    """How long on-demand capacity was out in the job's zones during its life (a deadline may then be
    infeasible), plus the time the harness held the controller back and the saved work it had to do again
    because its newest checkpoints were damaged (no policy sees that coming)."""
    end = job.deadline_at or job.created_at
    blocked = 0.0
    regions = set(job.spec.placement.regions)
    for z in world.zones.values():
        if regions and z.region not in regions:
            continue
        for s, e in z.on_demand_outages:
            blocked += max(0.0, min(e, end) - max(s, job.created_at))
    held = sum(sec for at, sec, _ in world.holds if job.created_at <= at <= end)
    return blocked + held + world.redone.get(job.id, 0.0)


def _items(job_id: str, plan: Any, world: World, items: ItemStore, succeeded: bool,
           violations: dict[str, list[str]]) -> None:
    for (jid, index), n in world.facts.commits.items():
        if jid == job_id and n > 1:
            _add(violations, "items", f"job {job_id}: item {index} committed {n} times")
    listed = [r.index for r in items.results(job_id)]
    if len(listed) != len(set(listed)):
        _add(violations, "items", f"job {job_id}: an item listed twice in the results")
    if succeeded:
        counts = items.counts(job_id)
        if counts.done + counts.quarantined != counts.total or len(listed) != counts.done:
            _add(violations, "items", f"job {job_id} succeeded with {counts.done} done, {counts.quarantined} "
                                      f"quarantined of {counts.total}, {len(listed)} results")
