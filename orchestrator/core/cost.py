"""Money, derived: every figure here is computed from the prices and times recorded on attempts.

Nothing in orch estimates a cost anywhere else; the CLI, the JSON output, the Kubernetes status and
the benchmarks all call `job_cost`. Definitions (docs/cost.md):

- spent: sum over attempts of price x billed seconds (the provider's billing rules: per second with a
  minimum), running attempts billed up to `now`; a launch the provider refused costs nothing.
- projected: spent + `remaining_usd` (orchestrator.core.status): each unfinished task's work left plus one
  restart, at the price it runs at now (or its idle price); the budget guard uses the same function.
- on-demand only: the whole estimated work plus one restart overhead at the on-demand price.
- saved: on-demand only - spent, and only once the job has succeeded: money is shown as saved
  when it was, not while the work may still be lost. While the job is unfinished the same difference
  (against projected) is `projected_saved`; a job stopped short (failed, cancelled, over budget) has
  neither, since the work it paid for did not produce the result the yardstick prices.
- lost to preemptions: for each preempted attempt, the time since its newest checkpoint (or since it
  became productive) at its price: work that has to be done again.
- gangs (`[resources] nodes = N`): every figure counts every node. An attempt's nodes are billed each
  from its own recorded span (`NodeSpan`: price, launch, end); before its spans are recorded, as N
  nodes at the attempt's price over the attempt's time. Hours are node-hours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from orchestrator.core.model import AttemptState, AttemptView, NodeSpan, Outcome, TaskState
from orchestrator.core.spec import JobSpec
from vocab import Billing, Market, Offer

# Dollars in JSON keep four decimals: a campaign's cost per item is a fraction of a cent.
JSON_DECIMALS = 4


def money(value: float | None, *, known: bool = True) -> float | None:
    """A dollar figure as every JSON output carries it: a float (never an int `0` beside a `0.0`),
    rounded to `JSON_DECIMALS`, never `-0.0`; None when the price is not known (a cluster without
    prices) or the figure does not exist, never `0` standing in for "unknown"."""
    if value is None or not known:
        return None
    rounded = round(float(value), JSON_DECIMALS)
    return rounded + 0.0 if rounded else 0.0  # `+ 0.0` keeps a sign; `0.0` drops the one of -0.0


def usd_text(value: float | None, *, known: bool = True, decimals: int = 2) -> str:
    """A dollar figure as every text view shows it (the CLI, the dashboard): whole cents, rounded half
    away from zero, so a cost of -$0.005 shows as `-$0.01` (a negative saving is money) and one of
    -$0.004 as `$0.00` — never `-$0.00`. `n/a` when the price is not known, `-` when there is no figure.
    `decimals` > 2 for figures that are fractions of a cent (a campaign's cost per item)."""
    if not known:
        return "n/a"
    if value is None or not math.isfinite(value):
        return "-"
    step = Decimal(1).scaleb(-decimals)
    amount = Decimal(repr(float(value))).quantize(step, rounding=ROUND_HALF_UP)
    if amount == 0:
        return f"${Decimal(0).quantize(step)}"
    return f"{'-' if amount < 0 else ''}${abs(amount):,}"


def attempt_seconds(a: AttemptView, now: float) -> float:
    """Billed time: from the start the store recorded (for most providers the launch request, for a
    pod the moment it was seen bound and running) to the end, or to `now` while it runs. An attempt
    still launching has not started: nothing is billed yet (a pod waiting for a node costs nothing)."""
    if a.state is AttemptState.LAUNCHING:
        return 0.0
    start = a.started_at if a.started_at is not None else a.launched_at
    end = a.ended_at if a.ended_at is not None else now
    return max(0.0, end - max(start, a.launched_at))


def node_seconds(a: AttemptView, node: NodeSpan, now: float) -> float:
    """Billed time of one node of a gang: from its launch (not before its attempt started billing) to its
    own recorded end, else its attempt's end, else `now`. Nothing while the attempt is launching."""
    if a.state is AttemptState.LAUNCHING:
        return 0.0
    start = max(node.launched_at, a.started_at if a.started_at is not None else a.launched_at, a.launched_at)
    end = node.ended_at if node.ended_at is not None else a.ended_at if a.ended_at is not None else now
    return max(0.0, end - start)


def _pieces(a: AttemptView, now: float) -> list[tuple[Market, float, float, int]]:
    """(market, seconds, price per hour, how many nodes) of what an attempt ran: one piece per recorded
    node of a gang, else its `nodes` alike at the attempt's market, price and time."""
    if a.node_spans:
        return [(n.market, node_seconds(a, n, now), n.price_per_hour, 1) for n in a.node_spans]
    return [(a.market, attempt_seconds(a, now), a.price_per_hour, a.nodes)]


def attempt_cost_by_market(a: AttemptView, now: float) -> dict[Market, float]:
    out = {Market.SPOT: 0.0, Market.ON_DEMAND: 0.0}
    if a.unbilled:
        return out
    billing = Billing(a.billing_increment_s, a.billing_minimum_s)
    for market, seconds, price, count in _pieces(a, now):
        out[market] += count * price * billing.billed_seconds(seconds) / 3600.0
    return out


def attempt_cost(a: AttemptView, now: float) -> float:
    """What the attempt's instances cost up to `now`: every node of a gang."""
    return sum(attempt_cost_by_market(a, now).values())


def node_hours(a: AttemptView, now: float, market: Market) -> float:
    """Instance-hours the attempt ran on `market` (a gang's nodes each count); 0 when unbilled."""
    if a.unbilled:
        return 0.0
    return sum(count * seconds for m, seconds, _, count in _pieces(a, now) if m is market) / 3600.0


def hourly_price(a: AttemptView) -> float:
    """What the attempt costs per hour while it runs: its live nodes' prices, or `nodes` x its price."""
    if a.node_spans:
        return sum(n.price_per_hour for n in a.node_spans if n.ended_at is None)
    return a.nodes * a.price_per_hour


def attempt_lost(a: AttemptView) -> float:
    """Cost of the work a preemption threw away (0 for any other outcome): for a gang, on every node
    that ran between the newest checkpoint and the end (one reclaimed node stops them all)."""
    if a.outcome is not Outcome.PREEMPTED or a.ended_at is None:
        return 0.0
    # Explicit None tests: a simulated clock starts at 0.0, and `or` would skip a checkpoint made then.
    since = max(next(t for t in (a.last_checkpoint_at, a.productive_at, a.started_at, a.launched_at)
                     if t is not None), a.launched_at)
    if not a.node_spans:
        return max(0.0, a.ended_at - since) * a.nodes * a.price_per_hour / 3600.0
    lost = 0.0
    for n in a.node_spans:
        end = min(n.ended_at, a.ended_at) if n.ended_at is not None else a.ended_at
        lost += max(0.0, end - max(since, n.launched_at)) * n.price_per_hour / 3600.0
    return lost


@dataclass(frozen=True, slots=True)
class JobCost:
    spent_usd: float
    spot_usd: float
    on_demand_usd: float
    projected_usd: float
    on_demand_only_usd: float
    saved_usd: float | None  # realised: only for a succeeded job
    projected_saved_usd: float | None  # expected: only for an unfinished job
    lost_usd: float
    preemptions: int
    spot_hours: float
    on_demand_hours: float

    def to_dict(self, *, known: bool = True) -> dict[str, float | int | None]:
        """Dollars through `money` (null when the price is not known), hours rounded, preemptions an int."""
        out: dict[str, float | int | None] = {}
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            if name.endswith("_usd"):
                out[name] = money(v, known=known)
            elif isinstance(v, float):
                out[name] = round(v, JSON_DECIMALS) + 0.0
            else:
                out[name] = v
        return out


# Job states (orchestrator.core.model.job_state) whose work is still under way: savings are only a projection.
_UNFINISHED = frozenset({str(TaskState.PENDING), str(TaskState.RUNNING), str(TaskState.PREEMPTED)})


def savings(state: str, *, on_demand_only_usd: float, projected_usd: float) -> tuple[float | None, float | None]:
    """(saved, projected saved) for a job in `state`: at most one of them is a number.

    Succeeded: the work is done, so projected equals spent and the difference is earned.
    Unfinished: the same difference is only a projection. Failed, cancelled, over budget: none, because
    the yardstick prices a finished job and this one will not finish.
    """
    difference = on_demand_only_usd - projected_usd
    if state == str(TaskState.SUCCEEDED):
        return difference, None
    if state in _UNFINISHED:
        return None, difference
    return None, None


def job_cost(attempts: Sequence[AttemptView], *, now: float, remaining_usd: float,
             on_demand_only_usd: float, state: str = str(TaskState.RUNNING)) -> JobCost:
    """All cost figures of a job from its attempts.

    `remaining_usd` prices the work still to do (orchestrator.core.status decides at which price);
    `on_demand_only_usd` is the same whole job on on-demand capacity, the yardstick for savings;
    `state` is the job's state (`orchestrator.core.model.job_state`), which decides what savings mean.
    """
    by_market = [attempt_cost_by_market(a, now) for a in attempts]
    spot = sum(c[Market.SPOT] for c in by_market)
    on_demand = sum(c[Market.ON_DEMAND] for c in by_market)
    spent = spot + on_demand
    projected = spent + remaining_usd
    saved, projected_saved = savings(state, on_demand_only_usd=on_demand_only_usd, projected_usd=projected)
    return JobCost(
        spent_usd=spent,
        spot_usd=spot,
        on_demand_usd=on_demand,
        projected_usd=projected,
        on_demand_only_usd=on_demand_only_usd,
        saved_usd=saved,
        projected_saved_usd=projected_saved,
        lost_usd=sum(attempt_lost(a) for a in attempts),
        preemptions=sum(1 for a in attempts if a.outcome is Outcome.PREEMPTED),
        spot_hours=sum(node_hours(a, now, Market.SPOT) for a in attempts),
        on_demand_hours=sum(node_hours(a, now, Market.ON_DEMAND) for a in attempts),
    )


def idle_price_of(spec: JobSpec, cheapest_spot: Offer | None, cheapest_on_demand: Offer | None) -> float | None:
    """The price an unplaced task is expected to run at (`status.idle_price`), from the cheapest spot and
    on-demand offers: spot, or on-demand for an on-demand job or when no spot is offered."""
    offer = cheapest_on_demand if spec.schedule.market == "on-demand" or cheapest_spot is None else cheapest_spot
    return gang_hourly(spec, offer.price_per_hour) if offer is not None else None


def gang_hourly(spec: JobSpec, node_price: float) -> float:
    """A task's price per hour on nodes at `node_price`: all `[resources] nodes` of a gang, or the one node.

    The projections, the budget guard and the on-demand yardstick price a gang at its full size; an
    elastic gang running short costs less and is priced from its live nodes (`hourly_price`)."""
    return spec.gang.nodes * node_price
