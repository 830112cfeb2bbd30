"""`bench/policy.py --multi`: multi-zone policies and the exact optimum on the multi-region traces.

For every zone set (`bench._multi_data`) and setup (C = 24 h; D = 36, 48 h; d = 0.05, 0.2 h) it
runs, per window: Uniform Progress and `auto` pinned to each zone of the set (their mean over the
set's zones: what choosing one zone blindly costs), multi-zone Uniform Progress, eager failover,
the multi-zone default, and the exact multi-zone optimum. Costs are normalised to on-demand only
(one launch, whole ticks), so 1.0 is the on-demand price and 1/k = 0.317 is spot with nothing lost.

Work is split into (set, setup, policy) jobs over worker processes; the plans of `auto` are solved
once in the parent before the workers fork, so no worker solves them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench import _multi_data as md
from orchestrator.core.policy import get_policy
from orchestrator.core.policy.auto import _DEFAULT
from orchestrator.core.policy.base import Situation
from orchestrator.core.policy.multizone import get_multi_policy
from orchestrator.core.policy.multizone_plan import VALUES
from orchestrator.core.policy.planner import grid_for
from orchestrator.research import fastsim, multizone_optimum, multizone_sim

OPTIMUM = "optimum"
PINNED = {"pinned-uniform-progress": "uniform-progress", "pinned-auto": "auto"}
MULTI = {"mz-uniform-progress": "uniform-progress", "eager-failover": "eager-failover", "default": "auto",
         "default+memory": "auto"}
COLUMNS = ("pinned-uniform-progress", "mz-uniform-progress", "eager-failover", "pinned-auto", "default",
           "default+memory", OPTIMUM)
HEADS = ("UP pinned", "UP multi-zone", "eager failover", "auto pinned", "**default**", "default + 24 h memory",
         "optimum")
# The "default + memory" column: the default told, at submission, what every zone showed over this many
# hours before (what a controller's other jobs would have seen); windows starting earlier get what there is.
MEMORY_H = 24.0

Job = tuple[int, int, str]  # zone set index, setup index, column


@dataclass(frozen=True, slots=True)
class Cells:
    """Per window of one (set, setup): normalised cost and whether the deadline was met."""

    cost: npt.NDArray[np.float64]
    met: npt.NDArray[np.bool_]
    split: tuple[str, ...]


def jobs() -> list[Job]:
    sets = md.zone_sets()
    # The optimum and the default first: the slowest jobs start first and the pool ends evenly.
    order = (OPTIMUM, "default", "default+memory", *(c for c in COLUMNS if c not in (OPTIMUM, "default",
                                                                                     "default+memory")))
    return [(i, j, c) for c in order for i in range(len(sets)) for j in range(4)]


def warm_plans() -> None:
    """Solve `auto`'s plans and the default's value plans for every setup in this process, so forked
    workers share them."""
    for cloud in (md.GCP, md.AWS):
        for _, s in md.setups(cloud):
            assert s.deadline_h is not None
            _DEFAULT.plan_for(grid_for(s.deadline_h, s.task_h, s.overhead_h, s.price_ratio))
            VALUES.for_situation(Situation(elapsed_h=0.0, deadline_h=s.deadline_h, work_h=s.task_h, done_h=0.0,
                                           overhead_h=s.overhead_h, price_ratio=s.price_ratio, current=None,
                                           spot_available=True, tick_h=s.gap_s / 3600))


def evaluate(job: Job) -> tuple[Job, Cells]:
    i, j, column = job
    zs = md.zone_sets()[i]
    _, setup = md.setups(zs.cloud)[j]
    windows = md.windows(zs, setup)
    split = tuple(md.split(zs.cloud, setup, s) for s in md.starts(zs.cloud, setup))
    od = setup.on_demand_cost()
    if column == OPTIMUM:
        cost = multizone_optimum.solve(windows, setup, zs.zones(), zs.moves())
        return job, Cells(cost / od, np.isfinite(cost), split)
    if column in PINNED:
        policy = get_policy(PINNED[column])
        runs = [[fastsim.run(policy, w[z], setup) for z in range(w.shape[0])] for w in windows]
        return job, Cells(np.array([np.mean([o.cost for o in r]) for r in runs]) / od,
                          np.array([all(o.deadline_met for o in r) for r in runs]), split)
    multi = get_multi_policy(MULTI[column])
    remembered = [md.past(zs, start, MEMORY_H) if column == "default+memory" else None
                  for start in md.starts(zs.cloud, setup)]
    outs = [multizone_sim.run(multi, w, setup, zs.zones(), zs.moves(),
                              seen=None if past is None else multizone_sim.memory(past, setup.gap_s))
            for w, past in zip(windows, remembered, strict=True)]
    return job, Cells(np.array([o.cost for o in outs]) / od, np.array([o.deadline_met for o in outs]), split)


def _rows(done: dict[Job, Cells], which: str) -> list[tuple[str, dict[str, Cells]]]:
    """Cells pooled per (cloud, kind, setup), keeping windows of the given split ("all": every one)."""
    sets = md.zone_sets()
    rows: dict[str, dict[str, list[Cells]]] = {}
    for (i, j, column), cells in done.items():
        zs = sets[i]
        name = f"{'GCP H100' if zs.cloud == md.GCP else 'AWS V100'} | {zs.kind} | {md.setups(zs.cloud)[j][0]}"
        keep = np.array([which == "all" or s == which for s in cells.split], dtype=bool)
        if keep.any():
            rows.setdefault(name, {}).setdefault(column, []).append(
                Cells(cells.cost[keep], cells.met[keep], tuple(s for s, k in zip(cells.split, keep, strict=True) if k)))
    pooled = []
    for name in sorted(rows):
        merged = {c: Cells(np.concatenate([x.cost for x in v]), np.concatenate([x.met for x in v]), ())
                  for c, v in rows[name].items()}
        pooled.append((name, merged))
    return pooled


def table(done: dict[Job, Cells], which: str = "all") -> list[str]:
    """Markdown: one row per (cloud, zone-set kind, setup), mean normalised cost per column."""
    head = "| cloud | zones | setup | windows | " + " | ".join(HEADS) + " | default vs better baseline | misses |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, cells in _rows(done, which):
        mean = {c: float(cells[c].cost.mean()) for c in COLUMNS}
        baseline = min(mean["mz-uniform-progress"], mean["eager-failover"])
        misses = sum(int((~cells[c].met).sum()) for c in COLUMNS if c != OPTIMUM)
        values = " | ".join(f"**{mean[c]:.3f}**" if c == "default" else f"{mean[c]:.3f}" for c in COLUMNS)
        versus = 100 * (mean["default"] / baseline - 1)
        lines.append(f"| {name} | {len(cells[OPTIMUM].cost)} | {values} | {versus:+.1f}% | {misses} |")
    return lines


def summary(done: dict[Job, Cells]) -> list[str]:
    """The targets, per split: misses, rows where the default beats the better baseline, gap to optimum."""
    lines = ["| windows | rows | default cheaper than the better of UP multi-zone and eager failover | mean: "
             "default | mean: optimum | default - optimum (mean) | largest row gap | median default / optimum "
             "| default + memory - optimum (mean) | misses (all policies) |", "|" + "---|" * 10]
    for which, label in (("all", "all"), ("early", "early (tuning)"), ("late", "late (held out)")):
        rows = _rows(done, which)
        if not rows:
            continue
        better = sum(1 for _, c in rows if c["default"].cost.mean() < min(
            c["mz-uniform-progress"].cost.mean(), c["eager-failover"].cost.mean()))
        default = np.concatenate([c["default"].cost for _, c in rows])
        best = np.concatenate([c[OPTIMUM].cost for _, c in rows])
        gap = max(float(c["default"].cost.mean() - c[OPTIMUM].cost.mean()) for _, c in rows)
        misses = sum(int((~c[k].met).sum()) for _, c in rows for k in COLUMNS if k != OPTIMUM)
        ratio = float(np.median(default / best))
        remembered = np.concatenate([c["default+memory"].cost for _, c in rows]).mean() - best.mean()
        lines.append(f"| {label} | {len(rows)} | {better} of {len(rows)} | {default.mean():.4f} | {best.mean():.4f} "
                     f"| {default.mean() - best.mean():.4f} | {gap:.4f} | {ratio:.3f} | {remembered:.4f} | {misses} |")
    return lines


def describe_sets() -> list[str]:
    by_kind: dict[str, list[str]] = {}
    for zs in md.zone_sets():
        by_kind.setdefault(f"{'GCP' if zs.cloud == md.GCP else 'AWS'} {zs.kind}", []).append(zs.label)
    return [f"- {kind}: {'; '.join(labels)}" for kind, labels in by_kind.items()]


def report(done: dict[Job, Cells], header: Sequence[str]) -> list[str]:
    lines = [*header, "", "Zone sets (in the order the baselines try them):", "", *describe_sets(), ""]
    lines += ["### Normalised cost (cost / on-demand only), mean over windows and zone sets", "", *table(done), ""]
    lines += ["### Targets, on every window and on each side of the fit / held-out split", "", *summary(done), ""]
    lines += ["### Held out: windows that start at or after hour 84 only", "", *table(done, "late"), ""]
    return lines
