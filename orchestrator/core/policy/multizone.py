"""Multi-zone market policies: market and zone each tick, among the task's allowed zones.

- `uniform-progress` (multi-zone): Uniform Progress on "spot somewhere", launching spot in the first
  allowed zone (in the order given) not seen unavailable this tick, failing over zone by zone; on-demand
  where the checkpoint is. SkyNomad's artifact, `multi_region_rc_cr_threshold` (arXiv 2601.06520).
- `eager-failover`: the same, but after a reclamation the zones of the region that reclaimed the task
  go last (SkyPilot's EAGER_NEXT_REGION; the artifact's `multi_region_rc_cr_threshold_eager_failover`).
- `auto` (the multi-zone default): `orchestrator.core.policy.auto`'s planned market choice on "spot
  somewhere", a productive spot instance kept where it is, and spot launched in the zone most likely to
  keep it for the fewest moves (`rank`). The safety net of `simple.safety_net` is checked first on
  every call, so a deadline feasible on on-demand at submission is never missed.

Every rule here is a pure function of `MultiSituation` (`multizone_base`); the caller asks again
after a failed launch, so "try the next zone" is the caller's loop and the rule stays stateless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from orchestrator.core.policy.auto import MIN_PLANNED_STEPS, auto
from orchestrator.core.policy.base import Choice, Policy, SpotHistory
from orchestrator.core.policy.market_model import STEP_H
from orchestrator.core.policy.multizone_base import MultiPolicy, MultiSituation, Placement
from orchestrator.core.policy.multizone_plan import VALUES, ValuePlans, zone_cell
from orchestrator.core.policy.simple import past_point_of_no_return, safety_net, uniform_progress
from vocab import Market

_MULTI: dict[str, MultiPolicy] = {}

# Zone ranking (`rank`). A zone's availability share is smoothed toward PRIOR with this many hours
# of pseudo-observation, so that one lucky launch does not make a zone look reliable.
PRIOR, PRIOR_WEIGHT_H = 0.5, 2.0
# Hours of an unbroken availability run that count as much as a perfect share: long runs predict long
# runs (the run lengths of the public traces are heavy-tailed), up to about a day.
RUN_SCALE_H, RUN_CAP_H = 6.0, 24.0
# Spot-price hours of move cost (egress + transfer time at on-demand price) that weigh as much as a
# perfect share: an intercontinental move (4.1) must buy a much steadier zone than a continental one (1.0).
FEE_SCALE = 4.0
# Each other allowed zone of the same region (up to two) adds this: a later reclamation can fail over
# there without a move.
SIBLING_BONUS = 0.1
# A zone that reclaimed this task within this many hours is tried after the others.
RECENT_LOSS_H = 2.0
# Leave a flaky home region for spot elsewhere when, after at least MIN_LOSSES reclamations there,
# the restarts its loss rate predicts for the rest of the work cost FLAKY_MARGIN times the move.
MIN_LOSSES, FLAKY_MARGIN = 4, 3.0
# Idle with no spot in the checkpoint's region but spot elsewhere, for a task too short for the plan
# (`auto.MIN_PLANNED_STEPS`): wait this long for the region to come back before paying a move (most
# outages of the public traces last one or two probes). Longer tasks weigh the move (`_move_pays`).
WAIT_FOR_HOME_H = 1.0
# A move must beat staying by this many spot-price hours (`_move_pays`): the lookahead values each
# zone as if the task stayed there for good, so it misses that staying keeps the option to move later.
# Chosen on the early windows only (0, 0.5, 1, 2, 3, 4, 6 compared with and without 24 h of memory:
# mean normalised cost 0.3648, 0.3649, 0.3651, 0.3643, 0.3643, 0.3644, 0.3649 alone; 0.3646, 0.3639,
# 0.3635, 0.3625, 0.3621, 0.3620, 0.3618 with memory; alone, 6 leaves one row above the baselines).
# Rechecked with the lookahead's coarse table and `_home_history`: 2, 3, 4 gave 0.3643, 0.3639, 0.3642.
MOVE_MARGIN = 3.0


def register_multi(name: str) -> Callable[[MultiPolicy], MultiPolicy]:
    def add(fn: MultiPolicy) -> MultiPolicy:
        if name in _MULTI:
            raise ValueError(f"multi-zone policy {name!r} is already registered")
        _MULTI[name] = fn
        return fn

    return add


def get_multi_policy(name: str) -> MultiPolicy:
    try:
        return _MULTI[name]
    except KeyError:
        raise KeyError(f"no multi-zone policy named {name!r}; known: {', '.join(sorted(_MULTI))}") from None


def multi_policy_names() -> list[str]:
    return sorted(_MULTI)


def spread(market: Policy, order: Callable[[MultiSituation], list[int]]) -> MultiPolicy:
    """A multi-zone policy from a market policy and a zone order: the market policy sees "spot
    somewhere" (some zone not seen unavailable this tick); spot stays where it runs, else launches
    in the first zone of `order`; on-demand runs where the checkpoint is."""

    def decide(m: MultiSituation) -> Placement:
        choice = market(m.task)
        if choice is Choice.SPOT:
            if m.task.current is Market.SPOT and m.zone is not None and m.seen[m.zone].now:
                return Placement(Choice.SPOT, m.zone)
            zones = order(m)
            return Placement(Choice.SPOT, zones[0]) if zones else Placement(Choice.WAIT)
        if choice is Choice.ON_DEMAND:
            return Placement(Choice.ON_DEMAND, m.home if m.home is not None else 0)
        return Placement(Choice.WAIT)

    return decide


def in_given_order(m: MultiSituation) -> list[int]:
    """The allowed zones in the order the job lists them (the artifact's region order)."""
    return m.candidates()


def eager_order(m: MultiSituation) -> list[int]:
    """Zones of the region that last reclaimed the task go last (SkyPilot's EAGER_NEXT_REGION)."""
    losses = [(s.lost_at_h, z) for z, s in enumerate(m.seen) if s.lost_at_h is not None]
    if not losses:
        return m.candidates()
    region = m.zones[max(losses)[1]].region
    return sorted(m.candidates(), key=lambda z: m.zones[z].region == region)


def rank(m: MultiSituation, zones: list[int]) -> list[int]:
    """`zones` by how long spot there is likely to last for what the move costs (best first).

    Score: the zone's smoothed availability share, plus the length of its current unbroken run (a
    long run predicts a long run), plus a little per other allowed zone of its region (a later
    reclamation fails over there without a move), minus the move's egress and transfer time (at
    on-demand price) over `FEE_SCALE`; a zone that reclaimed this task in the last `RECENT_LOSS_H`
    goes last. Ties keep the job's order.
    """
    now, k = m.task.elapsed_h, m.task.price_ratio
    siblings = {z: sum(1 for o in m.zones if o.region == m.zones[z].region) - 1 for z in zones}

    def score(z: int) -> tuple[bool, float]:
        s = m.seen[z]
        recent_loss = s.lost_at_h is not None and now - s.lost_at_h <= RECENT_LOSS_H
        value = s.fraction(PRIOR, PRIOR_WEIGHT_H) + min(s.up_run_h, RUN_CAP_H) / RUN_SCALE_H
        value += SIBLING_BONUS * min(siblings[z], 2)
        move = m.moves.fee(m.home, z) + m.moves.transfer(m.home, z) * k
        return recent_loss, -(value - move / FEE_SCALE)

    return sorted(zones, key=score)


def make_zone_auto(market: Policy = auto, values: ValuePlans = VALUES) -> MultiPolicy:
    """The multi-zone default over a given single-zone `auto` rule and its value plans: the shipped
    pair, or one built on a model fitted for a test or a leave-one-dataset-out fold."""

    def decide(m: MultiSituation) -> Placement:
        return _zone_auto(m, market, values)

    return decide


def _zone_auto(m: MultiSituation, auto: Policy, values: ValuePlans) -> Placement:
    """orch's multi-zone default (see the module doc and docs/policy.md, "Several zones").

    Market: the safety net and the 2d rule on "spot somewhere"; a productive spot instance is kept;
    otherwise `auto`'s planned choice on spot *in the checkpoint's region*, where a launch costs d
    only, with that region's own run and share as the plan's history (`_home_history`). Zone: spot
    in the best zone of that region if the plan takes spot; if the plan would wait or go on-demand
    while spot is up in another region, move there when the move's fee plus the
    plan's expected cost from there is below the plan's expected cost of staying (`_move_pays`).
    Leaving a productive on-demand instance for spot elsewhere follows the plan on "spot somewhere".
    """
    s = m.task
    if s.deadline_h is None or s.finished:
        return _spot_only(m)
    net = safety_net(s)
    if net is Choice.SPOT:  # a productive spot instance, kept; or d = 0, where launching is free
        return Placement(Choice.SPOT, m.zone if m.zone is not None else rank(m, m.candidates())[0])
    if net is Choice.ON_DEMAND or (s.current is not Market.SPOT and past_point_of_no_return(s, 2)):
        return _on_demand(m)
    if s.current is Market.SPOT and m.zone is not None and m.seen[m.zone].now:
        return Placement(Choice.SPOT, m.zone)
    candidates = m.candidates()
    home = None if m.home is None else m.zones[m.home].region
    local = [z for z in candidates if home is None or m.zones[z].region == home]
    remote = [z for z in candidates if z not in local]
    choice = auto(replace(s, spot_available=bool(local), history=_home_history(m, local)))
    if choice is Choice.SPOT:
        if remote and _flaky_home(m, home, remote):
            return Placement(Choice.SPOT, rank(m, remote)[0])
        return Placement(Choice.SPOT, rank(m, local)[0])
    if remote:
        if s.current is Market.ON_DEMAND:
            if auto(s) is Choice.SPOT:
                return Placement(Choice.SPOT, rank(m, remote)[0])
        elif s.deadline_h < MIN_PLANNED_STEPS * STEP_H or s.work_h < STEP_H:  # below the plan's resolution
            if choice is Choice.ON_DEMAND or _home_out_h(m, home) >= WAIT_FOR_HOME_H:
                return Placement(Choice.SPOT, rank(m, remote)[0])
        elif _move_pays(m, home, rank(m, remote)[0], values):
            return Placement(Choice.SPOT, rank(m, remote)[0])
    return _on_demand(m) if choice is Choice.ON_DEMAND else Placement(Choice.WAIT)


def _move_pays(m: MultiSituation, home: str | None, z: int, values: ValuePlans) -> bool:
    """Idle with no spot in the checkpoint's region: is moving to zone `z` cheaper than staying?

    A one-step lookahead on the plan's expected costs (`multizone_plan`): staying costs what the plan
    expects from idle in the home region's outage (its age: since the region was last seen up); the
    move costs its egress fee plus what the plan expects from launching spot in `z`, with the copy's
    transfer time taken from the slack and `z` as seen (the age of its run if watched, else a fresh
    one; its smoothed share as its recent availability), and must beat staying by `MOVE_MARGIN`. The
    waits of slack are so priced by what they cost later on on-demand, instead of by a fixed patience.
    """
    s = m.task
    plan = values.for_situation(s)
    recent = s.history.recent_available if s.history is not None else None
    _, stay = plan.idle(s, zone_cell(False, _home_out_h(m, home), recent))
    seen = m.seen[z]
    run_h = seen.up_run_h + s.tick_h if seen.now else s.tick_h
    act, go = plan.idle(s, zone_cell(True, run_h, seen.fraction(PRIOR, PRIOR_WEIGHT_H)), m.moves.transfer(m.home, z))
    return act is Choice.SPOT and go + m.moves.fee(m.home, z) + MOVE_MARGIN < stay


def _flaky_home(m: MultiSituation, region: str | None, remote: list[int]) -> bool:
    """Do the reclamations seen in the checkpoint's region predict restarts that cost more than a move?

    Loss rate = reclamations of this task in the region / hours it was seen available there; the
    rest of the work then expects `rate x work left` restarts of d plus a tick each. The cheapest
    move elsewhere must cost less than 1/`FLAKY_MARGIN` of that, and `MIN_LOSSES` are needed first:
    on the public traces staying put is usually right, and a few losses say little.
    """
    zones = [z for z in range(len(m.zones)) if m.zones[z].region == region]
    losses = sum(m.seen[z].losses for z in zones)
    up_h = sum(m.seen[z].up_h for z in zones)
    if losses < MIN_LOSSES or up_h <= 0:
        return False
    s = m.task
    restarts = losses / up_h * s.remaining_work_h * (s.overhead_h + s.tick_h)
    move = min(m.moves.fee(m.home, z) + m.moves.transfer(m.home, z) * s.price_ratio for z in remote)
    return restarts > FLAKY_MARGIN * move


def _home_history(m: MultiSituation, local: list[int]) -> SpotHistory | None:
    """The history the plan is asked with about spot in the checkpoint's region: its own run, not spot's
    anywhere.

    The task's "spot somewhere" history stays in one available run while any zone is up or unseen, so
    after a reclamation at home it tells the plan that spot has been up for hours, and the plan
    relaunches at once in a zone that flickers (each launch spends d of slack for a probe's work). So
    when every local zone was looked at in the last tick, the run is the region's own: the longest
    unbroken run seen among them, counting this tick (a zone seen down last tick starts a fresh run of
    one tick, whose hazard the model knows to be high), and recent availability is the best-ranked
    local zone's smoothed share. A zone not looked at last tick leaves the history as it was. (Chosen
    on the early windows, against the region's run alone and the history as it was: mean normalised
    cost 0.3639, 0.3640, 0.3641.)
    """
    h = m.task.history
    if h is None or not local:
        return h
    tick, now = m.task.tick_h, m.task.elapsed_h
    runs = []
    for z in local:
        seen = m.seen[z]
        if seen.now is True:
            runs.append(seen.up_run_h + tick)
        elif seen.last_seen_h is not None and seen.last_seen_h >= now - tick - 1e-9:
            runs.append(seen.up_run_h + tick if seen.last_up_h == seen.last_seen_h else tick)
        else:
            return h
    share = m.seen[rank(m, local)[0]].fraction(PRIOR, PRIOR_WEIGHT_H)
    return replace(h, in_available_run=True, current_run_h=max(runs), recent_available=share)


def _home_out_h(m: MultiSituation, region: str | None) -> float:
    """How long no zone of the checkpoint's region has been seen available (0 before any launch)."""
    if region is None:
        return 0.0
    ups = [s.last_up_h for z, s in enumerate(m.seen) if m.zones[z].region == region and s.last_up_h is not None]
    return m.task.elapsed_h - max(ups) if ups else m.task.elapsed_h


def _on_demand(m: MultiSituation) -> Placement:
    return Placement(Choice.ON_DEMAND, m.home if m.home is not None else 0)


def _spot_only(m: MultiSituation) -> Placement:
    if m.task.finished:
        return Placement(Choice.WAIT)
    if m.task.current is Market.SPOT and m.zone is not None and m.seen[m.zone].now:
        return Placement(Choice.SPOT, m.zone)
    zones = rank(m, m.candidates())
    return Placement(Choice.SPOT, zones[0]) if zones else Placement(Choice.WAIT)


register_multi("uniform-progress")(spread(uniform_progress, in_given_order))
register_multi("eager-failover")(spread(uniform_progress, eager_order))
zone_auto = register_multi("auto")(make_zone_auto())
