"""The 24 h campaign in an unkind world, on every dataset that fits, at a start every 6 hours (issue 25).

    python bench/campaign_lodo.py                       # every dataset, starts every 6 h, seed 0
    python bench/campaign_lodo.py --seeds 0 1 2         # the spread over the world's draws too
    python bench/campaign_lodo.py --datasets aws-v100-4node --every-h 12 --offset-h 3
    python bench/campaign_lodo.py --write-docs          # replace the table in docs/benchmarks.md

Each run is `bench/_campaign_run.run_campaign` (the real loop, store and policy on the `sim` provider):
10,000 items, `workers = 32`, `market = "auto"`, a 24 h deadline, in the world of
`bench/_campaign_world.py` (per-worker reclamation draws, on-demand outages, late or missing notices,
item times from ESMFold's length scaling). The all-spot bound of a run is its own items' work at the
spot price. Figures: per dataset, the runs' cost over that bound (mean, median, worst, and the spread
over seeds at each start), deadlines met, items lost and duplicated.

No constant is tuned here: the campaign rules' constants (`core/campaign_plan.py`, `core/campaign_zones.py`)
were chosen before issue 25 on the April 2023 V100 week (`aws-v100-preempt-2023-04`, and checked on the
aws-04-19 CPU week), so that dataset's rows are not held out from them; the other four are. One rule
without a constant (no on-demand for new workers while there is time to spare) was chosen on one run
of `aws-v100-16node` (docs/benchmarks.md). A run takes minutes on a loaded 2-core machine, most of it
in the real `ItemStore` and loop (docs/benchmarks.md has the profile); `bench/_campaign_lodo_replay.py`
replays every start as arithmetic to score launch rules, and `--compare` sets it beside this sweep.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _campaign_world as cw
from bench._campaign_run import OVERHEAD_H, SPOT_USD, RunResult, RunSpec, run_campaign
from bench._table import replace_between
from orchestrator.research.traces import Trace
from providers.sim import SimClock

DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench/campaign_lodo.py:start -->", "<!-- bench/campaign_lodo.py:end -->"
ITEMS, WORKERS, DEADLINE_H, TARGET = 10_000, 32, 24.0, 1.10
CHOSEN_ON = "aws-v100-preempt-2023-04"  # where the campaign rules' constants were chosen (before issue 25)


def one(job: tuple[str, int, int, int]) -> tuple[str, int, int, float, RunResult, float]:
    """One run: (dataset, start tick, seed, bound $, result, on-demand outage hours in the window)."""
    name, start, seed, items = job
    data = cw.load(name)
    world = cw.World(data, seed, start, SimClock().now())
    per = cw.item_seconds(items, seed)
    traces = {z: Trace(data.gap_s, tuple(int(x) for x in data.counts[i])) for i, z in enumerate(data.zones)}
    result = run_campaign(RunSpec("deadline 24 h", "auto", WORKERS, DEADLINE_H), traces, items=items,
                          item_seconds=[float(x) for x in per], start_tick=start, world=world,
                          estimate_s=cw.ESTIMATE_S, max_hours=DEADLINE_H * 3)
    bound = float(per.sum()) / 3600.0 * SPOT_USD
    outage_h = sum(min(b, DEADLINE_H) - a for spells in world.od_outages.values() for a, b in spells if a < DEADLINE_H)
    return name, start, seed, bound, result, outage_h


def table(rows: list[tuple[str, int, int, float, RunResult, float]], names: list[str]) -> list[str]:
    head = ("| dataset | held out from the rules | starts x seeds | mean x bound | median | worst | worst start's "
            "spread over seeds | runs over 1.10 | on-demand h (mean) | launches (mean) | deadlines met | items lost "
            "| duplicates |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in names:
        mine = [r for r in rows if r[0] == name]
        if not mine:
            continue
        x = [r[4].cost_usd / r[3] for r in mine]
        by_start: dict[int, list[float]] = {}
        for r, v in zip(mine, x, strict=True):
            by_start.setdefault(r[1], []).append(v)
        worst_start = max(by_start, key=lambda s: max(by_start[s]))
        spread = by_start[worst_start]
        seeds = len({r[2] for r in mine})
        met = sum(1 for r in mine if r[4].deadline_met)
        out.append(
            f"| {name} | {'no' if name == CHOSEN_ON else 'yes'} | {len(by_start)} x {seeds} | "
            f"{statistics.mean(x):.3f} | {statistics.median(x):.3f} | {max(x):.3f} | "
            f"{min(spread):.3f}-{max(spread):.3f} (start {worst_start * cw.load(name).gap_s / 3600:.0f} h) | "
            f"{sum(1 for v in x if v > TARGET)} | {statistics.mean(r[4].on_demand_hours for r in mine):.1f} | "
            f"{statistics.mean(r[4].launches for r in mine):.0f} | {met} of {len(mine)} | "
            f"{sum(r[4].lost for r in mine)} | {sum(r[4].duplicates for r in mine)} |")
    return out


LINE = re.compile(r"^(?P<name>[\w.-]+) start (?P<start>\d+) seed (?P<seed>\d+): (?P<x>[\d.]+) x bound, "
                  r"deadline met (?P<met>True|False|None), lost (?P<lost>\d+)(?:, duplicates (?P<dup>\d+))?")


def summarise(log: Path) -> list[str]:
    """The table of a sweep from its progress lines (stderr), for a sweep stopped before its end: per
    dataset the runs' cost over their bound (mean, median, worst and its start), deadlines met, items
    lost (and duplicated, where the line says)."""
    runs: dict[str, list[tuple[int, int, float, bool, int, int | None]]] = {}
    for text in log.read_text().splitlines():
        m = LINE.match(text)
        if m:
            runs.setdefault(m["name"], []).append((int(m["start"]), int(m["seed"]), float(m["x"]), m["met"] == "True",
                                                   int(m["lost"]), None if m["dup"] is None else int(m["dup"])))
    out = [f"From the progress lines of `{log.name}`: {sum(map(len, runs.values()))} runs.", "",
           "| dataset | held out from the rules | runs (starts at h) | mean x bound | median | worst | runs over 1.10 "
           "| deadlines met | items lost | duplicates |", "|" + "---|" * 10]
    for name, rs in runs.items():
        gap = cw.load(name).gap_s
        x = [r[2] for r in rs]
        dups = [r[5] for r in rs]
        out.append(f"| {name} | {'no' if name == CHOSEN_ON else 'yes'} | {len(rs)} "
                   f"({', '.join(f'{r[0] * gap / 3600:.0f}' for r in rs)}) | {statistics.mean(x):.3f} | "
                   f"{statistics.median(x):.3f} | {max(x):.3f} | {sum(1 for v in x if v > TARGET)} | "
                   f"{sum(1 for r in rs if r[3])} of {len(rs)} | {sum(r[4] for r in rs)} | "
                   f"{'not logged' if None in dups else sum(d for d in dups if d is not None)} |")
    every = [r[2] for rs in runs.values() for r in rs]
    worst = max(every, default=float("nan"))
    out += ["", f"- at most {TARGET:.2f} x the all-spot bound at every start run: worst {worst:.3f} "
            f"({'met' if worst <= TARGET else 'NOT met'}; {sum(1 for v in every if v > TARGET)} of {len(every)} over)"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=list(cw.names()), choices=list(cw.names()))
    parser.add_argument("--every-h", type=float, default=6.0)
    parser.add_argument("--offset-h", type=float, default=0.0)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--items", type=int, default=ITEMS)
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--detail", action="store_true", help="one line per run as well")
    parser.add_argument("--limit", type=int, default=None, help="the first N runs of the round robin only")
    parser.add_argument("--summarise", type=Path, default=None, metavar="LOG",
                        help="print (and with --write-docs, write) the table of a sweep's progress lines; run nothing")
    args = parser.parse_args(argv)
    if args.summarise is not None:
        lines = summarise(args.summarise)
        print("\n".join(lines))
        if args.write_docs:
            replace_between(DOCS, START, END, lines)
        return 0
    per = {n: cw.starts(cw.load(n), every_h=args.every_h, deadline_h=DEADLINE_H, offset_h=args.offset_h)
           for n in args.datasets}
    # round robin over the datasets, so a sweep cut short (--limit) still covers each of them
    jobs = [(n, per[n][k], seed, args.items) for k in range(max(map(len, per.values()), default=0))
            for n in args.datasets if k < len(per[n]) for seed in args.seeds][:args.limit]
    began = time.perf_counter()
    rows = []
    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        for row in pool.imap(one, jobs, chunksize=1):
            rows.append(row)  # each run as it ends, so a long sweep shows where it stands
            r = row[4]
            print(f"{row[0]} start {row[1]} seed {row[2]}: {r.cost_usd / row[3]:.3f} x bound, "
                  f"deadline met {r.deadline_met}, lost {r.lost}, duplicates {r.duplicates}, on-demand h "
                  f"{r.on_demand_hours:.1f}, launches {r.launches}", file=sys.stderr, flush=True)
    took = time.perf_counter() - began
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Command: `python bench/campaign_lodo.py {argv_s}`".replace(" `", " `").rstrip() +
             f" ({took:.0f} s, {len(jobs)} runs, {args.processes} processes), {date.today().isoformat()}.", "",
             f"Machine: {os.uname().machine}, {os.cpu_count()} CPUs (AMD EPYC, shared with other work).", "",
             f"{args.items:,} items, {WORKERS} workers, `market = \"auto\"`, deadline {DEADLINE_H:g} h, restart "
             f"overhead {OVERHEAD_H} h; a start every {args.every_h:g} h from hour {args.offset_h:g}; world seeds "
             f"{', '.join(map(str, args.seeds))}.", "",
             *table(rows, args.datasets)]
    worst = max((r[4].cost_usd / r[3] for r in rows), default=float("nan"))
    lines += ["", f"- at most {TARGET:.2f} x the all-spot bound at every start: worst {worst:.3f} "
              f"({'met' if worst <= TARGET else 'NOT met'})",
              f"- deadlines met: {sum(1 for r in rows if r[4].deadline_met)} of {len(rows)}; items lost: "
              f"{sum(r[4].lost for r in rows)}; duplicated: {sum(r[4].duplicates for r in rows)}"]
    if args.detail:
        lines += ["", "| dataset | start h | seed | x bound | finish h | spot h | on-demand h | launches | "
                  "preemptions | redone | on-demand outage h |", "|" + "---|" * 11]
        for name, start, seed, bound, r, outage in rows:
            lines.append(f"| {name} | {start * cw.load(name).gap_s / 3600:.0f} | {seed} | {r.cost_usd / bound:.3f} | "
                         f"{r.finish_h if r.finish_h is None else round(r.finish_h, 2)} | {r.spot_hours:.1f} | "
                         f"{r.on_demand_hours:.1f} | {r.launches} | {r.preemptions} | {r.redone} | - | {outage:.1f} |")
    print("\n".join(lines))
    if args.write_docs:
        replace_between(DOCS, START, END, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
