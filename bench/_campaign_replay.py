"""A fast replay of a campaign's spot workers over the preemption traces, to compare launch rules on many
start times (`python -m bench._campaign_replay`), where `bench/campaign.py` runs the real loop on two.

The model is the one the loop and `bench/campaign.py` share, reduced to arithmetic: 60 s ticks; the
workers wanted are `core.campaign_plan.workers_wanted`'s (the work left in 30% of the time left, at
most 32); a worker launches spot in an available zone, works after the restart overhead (0.1 h), and
is reclaimed when its zone's trace goes down (billed to that moment, its work kept but for the item
in hand, which is ignored here); the campaign ends when the work (10,000 x 14 s) is done. No
on-demand: the table reports how many runs would have missed the deadline on spot alone. Its
figures for the two starts of bench/campaign.py's tables match the real loop's to 0.003 (1.023 and
1.193 before the settle rule, 1.015 and 1.068 after, against 1.016 and 1.069 measured).

Rules: `launch anywhere` (before `core.campaign_zones`), and `settle S h` (a new worker launches only
in a zone up for S hours since it was seen coming back; up at first sight counts as settled),
optionally `spread` (the least occupied such zone); either only while every slot could do the work
left in half the time left (`core.campaign_plan.time_to_spare`), as shipped. Trace sets: the V100
week of bench/campaign.py (aws-04-22, 4 zones; the rule was chosen on it) and the CPU week aws-04-19
(3 zones), held out; campaigns of 32 and of 8 slots.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.research.traces import Trace, load_trace, traces_dir

OVERHEAD_H, TICK_H, WORK_H, SLOTS, SHARE = 0.1, 60 / 3600, 10_000 * 14 / 3600, 32, 0.3
SETS = {"aws-04-22 (V100, chosen on)": "skypilot-org-spot-traces/preemption/1-node/aws-04-22-2023",
        "aws-04-19 (held out)": "skypilot-org-spot-traces/preemption/1-node/aws-04-19-2023"}
SPARE_SHARE = 0.5  # core.campaign_plan.SPARE_SHARE
# A rule: (workers as [zone, launched_h], wanted, zones available now, when each came up, now, time to
# spare) -> appends the new workers.
Rule = Callable[[list[list[float]], int, list[bool], list[float | None], float, bool], None]


def rule(settle_h: float = 0.0, spread: bool = False) -> Rule:
    def launch(workers: list[list[float]], wanted: int, up: list[bool], since: list[float | None], now: float,
               spare: bool) -> None:
        settle = settle_h if spare else 0.0
        for _ in range(max(0, wanted - len(workers))):
            ok = [z for z in range(len(up)) if up[z] and now - (since[z] or 0.0) >= settle - 1e-9]
            if not ok:
                return
            if spread:
                count = {z: sum(1 for w in workers if w[0] == z) for z in ok}
                z = min(ok, key=lambda z: (count[z], since[z]))
            else:
                z = min(ok, key=lambda z: since[z] or 0.0)  # the longest up
            workers.append([z, now])
    return launch


def replay(traces: Sequence[Trace], start: int, deadline_h: float, launch: Rule,
           slots: int = SLOTS) -> tuple[float, float] | None:
    """(billed worker hours, finish hours) of one campaign from trace tick `start`; None past the traces."""
    gap = traces[0].gap_seconds
    avail = [t.available() for t in traces]
    since: list[float | None] = [-math.inf if a[start] else None for a in avail]  # up at first sight: settled
    workers: list[list[float]] = []
    left, billed, now = WORK_H, 0.0, 0.0
    while True:
        i = start + int(now * 3600 / gap)
        if i >= min(len(a) for a in avail):
            return None
        up = [bool(a[i]) for a in avail]
        since = [(s if s is not None else now) if u else None for s, u in zip(since, up, strict=True)]
        workers = [w for w in workers if up[int(w[0])]]
        usable_h = (deadline_h - now) * SHARE - OVERHEAD_H
        wanted = slots if usable_h <= 0 else max(1, min(slots, math.ceil(left / usable_h)))
        launch(workers, wanted, up, since, now, left / slots + OVERHEAD_H <= SPARE_SHARE * (deadline_h - now))
        work = sum(max(0.0, min(TICK_H, now + TICK_H - (w[1] + OVERHEAD_H))) for w in workers)
        if work >= left:
            return billed + len(workers) * TICK_H * left / work, now + TICK_H * left / work
        left, billed, now = left - work, billed + len(workers) * TICK_H, now + TICK_H


RULES = {"launch anywhere": rule(), "settle 0.15 h": rule(0.15), "settle 0.25 h": rule(0.25),
         "settle 0.25 h, spread": rule(0.25, True), "settle 0.4 h, spread": rule(0.4, True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=24.0)
    parser.add_argument("--every-h", type=float, default=3.0, help="hours between start times")
    args = parser.parse_args(argv)
    print(f"Deadline {args.deadline:g} h, a start every {args.every_h:g} h.\n")
    print("| traces | slots | rule | starts | mean x bound | median | worst | late on spot alone |")
    print("|---|---|---|---|---|---|---|---|")
    for label, folder in SETS.items():
        traces = [load_trace(f) for f in sorted((traces_dir() / folder).glob("*.json"))]
        n, gap = min(len(t.data) for t in traces), traces[0].gap_seconds
        starts = range(0, n - int(40 * 3600 / gap), int(args.every_h * 3600 / gap))
        for slots in (SLOTS, 8):
            for name, launch in RULES.items():
                runs = [r for s in starts if (r := replay(traces, s, args.deadline, launch, slots)) is not None]
                x = [billed / WORK_H for billed, _ in runs]
                late = sum(1 for _, finish in runs if finish > args.deadline)
                print(f"| {label} | {slots} | {name} | {len(runs)} | {statistics.mean(x):.3f} | "
                      f"{statistics.median(x):.3f} | {max(x):.3f} | {late} |")
    v100 = [load_trace(f) for f in sorted((traces_dir() / SETS["aws-04-22 (V100, chosen on)"]).glob("*.json"))]
    print("\nbench/campaign.py's two starts (x bound):")
    for name in ("launch anywhere", "settle 0.25 h, spread"):
        x = [(r[0] / WORK_H if (r := replay(v100, s, args.deadline, RULES[name], n)) else math.nan)
             for s, n in ((0, SLOTS), (11_475, SLOTS), (11_475, 8))]
        print(f"- {name}: tick 0 {x[0]:.3f}, tick 11,475 {x[1]:.3f}, tick 11,475 on 8 slots {x[2]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
