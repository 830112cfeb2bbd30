"""Held-out evaluation of `auto`: its availability model fitted on some traces, tested on others.

The shipped model is fitted on the eight 2022 probe traces the benchmark windows are cut from, so the
main table measures `auto` in-sample. These splits say how it does on data it has not seen:

- `2022 -> 2023`: the shipped model, on windows cut from the public traces of other months, zones and
  instance types (Apr-Aug 2023: 16-node and 4-node availability counts, read both as "one node" and
  as "all nodes", and 1-node preemption traces), resampled to 10-minute ticks;
- `2a -> 2b` and `2b -> 2a`: fitted on one zone's four probe traces, tested on the other zone's windows;
- `2023 -> 2022`: fitted on the 2023 traces only, tested on the 2,400 windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bench._data import ONE_ZONE, env_windows
from orchestrator.core.policy import get_policy, market_model
from orchestrator.core.policy.auto import ModelPolicy
from orchestrator.research import fastsim, optimum, traces

SETUP = fastsim.Setup(task_h=48.0, deadline_h=60.0, overhead_h=0.2)
OTHER = ("availability/16-node", "preemption/4-node", "preemption/1-node")
STEP_S = 600
WINDOW_TICKS = 360


def other_traces() -> list[tuple[str, npt.NDArray[np.bool_]]]:
    """The 2023 traces at 10-minute ticks (a tick is available if the trace is at its start), each
    multi-node trace read twice: one node available, and all of them (a gang)."""
    base = traces.traces_dir() / "skypilot-org-spot-traces"
    out = []
    for kind in OTHER:
        for path in sorted((base / kind).glob("*/*.json")):
            t = traces.load_trace(path)
            picks = (np.arange(int(len(t) * t.gap_seconds // STEP_S)) * STEP_S / t.gap_seconds).astype(int)
            counts = np.asarray(t.data)[picks]
            for nodes in sorted({1, int(counts.max())}):
                out.append((f"{path.parent.name}/{path.stem}@{nodes}", counts >= nodes))
    return out


def _cut(series: Sequence[tuple[str, npt.NDArray[np.bool_]]], per: int, seed: int = 0) -> npt.NDArray[np.bool_]:
    rng = np.random.default_rng(seed)
    wins = []
    for _, a in series:
        if len(a) < WINDOW_TICKS + 40:
            continue
        for start in rng.integers(0, len(a) - WINDOW_TICKS, size=per):
            wins.append(a[start : start + WINDOW_TICKS])
    return np.stack(wins)


def _one_node(prefix: str) -> list[npt.NDArray[np.bool_]]:
    folder = traces.traces_dir() / traces.ONE_NODE_SUBDIR
    return [traces.load_trace(p).available() for p in sorted(folder.glob(f"{prefix}*.json"))]


def _row(name: str, model: market_model.MarketModel | None, test: npt.NDArray[np.bool_]) -> str:
    auto = get_policy("auto") if model is None else ModelPolicy(model)
    up = np.mean([fastsim.run(get_policy("uniform-progress"), w, SETUP, track_history=False).cost for w in test])
    outs = [fastsim.run(auto, w, SETUP) for w in test]
    mine = np.mean([o.cost for o in outs])
    best = optimum.solve(test, SETUP).cost.mean()
    misses = sum(not o.deadline_met for o in outs)
    return (f"| {name} | {len(test)} | {up:.2f} | {mine:.2f} | {best:.2f} | {100 * (mine / up - 1):+.1f}% "
            f"| {100 * (up - mine) / (up - best):.0f}% | {misses} |")


def held_out(every: int = 2) -> list[str]:
    """Markdown lines: one row per split (C = 48 h, D = 60 h, d = 0.2 h)."""
    other = other_traces()
    zone = {z: np.concatenate([env_windows(e)[::every] for e in ONE_ZONE if e.startswith(z)])
            for z in ("us-west-2a", "us-west-2b")}
    lines = ["| split (fitted on -> tested on) | windows | uniform-progress | auto | omniscient | auto vs UP "
             "| gap closed | auto misses |", "|---|---|---|---|---|---|---|---|"]
    lines.append(_row("2022 probes -> 2023 traces (shipped model)", None, _cut(other, per=max(1, 40 // every))))
    lines.append(_row("us-west-2a -> us-west-2b", market_model.fit(_one_node("us-west-2a")), zone["us-west-2b"]))
    lines.append(_row("us-west-2b -> us-west-2a", market_model.fit(_one_node("us-west-2b")), zone["us-west-2a"]))
    everything = np.concatenate(list(zone.values()))
    lines.append(_row("2023 traces -> the 2,400 windows", market_model.fit([a for _, a in other]), everything))
    return lines
