"""The exact optimum of a gang on count traces, with the whole future known: the lower bound.

A dynamic program over ticks x work done x what runs (waiting; on-demand; a spot gang of k nodes in
zone z), each with the age of the running gang up to ceil(d / g) ticks (the overhead it still owes),
in the model and accounting of `gang_sim` (docs/policy.md, "Gangs"): the least cost of a schedule
that finishes by the deadline. Work is counted in integer units, so that a tick's progress is exact:
one unit is 1 / (q * s) of a whole-gang tick, with q the denominator of d / g (a tick's share left
after the overhead is a multiple of 1 / q) and s = N for an elastic gang (k nodes do k units where N
do N) or 1 for a rigid one. Backward induction, one numpy vector over work done per state.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from orchestrator.research.gang_sim import CountTraces, GangJob

# Beyond this a tick's share left after the overhead is not a simple fraction of it: refuse rather
# than grow the work grid without bound.
MAX_DENOMINATOR = 60


def _units(job: GangJob, gap_h: float) -> tuple[int, int, list[int]]:
    """(q, s, per-age progress of the whole gang in units): age a does max(0, min(1, a + 1 - d/g)) of a tick."""
    ratio = Fraction(job.overhead_h / gap_h).limit_denominator(1000)
    if abs(float(ratio) - job.overhead_h / gap_h) > 1e-9 or ratio.denominator > MAX_DENOMINATOR:
        raise ValueError(f"overhead {job.overhead_h:g} h is not a simple fraction of the tick ({gap_h:g} h)")
    q = ratio.denominator
    s = job.nodes if job.min_nodes < job.nodes else 1
    ages = math.ceil(ratio) + 1  # ages 0..A, A = ceil(d/g): productive from A on
    share = [max(Fraction(0), min(Fraction(1), a + 1 - ratio)) for a in range(ages)]
    return q, s, [int(x * q) for x in share]


def gang_optimum(job: GangJob, traces: CountTraces, start: int = 0) -> float:
    """The least cost (whole ticks, every node) that finishes `job` by its deadline from tick `start`;
    inf when even on-demand from the start cannot."""
    if job.deadline_h is None:
        raise ValueError("the optimum needs a deadline")
    g = traces.gap_seconds / 3600.0
    horizon = math.floor(job.deadline_h / g + 1e-9)
    if start + horizon > len(traces):
        raise ValueError(f"the deadline ({horizon} ticks from {start}) is past the traces' end ({len(traces)})")
    q, s, per_age = _units(job, g)
    total = round(job.work_h / g * q * s)
    if abs(total - job.work_h / g * q * s) > 1e-6:
        raise ValueError(f"work {job.work_h:g} h is not a whole number of work units of {g / q:g} h")
    n_ages = len(per_age)
    zones = sorted(traces.counts)
    sizes = range(job.min_nodes, job.nodes + 1) if s > 1 else range(job.nodes, job.nodes + 1)
    # Options: (price per tick, nodes, zone or None for on-demand).
    options: list[tuple[float, int, str | None]] = [(job.nodes * job.on_demand_price * g, job.nodes, None)]
    options += [(k * job.spot_price * g, k, z) for z in zones for k in sizes]
    work = np.arange(total + 1)
    inf = np.inf
    # value[o][a]: least cost from the next tick with option o running at age a; idle separately.
    done_value = np.full(total + 1, inf)
    done_value[total] = 0.0
    idle = done_value.copy()
    value = [[done_value.copy() for _ in range(n_ages)] for _ in options]
    step_of = [[np.minimum(work + per_age[a] * (k if s > 1 else 1), total) for a in range(n_ages)]
               for (_, k, _) in options]
    for i in range(start + horizon - 1, start - 1, -1):
        run: list[list[npt.NDArray[np.float64] | None]] = []
        for o, (price, k, zone) in enumerate(options):
            if zone is not None and traces.counts[zone][i] < k:
                run.append([None] * n_ages)
                continue
            run.append([price + value[o][min(a + 1, n_ages - 1)][step_of[o][a]] for a in range(n_ages)])
        launch = idle.copy()
        for r in run:
            if r[0] is not None:
                np.minimum(launch, r[0], out=launch)
        launch[total] = 0.0
        idle = launch
        for o in range(len(options)):
            for a in range(n_ages):
                r_oa = run[o][a]
                value[o][a] = launch if r_oa is None or a == 0 else np.minimum(launch, r_oa)
    return float(idle[0])
