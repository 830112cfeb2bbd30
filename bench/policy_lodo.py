"""Leave-one-dataset-out evaluation of the market policies (`bench/policy.py`, with and without `--multi`).

For each public dataset (`bench/policy_data.py`) the default is scored with its availability model
fitted on the *other* datasets only (`fold_model`, the same `market_model.fit` that writes the shipped
model from all of them), against Uniform Progress (single-zone, or multi-zone for `--multi`) and the
exact optimum, on windows at several grid offsets. Reported per dataset: the mean, the median and the
worst window (cost ratio to Uniform Progress), the share of Uniform Progress's gap to the optimum that
the default closes, and deadline misses. Nothing here chooses a constant: the tables are what a
policy fixed in advance does on a dataset it did not see.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench import _multi_data
from bench import policy_data as pd
from orchestrator.core.policy import get_policy, market_model
from orchestrator.core.policy.auto import ModelPolicy
from orchestrator.core.policy.base import Policy
from orchestrator.core.policy.multizone import get_multi_policy, make_zone_auto
from orchestrator.core.policy.multizone_base import MultiPolicy, move_costs
from orchestrator.core.policy.multizone_plan import ValuePlans
from orchestrator.research import fastsim, multizone_optimum, multizone_sim, optimum
from orchestrator.research.fastsim import Setup

ON_DEMAND_USD, SPOT_USD = 3.06, 0.9701  # the multi-region README's reference prices
UP, DEFAULT, OPT = "uniform-progress", "default", "optimum"
SINGLE = {f"d={d:g}": Setup(48.0, 60.0, d) for d in (0.05, 0.2, 0.5)}
MULTI = {f"D={deadline:g} d={d:g}": (24.0, float(deadline), d) for deadline in (36, 48) for d in (0.05, 0.2)}
MULTI_MIN_GAP_S = 300.0  # the 32 s preemption trace is read at 5 minutes for the multi-zone sets


@dataclass(frozen=True, slots=True)
class Cells:
    """Per window: cost normalised to on-demand only, whether the deadline was met, and the grid offset
    (hours) the window's start lies on, so that a table can say how far a mean moves with it."""

    cost: npt.NDArray[np.float64]
    met: npt.NDArray[np.bool_]
    offset_h: npt.NDArray[np.float64]


def offsets_of(first: Sequence[int], gap_s: float) -> npt.NDArray[np.float64]:
    """The grid offset of each window start (`pd.starts` puts every start on one of the offsets)."""
    return np.array([round((f * gap_s / 3600) % pd.GRID_H, 2) for f in first])


@functools.cache
def fold_model(held_out: str | None) -> market_model.MarketModel:
    """The availability model fitted on every dataset but `held_out` (None: on all, as shipped)."""
    return market_model.fit(pd.fit_series(held_out))


@functools.cache
def fold_policy(held_out: str | None) -> ModelPolicy:
    return ModelPolicy(fold_model(held_out))


@functools.cache
def fold_multi(held_out: str | None) -> MultiPolicy:
    return make_zone_auto(fold_policy(held_out), ValuePlans(fold_model(held_out)))


# ---- single zone ------------------------------------------------------------------------------------

