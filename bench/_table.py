"""Statistics and markdown for the policy benchmark."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
OPTIMUM = "omniscient"
# Wu et al., NSDI 2024, Table 3: mean on-demand / spot hours over the 2,400 windows (C 48, D 60, d 0.2).
PAPER_TABLE_3 = {"greedy": (30.8, 17.2), "uniform-progress": (25.1, 22.9), OPTIMUM: (20.7, 27.4)}


@dataclass(frozen=True, slots=True)
class Result:
    """One policy over the windows of one setup; hours are work done on each market."""

    od_h: Floats
    spot_h: Floats
    cost: Floats  # paper accounting, spot-price hours
    met: npt.NDArray[np.bool_]

    @property
    def misses(self) -> int:
        return int((~self.met).sum())


def policy_table(results: Mapping[str, Result], on_demand_cost: float, paper: bool) -> list[str]:
    """One row per policy: hours (mean ± sd), normalised cost, ratio to the optimum, misses."""
    best = results[OPTIMUM].cost.mean()
    head = "| policy | on-demand h | spot h | normalised cost | x optimum | deadline misses |"
    if paper:
        head += " paper (OD / spot h) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        cells = [name, _mean_sd(r.od_h), _mean_sd(r.spot_h), f"{r.cost.mean() / on_demand_cost:.3f}",
                 f"{r.cost.mean() / best:.3f}", str(r.misses)]
        if paper:
            ref = PAPER_TABLE_3.get(name)
            cells.append(f"{ref[0]} / {ref[1]}" if ref else "")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_table(rows: Sequence[tuple[str, int, Mapping[str, Result]]]) -> list[str]:
    """Per setup: Uniform Progress, auto and the optimum, and the share of UP's excess that auto removes."""
    lines = ["| setup | windows | uniform-progress | auto | omniscient | auto vs UP | gap closed | auto misses |",
             "|---|---|---|---|---|---|---|---|"]
    for name, count, results in rows:
        up, auto, best = (results[k].cost.mean() for k in ("uniform-progress", "auto", OPTIMUM))
        closed = (up - auto) / (up - best) if up > best else float("nan")
        lines.append(f"| {name} | {count} | {up:.2f} | {auto:.2f} | {best:.2f} | {100 * (auto / up - 1):+.1f}% "
                     f"| {100 * closed:.0f}% | {results['auto'].misses} |")
    return lines


def _mean_sd(values: Floats) -> str:
    return f"{values.mean():.2f} ± {values.std():.2f}"


def replace_between(path: Path, start: str, end: str, lines: Sequence[str]) -> None:
    """Put `lines` between the `start` and `end` markers of `path` (docs/benchmarks.md), keeping the rest:
    every bench that writes its table into the docs does it this way."""
    text = path.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"{path}: markers {start} / {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail, encoding="utf-8")
