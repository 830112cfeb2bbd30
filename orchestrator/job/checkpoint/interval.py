"""When is the next checkpoint worth its cost? Young's interval with an estimated interruption rate.

Young (1974), "A first order approximation to the optimum checkpoint interval", and Daly (2006),
"A higher order estimate of the optimum checkpoint interval for restart dumps": with a save that costs
`C` seconds and interruptions arriving on average every `M` seconds, the expected waste (save time plus
work lost since the last save) is smallest when saving every

    T = sqrt(2 * C * M)

The first-order form is enough here: Daly's correction matters only when `C` approaches `M`, and the
clamps below bound `T` long before that.

`M` is estimated from what a job can see on its own, with one pseudo-observation as a prior:

    M = (elapsed + M0) / (interruptions + 1)

`interruptions` is the number of earlier attempts (`ORCH_ATTEMPT`: every earlier attempt ended, and
on spot that is almost always a reclamation), `elapsed` the seconds since the task's work began (the
`origin_at` carried in every manifest), and `M0` a prior mean time between interruptions for the
market (2 h on spot, a week on on-demand). With no interruption seen, `M` is dominated by the prior;
after many it converges on the observed rate. Everything here is pure: the SDK passes the numbers in.
"""

from __future__ import annotations

import math

SPOT_MTBI_PRIOR_S = 2 * 3600.0
ON_DEMAND_MTBI_PRIOR_S = 7 * 24 * 3600.0
MIN_MTBI_S = 60.0


def mtbi_prior_s(market: str) -> float:
    return ON_DEMAND_MTBI_PRIOR_S if market == "on-demand" else SPOT_MTBI_PRIOR_S


def estimate_mtbi_s(interruptions: int, elapsed_s: float, prior_s: float) -> float:
    """Mean time between interruptions: `(elapsed + prior) / (interruptions + 1)`, at least a minute."""
    mtbi = (max(elapsed_s, 0.0) + prior_s) / (max(interruptions, 0) + 1)
    return max(mtbi, MIN_MTBI_S)


def young_interval_s(save_cost_s: float, mtbi_s: float, *, min_s: float, max_s: float) -> float:
    """`sqrt(2 * C * M)`, clamped to `[min_s, max_s]` (and never below the save cost itself)."""
    if min_s > max_s:
        raise ValueError(f"min interval {min_s} s exceeds max interval {max_s} s")
    cost = max(save_cost_s, 0.0)
    interval = math.sqrt(2.0 * cost * max(mtbi_s, MIN_MTBI_S))
    return min(max(interval, min_s, cost), max_s)


def smooth(previous: float | None, sample: float, weight: float = 0.5) -> float:
    """Exponentially weighted mean of save durations: recent saves matter most (caches warm, data grows)."""
    return sample if previous is None else weight * sample + (1.0 - weight) * previous