def single_windows(name: str, setup: Setup, offsets_h: tuple[float, ...] | None = None
                   ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """`[window, tick]`: every zone of the dataset at 10 minutes, windows of D at every grid offset (or
    at `offsets_h`); and each window's offset."""
    d = pd.dataset(name)
    avail = pd.at_gap(d, setup.gap_s)
    assert setup.deadline_h is not None
    length = round(setup.deadline_h * 3600 / setup.gap_s)
    first = pd.starts(avail.shape[1], setup.gap_s, setup.deadline_h, offsets_h)
    wins = np.stack([row[s : s + length] for row in avail for s in first])
    return wins, np.tile(offsets_of(first, setup.gap_s), avail.shape[0])


def single_cells(name: str, setup_name: str, column: str) -> Cells:
    setup = SINGLE[setup_name]
    wins, offsets = single_windows(name, setup)
    od = setup.on_demand_cost()
    if column == OPT:
        best = optimum.solve(wins, setup)
        return Cells(best.cost / od, best.feasible, offsets)
    policy: Policy = get_policy(UP) if column == UP else fold_policy(name)
    outs = [fastsim.run(policy, w, setup, track_history=column != UP) for w in wins]
    return Cells(np.array([o.cost for o in outs]) / od, np.array([o.deadline_met for o in outs]), offsets)


# ---- multi-zone -------------------------------------------------------------------------------------

def zone_sets(name: str) -> list[tuple[int, ...]]:
    """Every pair of zones of each group and the whole group; for the 13 GCP zones, the multi-zone
    bench's sets drawn by rule and seed (`bench/_multi_data.zone_sets`: pairs within and across
    regions, sets of 3 and 5, all), since 78 pairs would be most of the run."""
    if name == "gcp-h100-wk1":
        return [zs.members for zs in _multi_data.zone_sets() if zs.cloud == _multi_data.GCP]
    out: list[tuple[int, ...]] = []
    for group in pd.dataset(name).groups:
        out += [(a, b) for i, a in enumerate(group) for b in group[i + 1:]]
        if len(group) > 2:
            out.append(tuple(group))
    return out


def multi_setup(name: str, setup_name: str) -> Setup:
    work, deadline, d = MULTI[setup_name]
    gap = max(pd.dataset(name).gap_s, MULTI_MIN_GAP_S)
    return Setup(work, deadline, d, ON_DEMAND_USD / SPOT_USD, gap)


def multi_cells(name: str, setup_name: str, column: str, members: tuple[int, ...]) -> Cells:
    data = pd.dataset(name)
    setup = multi_setup(name, setup_name)
    avail = pd.at_gap(data, setup.gap_s)[list(members)]
    zones = tuple(data.zones[i] for i in members)
    moves = move_costs(zones)
    assert setup.deadline_h is not None
    length = round(setup.deadline_h * 3600 / setup.gap_s)
    first = pd.starts(avail.shape[1], setup.gap_s, setup.deadline_h, pd.MULTI_OFFSETS_H)
    wins = np.stack([avail[:, s : s + length] for s in first])
    od = setup.on_demand_cost()
    if column == OPT:
        cost = multizone_optimum.solve(wins, setup, zones, moves)
        return Cells(cost / od, np.isfinite(cost), offsets_of(first, setup.gap_s))
    policy = get_multi_policy(UP) if column == UP else fold_multi(name)
    outs = [multizone_sim.run(policy, w, setup, zones, moves) for w in wins]
    return Cells(np.array([o.cost for o in outs]) / od, np.array([o.deadline_met for o in outs]),
                 offsets_of(first, setup.gap_s))


# ---- tables -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Row:
    label: str
    up: Cells
    default: Cells
    best: Cells

    @property
    def ratio(self) -> npt.NDArray[np.float64]:
        return self.default.cost / self.up.cost

    @property
    def closed(self) -> float:
        gap = self.up.cost.mean() - self.best.cost.mean()
        return float((self.up.cost.mean() - self.default.cost.mean()) / gap) if gap > 0 else float("nan")

    @property
    def by_offset(self) -> list[float]:
        """Default vs UP on the mean of each grid offset's windows alone, lowest first."""
        out = [float(self.default.cost[self.up.offset_h == o].mean() / self.up.cost[self.up.offset_h == o].mean() - 1)
               for o in np.unique(self.up.offset_h)]
        return sorted(out)

    @property
    def closed_by_offset(self) -> list[float]:
        """UP's gap closed on each grid offset's windows alone, lowest first."""
        out = []
        for o in np.unique(self.up.offset_h):
            up, de, be = (c.cost[c.offset_h == o].mean() for c in (self.up, self.default, self.best))
            out.append(float((up - de) / (up - be)) if up > be else float("nan"))
        return sorted(out)

    @property
    def misses(self) -> int:
        return int((~self.up.met).sum() + (~self.default.met).sum())


def merge(parts: Sequence[Cells]) -> Cells:
    return Cells(np.concatenate([p.cost for p in parts]), np.concatenate([p.met for p in parts]),
                 np.concatenate([p.offset_h for p in parts]))


HEAD = ("| dataset (held out) | windows | UP | **default** | optimum | default vs UP (mean) | the same, each grid "
        "offset alone | median window default / UP | worst window default / UP | UP's gap closed "
        "| misses (UP, default) |")


def table(rows: Sequence[Row]) -> list[str]:
    lines = [HEAD, "|" + "---|" * (HEAD.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r.label} | {len(r.up.cost)} | {r.up.cost.mean():.4f} | **{r.default.cost.mean():.4f}** | "
            f"{r.best.cost.mean():.4f} | {100 * (r.default.cost.mean() / r.up.cost.mean() - 1):+.2f}% | "
            f"{100 * r.by_offset[0]:+.2f}% to {100 * r.by_offset[-1]:+.2f}% | "
            f"{np.median(r.ratio):.3f} | {r.ratio.max():.3f} | {100 * r.closed:.0f}% | "
            f"{int((~r.up.met).sum())}, {int((~r.default.met).sum())} |")
    return lines


def targets(rows: Sequence[Row], gap_target: float | None) -> list[str]:
    """One line per target: the worst dataset mean and window against UP, the gap closed, misses."""
    worst_mean = max(r.default.cost.mean() / r.up.cost.mean() - 1 for r in rows)
    worst_offset = max(r.by_offset[-1] for r in rows)
    worst_win = max(float(r.ratio.max()) - 1 for r in rows)
    misses = sum(r.misses for r in rows)
    under = sum(r.default.cost.mean() < r.up.cost.mean() for r in rows)
    lines = [f"- default vs UP, worst dataset mean: {100 * worst_mean:+.2f}% (target at most +1%: "
             f"{'met' if worst_mean <= 0.01 else 'NOT met'})",
             f"- the same on one grid offset's windows alone, worst dataset and offset: {100 * worst_offset:+.2f}% "
             f"(target at most +1%: {'met' if worst_offset <= 0.01 else 'NOT met'})",
             f"- default vs UP, worst window: {100 * worst_win:+.2f}% (target at most +5%: "
             f"{'met' if worst_win <= 0.05 else 'NOT met'})",
             f"- default under UP on the dataset's mean: {under} of {len(rows)} datasets",
             f"- deadline misses (UP and default, all windows): {misses}"]
    if gap_target is not None:
        closed = [r.closed for r in rows]
        lines.append(f"- UP's gap to the optimum closed: mean over datasets {100 * float(np.nanmean(closed)):.0f}%, "
                     f"lowest {100 * float(np.nanmin(closed)):.0f}% (target {100 * gap_target:.0f}%); on one grid "
                     f"offset's windows alone, {100 * min(r.closed_by_offset[0] for r in rows):.0f}% to "
                     f"{100 * max(r.closed_by_offset[-1] for r in rows):.0f}% over datasets and offsets")
    return lines


# ---- the runs ---------------------------------------------------------------------------------------

Job = tuple[str, str, str, tuple[int, ...]]  # dataset, setup, column, zone set (() for single-zone)
COLUMNS = (OPT, DEFAULT, UP)  # slowest first, so the pool ends evenly


def single_jobs() -> list[Job]:
    return [(d.name, s, c, ()) for c in COLUMNS for s in SINGLE for d in pd.datasets()]


def multi_jobs() -> list[Job]:
    return [(d.name, s, c, z) for c in COLUMNS for s in MULTI for d in pd.datasets() for z in zone_sets(d.name)]


def evaluate(job: Job) -> tuple[Job, Cells]:
    name, setup_name, column, members = job
    if members:
        return job, multi_cells(name, setup_name, column, members)
    return job, single_cells(name, setup_name, column)


def rows(done: dict[Job, Cells], setup_name: str) -> list[Row]:
    """One row per held-out dataset (zone sets pooled), then every dataset pooled."""
    out = []
    for d in pd.datasets():
        parts = {c: merge([v for (n, s, col, _), v in sorted(done.items(), key=lambda kv: kv[0][3])
                           if n == d.name and s == setup_name and col == c]) for c in COLUMNS}
        out.append(Row(d.name, parts[UP], parts[DEFAULT], parts[OPT]))
    return out


def report(done: dict[Job, Cells], multi: bool) -> list[str]:
    setups = MULTI if multi else SINGLE
    lines: list[str] = []
    for name in setups:
        rs = rows(done, name)
        lines += [f"### {'C = 24 h, ' + name if multi else 'C = 48 h, D = 60 h, ' + name}", "", *table(rs), ""]
        gap = 0.5 if not multi and name in ("d=0.2", "d=0.5") else None
        lines += [*targets(rs, gap), ""]
    return lines


def describe(multi: bool) -> list[str]:
    lines = ["Datasets (each held out in turn; the default's model fitted on the other four):", ""]
    for d in pd.datasets():
        sets = f"; zone sets: {len(zone_sets(d.name))}" if multi else ""
        lines.append(f"- `{d.name}`: {d.title}; {len(d.zones)} zones at {d.gap_s:g} s{sets}")
    offsets = pd.MULTI_OFFSETS_H if multi else pd.OFFSETS_H
    lines += ["", f"Windows start every {pd.GRID_H:g} h at offsets {', '.join(f'{o:g}' for o in offsets)} h. "
              "Costs are normalised to on-demand only (1.0); UP is "
              f"{'multi-zone ' if multi else ''}Uniform Progress; ratios are per window, default / UP."]
    return lines
