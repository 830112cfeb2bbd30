"""The gang benchmark (`python bench/policy.py --gang`): 8- and 16-node jobs on the public count traces.

Setups: N = 8 and 16 nodes, C = 24 h of whole-gang work, D = 36 and 48 h, d = 0.2 h, rigid and
elastic (min_nodes = N / 2). Two datasets of "how many of 16 nodes could be had" (READMEs under
`../shared/data/`): GCP H100, 13 zones, one week at 10 minutes (`gang/gcp-h100-16-wk1`), and AWS
V100, 3 zones, 11 and 16 days at 5 minutes (`spot-traces/.../availability/16-node`). Each window is one
zone (a single-zone job), starting every `GRID_H` hours at each of `OFFSETS_H`.

Columns: the default (`gang.decide`), relaunch-on-any-preemption (SkyPilot's managed jobs), the same
with the deadline's safety net (on-demand from the point of no return), gang Uniform Progress, and
the exact optimum (`gang_optimum`), as cost normalised to all N nodes on on-demand for C + d.
Relaunch-on-any-preemption has no deadline: it runs on past D to the end of the zone's trace, and what
is left then is priced on on-demand (N nodes, the work left + d); its misses are the point of it.

Leave-one-dataset-out: the default's one constant, `WAIT_SHARE`, is chosen for each dataset's rows on
the *other* dataset (least mean normalised cost over all its setups, 0 misses), from `SHARES`.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

from orchestrator.core.policy import gang
from orchestrator.core.policy.gang import GangDecision, GangFacts
from orchestrator.research import traces
from orchestrator.research.gang_optimum import gang_optimum
from orchestrator.research.gang_sim import CountTraces, GangJob, simulate

ON_DEMAND_USD, SPOT_USD = 3.06, 0.9701  # per node-hour: the multi-region README's reference prices
WORK_H, OVERHEAD_H = 24.0, 0.2
GRID_H = 24.0
OFFSETS_H = (0.0, 8.0, 16.0)
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT, RELAUNCH, UP, OPT = "default", "relaunch-on-any-preemption", "gang-uniform-progress", "optimum"
NET = "relaunch-with-deadline-net"
COLUMNS = (DEFAULT, RELAUNCH, NET, UP, OPT)


@dataclass(frozen=True, slots=True)
class Setup:
    nodes: int
    deadline_h: float
    elastic: bool

    @property
    def name(self) -> str:
        return f"N={self.nodes} D={self.deadline_h:g} {'elastic' if self.elastic else 'rigid'}"

    def job(self) -> GangJob:
        return GangJob(self.nodes, self.nodes // 2 if self.elastic else self.nodes, WORK_H, self.deadline_h,
                       OVERHEAD_H, SPOT_USD, ON_DEMAND_USD)


SETUPS = tuple(Setup(n, dl, el) for n in (8, 16) for dl in (36.0, 48.0) for el in (False, True))


def _folders() -> dict[str, Path]:
    root = traces.traces_dir()
    return {"gcp-h100-16-wk1": root.parent / "gang" / "gcp-h100-16-wk1",
            "aws-v100-16node": root / "skypilot-org-spot-traces" / "availability" / "16-node" / "aws-08-27-2023"}


DATASETS = tuple(_folders())


def available() -> bool:
    return all(p.is_dir() for p in _folders().values())


@cache
def zones(dataset: str) -> tuple[CountTraces, ...]:
    """Each zone of the dataset as its own one-zone trace, at its own full length."""
    out = []
    for path in sorted(_folders()[dataset].glob("*.json")):
        t = traces.load_trace(path)
        out.append(CountTraces(t.gap_seconds, {path.stem.split("_")[0]: t.data}))
    return tuple(out)


def windows(dataset: str, deadline_h: float) -> list[tuple[CountTraces, int]]:
    """(zone, start tick) of every window of D hours on the grid, at every offset."""
    out = []
    for z in zones(dataset):
        per_h = 3600.0 / z.gap_seconds
        length = round(deadline_h * per_h)
        for off in OFFSETS_H:
            start = off
            while round(start * per_h) + length <= len(z):
                out.append((z, round(start * per_h)))
                start += GRID_H
    return out


def _cost(setup: Setup, column: str, share: float, z: CountTraces, start: int) -> tuple[float, bool]:
    """One window: (normalised cost, deadline met)."""
    job = setup.job()
    od_only = job.nodes * ON_DEMAND_USD * (WORK_H + OVERHEAD_H)
    length = round(setup.deadline_h * 3600.0 / z.gap_seconds)
    if column == OPT:
        return gang_optimum(job, z, start) / od_only, True
    policy: Callable[[GangFacts], GangDecision] = (
        partial(gang.decide, wait_share=share) if column == DEFAULT else gang.GANG_POLICIES[column])
    run = simulate(job, z, policy, start=start, ticks=None if column == RELAUNCH else length)
    cost = run.cost + (job.nodes * ON_DEMAND_USD * (run.work_left_h + OVERHEAD_H) if run.work_left_h > 0 else 0.0)
    return cost / od_only, run.deadline_met(setup.deadline_h)


def cells(key: tuple[str, Setup, str, float]) -> tuple[tuple[str, Setup, str, float], list[tuple[float, bool]]]:
    dataset, setup, column, share = key
    return key, [_cost(setup, column, share, z, s) for z, s in windows(dataset, setup.deadline_h)]


def _summary(vals: list[tuple[float, bool]]) -> str:
    costs = [c for c, _ in vals]
    misses = sum(1 for _, met in vals if not met)
    return f"{statistics.fmean(costs):.3f} / {statistics.median(costs):.3f} / {max(costs):.3f} / {misses}"


def run(jobs: int = 1) -> tuple[list[str], float]:
    keys = [(ds, s, c, 0.0) for ds in DATASETS for s in SETUPS for c in (RELAUNCH, NET, UP, OPT)]
    keys += [(ds, s, DEFAULT, sh) for ds in DATASETS for s in SETUPS for sh in SHARES]
    started = time.perf_counter()
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            done = dict(pool.imap_unordered(cells, keys, chunksize=1))
    else:
        done = dict(map(cells, keys))
    return report(done), time.perf_counter() - started


def choose_share(done: dict[tuple[str, Setup, str, float], list[tuple[float, bool]]], on: Sequence[str]) -> float:
    """The share of slack with the least mean normalised cost over every setup of `on`, 0 misses."""
    def score(sh: float) -> tuple[bool, float]:
        vals = [v for ds in on for s in SETUPS for v in done[(ds, s, DEFAULT, sh)]]
        return any(not met for _, met in vals), statistics.fmean(c for c, _ in vals)
    return min(SHARES, key=score)


def report(done: dict[tuple[str, Setup, str, float], list[tuple[float, bool]]]) -> list[str]:
    lines = []
    worst_ratio = {UP: 0.0, RELAUNCH: 0.0, NET: 0.0}
    for ds in DATASETS:
        others = [o for o in DATASETS if o != ds]
        share = choose_share(done, others)
        n = len(windows(ds, 48.0)), len(windows(ds, 36.0))
        lines += [f"#### {ds}: held out; the default's WAIT_SHARE = {share:g}, chosen on {', '.join(others)} "
                  f"({n[1]} windows at D = 36 h, {n[0]} at D = 48 h)", "",
                  "| setup | default | relaunch-on-any-preemption | relaunch + deadline net | gang Uniform Progress "
                  "| optimum | default / relaunch | default / relaunch + net | default / gang UP |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in SETUPS:
            col = {c: done[(ds, s, c, share if c == DEFAULT else 0.0)] for c in COLUMNS}
            mean = {c: statistics.fmean(v for v, _ in col[c]) for c in COLUMNS}
            for c in (UP, RELAUNCH, NET):
                worst_ratio[c] = max(worst_ratio[c], mean[DEFAULT] / mean[c])
            lines.append(f"| {s.name} | " + " | ".join(_summary(col[c]) for c in COLUMNS)
                         + "".join(f" | {mean[DEFAULT] / mean[c]:.3f}" for c in (RELAUNCH, NET, UP)) + " |")
        lines.append("")
    lines += ["Each cell: mean / median / worst normalised cost / deadline misses. Highest ratio of the "
              f"default's mean to relaunch-on-any-preemption's over all rows: {worst_ratio[RELAUNCH]:.3f}; to "
              f"relaunch + deadline net's: {worst_ratio[NET]:.3f}; to gang Uniform Progress's: {worst_ratio[UP]:.3f}.",
              ""]
    lines += ["In-sample, for the record (each WAIT_SHARE on all rows of each dataset; mean normalised cost, "
              "misses):", "", "| WAIT_SHARE | " + " | ".join(DATASETS) + " |", "|---|" + "---|" * len(DATASETS)]
    for sh in SHARES:
        row = []
        for ds in DATASETS:
            vals = [v for s in SETUPS for v in done[(ds, s, DEFAULT, sh)]]
            row.append(f"{statistics.fmean(c for c, _ in vals):.4f}, {sum(1 for _, m in vals if not m)}")
        lines.append(f"| {sh:g} | " + " | ".join(row) + " |")
    return lines
