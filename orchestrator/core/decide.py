"""Decide, per task and per tick, what should happen next: a pure function of what was observed.

`judge_ended` turns an ended instance into an attempt outcome and task transitions; `choose`
turns the policy's market choice, the offers and the budget into an action. The reconciler applies
the result; nothing here touches the store, a provider or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from orchestrator.core.cost import gang_hourly, hourly_price
from orchestrator.core.model import LOST, AttemptView, Outcome, TaskView, Transition
from orchestrator.core.placement import markets_allowed, usable
from orchestrator.core.policy import Choice, Situation, get_policy
from orchestrator.core.policy.multizone_base import Placement
from orchestrator.core.reasons import market_reason, switch_reason
from orchestrator.core.spec import JobSpec
from vocab import EndReason, Instance, Market, NoticeKind, Offer

# Exit statuses of a job stopped by a signal (143 = 128 + SIGTERM, the SDK's; 137 = SIGKILL after the grace).
CANCEL_EXIT_CODES = frozenset({130, 137, 143})


@dataclass(frozen=True, slots=True)
class Verdict:
    """How an attempt ended and what that does to its task."""

    outcome: Outcome
    transitions: tuple[Transition, ...]
    message: str
    exit_code: int | None = None
    failures: int | None = None
    # Nothing ran (the instance never started the job): the attempt costs nothing.
    unbilled: bool = False


def judge_ended(spec: JobSpec, task: TaskView, attempt: AttemptView, inst: Instance | None,
                exit_code: int | None, *, cancel_requested: bool, interrupted: bool = False,
                items_left: int = 0) -> Verdict:
    """The outcome of an attempt whose instance is gone (`inst` None) or no longer alive.

    `items_left`: a campaign's items not done yet (see `Transition.IDLE`).

    `interrupted`: the agent forwarded an interruption notice before the job ended. A job that then
    exits non-zero (143 after saving, as the SDK advises) and shuts its instance down was reclaimed,
    not broken, whatever the provider reports about who stopped the machine.

    Exit status 0 is success whatever else happened: a job that finished inside its notice window,
    or whose instance was reclaimed after it exited, did its work (the SDK's jobs exit 143 after an
    interrupted save, never 0).
    """
    reason = inst.reason if inst else EndReason.LOST
    if exit_code is None and inst is not None:
        exit_code = inst.exit_code
    if exit_code == 0:
        if items_left > 0 and not cancel_requested:
            # A campaign worker stops when it finds nothing to lease, while other workers may still hold
            # items that come back if they are reclaimed: the slot waits for them instead of ending.
            return Verdict(Outcome.SUCCEEDED, (Transition.IDLE,),
                           f"worker {attempt.number} found no item to lease; {items_left} not done yet, held by "
                           "other workers: the slot waits in case they come back", 0)
        return Verdict(Outcome.SUCCEEDED, (Transition.SUCCEED,), f"attempt {attempt.number} succeeded", 0)
    verdict = _judge(spec, task, attempt, reason, exit_code, cancel_requested=cancel_requested,
                     interrupted=interrupted)
    if reason is EndReason.FAILED_TO_START and exit_code is None:
        # An image that cannot be pulled, a command that cannot be started, capacity gone at boot:
        # counted as a failure (so it cannot loop for ever) but never billed, since nothing ran.
        return replace(verdict, unbilled=True)
    return verdict


def _judge(spec: JobSpec, task: TaskView, attempt: AttemptView, reason: EndReason | None, exit_code: int | None,
           *, cancel_requested: bool, interrupted: bool) -> Verdict:
    if reason is EndReason.EXITED and interrupted and not cancel_requested:
        reason = EndReason.PREEMPTED
    if cancel_requested and reason in (EndReason.TERMINATED, EndReason.EXITED) and exit_code not in (None, 0) \
            and exit_code in CANCEL_EXIT_CODES:
        # Stopped because the user cancelled (SIGTERM, then the job saved and exited 143): not its failure.
        return Verdict(Outcome.CANCELLED, (Transition.CANCEL,), f"attempt {attempt.number} ended by cancellation")
    if reason is EndReason.PREEMPTED:
        return Verdict(Outcome.PREEMPTED, LOST,
                       f"attempt {attempt.number} preempted: {attempt.market} capacity reclaimed")
    ended = f"exited {exit_code}"
    if reason in (EndReason.FAILED_TO_START, EndReason.EXITED) and exit_code is None and not cancel_requested:
        # An instance that shut itself down without its agent saying how the job ended, or one that
        # never started the job: counted, so it cannot loop for ever.
        ended = "never started the job" if reason is EndReason.FAILED_TO_START else "ended without an exit status"
        exit_code = -1
    if reason in (EndReason.EXITED, EndReason.FAILED_TO_START) and exit_code is not None:
        if exit_code in spec.retry.recover_on_exit_codes:
            return Verdict(Outcome.FAILED, (Transition.RETRY,),
                           f"attempt {attempt.number} {ended} (recoverable): retrying", exit_code)
        failures = task.failures + 1
        if failures > spec.retry.max_failures:
            return Verdict(Outcome.FAILED, (Transition.FAIL,),
                           f"attempt {attempt.number} {ended}; {failures} failures, "
                           f"more than max_failures = {spec.retry.max_failures}", exit_code, failures)
        return Verdict(Outcome.FAILED, (Transition.RETRY,),
                       f"attempt {attempt.number} {ended}: failure {failures} of "
                       f"{spec.retry.max_failures} allowed, retrying", exit_code, failures)
    if cancel_requested:
        return Verdict(Outcome.CANCELLED, (Transition.CANCEL,),
                       f"attempt {attempt.number} ended by cancellation")
    # Terminated by someone else, vanished, or ended without an exit status: not the job's fault.
    return Verdict(Outcome.LOST, LOST,
                   f"attempt {attempt.number} lost ({reason}); the task is requeued")


@dataclass(frozen=True, slots=True)
class Wait:
    reason: str


@dataclass(frozen=True, slots=True)
class Launch:
    offers: tuple[Offer, ...]  # in order of preference; the reconciler tries them until one starts
    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    """End the live attempt: to switch market, to go idle, or to stay within budget."""

    outcome: Outcome
    transitions: tuple[Transition, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class OverBudget:
    reason: str


Action = Wait | Launch | Stop | OverBudget


@dataclass(frozen=True, slots=True)
class Context:
    spec: JobSpec
    situation: Situation
    live: AttemptView | None
    offers: Sequence[Offer]
    avoid: Mapping[str, float] = field(default_factory=dict)
    now: float = 0.0
    # Budget: what the job has spent so far, what its other tasks' remaining work will cost, and what
    # its other tasks' live attempts cost an hour (they spend in the same tick as this one).
    spent_usd: float = 0.0
    others_usd: float = 0.0
    others_hourly_usd: float = 0.0
    # A multi-zone policy's answer for this tick (`core.policy.multizone_live`): the market and, for
    # spot, the zone. `choose` then follows it instead of asking the single-zone policy, and offers are
    # narrowed to that zone (spot) or to the checkpoint's region (on-demand, `placement_region`).
    placement: Placement | None = None
    placement_zone: str | None = None
    placement_region: str | None = None


def _fits(ctx: Context, offer: Offer) -> bool:
    budget = ctx.spec.schedule.budget_usd
    if budget is None:
        return True
    s = ctx.situation
    need = (s.remaining_work_h + s.overhead_h) * gang_hourly(ctx.spec, offer.price_per_hour)
    return ctx.spent_usd + ctx.others_usd + need <= budget + 1e-9


def _finishing_choice(ctx: Context) -> Choice:
    """A pending task whose work is all committed (its last attempt ended after the final checkpoint).

    Every policy answers WAIT when nothing is left, but the task only succeeds through an attempt
    that exits 0: launch one on the cheapest allowed market; it resumes at 100% and exits.
    """
    allowed = markets_allowed(ctx.spec)
    if Market.SPOT in allowed and usable(ctx.offers, Market.SPOT, ctx.avoid, ctx.now):
        return Choice.SPOT
    return Choice.ON_DEMAND if Market.ON_DEMAND in allowed else Choice.WAIT


def choose(ctx: Context) -> Action:
    s = ctx.situation
    budget = ctx.spec.schedule.budget_usd
    # The budget is a cap: a live attempt is stopped when the next tick's cost would cross it, since the
    # loop cannot stop it between ticks (work that turned out longer than projected, after a reclamation
    # that lost a save, crossed a budget by 1.65 cents in the simulation harness, seed 874). The next
    # tick is the job's: its other tasks' live attempts spend in it too (seed 1037: two campaign workers,
    # each under the budget by its own tick, crossed it together by 2.3 cents).
    next_tick_usd = 0.0
    if ctx.live is not None:
        next_tick_usd = (hourly_price(ctx.live) + ctx.others_hourly_usd) * s.tick_h  # every node of a gang
    if budget is not None and ctx.spent_usd + next_tick_usd >= budget:
        if ctx.live is not None:
            return Stop(Outcome.BUDGET, (Transition.OVER_BUDGET,),
                        f"spent ${ctx.spent_usd:.2f} of ${budget:.2f}; the next tick would pass it")
        return OverBudget(f"spent ${ctx.spent_usd:.2f} of the ${budget:.2f} budget")
    if s.finished and ctx.live is not None:
        return Wait("all work is committed; waiting for the job to exit")
    if s.finished:
        choice = _finishing_choice(ctx)
    elif ctx.placement is not None:
        choice = ctx.placement.choice
        ctx = replace(ctx, offers=_in_placement(ctx, choice))
    else:
        choice = get_policy(ctx.spec.policy_name)(s)
    if ctx.live is not None:
        if choice.market is ctx.live.market and not _moves_zone(ctx, choice):
            return Wait(f"running on {ctx.live.market}")
        if choice.market is ctx.live.market:
            if not usable(ctx.offers, Market.SPOT, ctx.avoid, ctx.now):
                return Wait(f"policy wants spot in {ctx.placement_zone} but no offer there is usable; staying")
            return Stop(Outcome.SWITCHED, (Transition.SWITCH,),
                        f"policy: move spot from {ctx.live.zone} to {ctx.placement_zone}, where capacity is likelier")
        if choice is Choice.WAIT:
            return Stop(Outcome.SWITCHED, (Transition.SWITCH,), f"policy: {switch_reason(s, ctx.live.market, choice)}")
        target = usable(ctx.offers, Market(choice.value), ctx.avoid, ctx.now)
        if not target:
            return Wait(f"policy wants {choice} but no {choice} offer is usable; staying on {ctx.live.market}")
        # Moving to a dearer market must fit the budget; moving to a cheaper one only helps it.
        if target[0].price_per_hour > ctx.live.price_per_hour and not any(_fits(ctx, o) for o in target):
            return Wait(f"policy wants {choice} but it would break the budget; staying on {ctx.live.market}")
        return Stop(Outcome.SWITCHED, (Transition.SWITCH,), f"policy: {switch_reason(s, ctx.live.market, choice)}")
    if choice is Choice.WAIT:
        return Wait("policy: wait for spot capacity")
    offers = usable(ctx.offers, Market(choice.value), ctx.avoid, ctx.now)
    if not offers:
        return Wait(f"policy chose {choice}, but no {choice} offer is usable now")
    affordable = tuple(o for o in offers if _fits(ctx, o))
    if not affordable:
        spot = [o for o in ctx.offers if o.market is Market.SPOT and _fits(ctx, o)]
        if spot and choice is Choice.ON_DEMAND and ctx.spec.schedule.market != "on-demand":
            return Wait("on-demand would break the budget; waiting for spot")
        cheapest = offers[0]
        return OverBudget(
            f"the remaining work ({s.remaining_work_h:.2f} h + {s.overhead_h:.2f} h overhead) at "
            f"${gang_hourly(ctx.spec, cheapest.price_per_hour):.4f}/h would take the job past its ${budget:.2f} budget")
    return Launch(affordable, market_reason(s, choice, asked=ctx.spec.schedule.market))


def _in_placement(ctx: Context, choice: Choice) -> list[Offer]:
    """The offers that carry out a multi-zone placement: spot in its zone, on-demand in the checkpoint's
    region (anywhere before the first launch)."""
    if choice is Choice.SPOT:
        return [o for o in ctx.offers if o.market is Market.SPOT and o.zone == ctx.placement_zone]
    return [o for o in ctx.offers if o.market is not Market.SPOT
            and (ctx.placement_region is None or o.region == ctx.placement_region)]


def _moves_zone(ctx: Context, choice: Choice) -> bool:
    """A multi-zone placement that keeps spot but in another zone than the live attempt's: a move."""
    return (choice is Choice.SPOT and ctx.placement is not None and ctx.live is not None
            and ctx.placement_zone is not None and ctx.live.zone != ctx.placement_zone)


def replace_on_notice(ctx: Context, *, kind: NoticeKind, deadline: float | None) -> Launch | Wait:
    """An interruption notice for a running spot attempt: start its successor now, or let it run out.

    `ctx` sees the task as if the noticed attempt were already gone (`live` None, its offer avoided),
    which is what it will be at `deadline`. When the policy would then launch (spot elsewhere, or
    on-demand), the successor is launched at once, so its boot overlaps the old attempt's grace
    window; otherwise the old attempt runs out and the task is placed when it has ended, as usual.
    A rebalance recommendation is only a risk, and a notice without time left gains nothing.
    """
    if kind is not NoticeKind.INTERRUPTION:
        return Wait(f"{kind} notice: the instance is at risk, not reclaimed; it keeps running")
    if deadline is None or deadline <= ctx.now:
        return Wait("the notice leaves no time to overlap; the task is placed once the instance is gone")
    if ctx.live is not None:
        return Wait("the successor is chosen for the task as it will be without its live attempt")
    action = choose(ctx)
    if isinstance(action, Launch):
        return Launch(action.offers, f"interruption notice: replace now ({action.reason})")
    return Wait(f"interruption notice: no replacement before the instance is gone ({action.reason})")
