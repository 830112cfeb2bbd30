"""The campaign benchmark (issue 11): 10,000 items by a deadline, through the real loop on the `sim` provider.

    python bench/campaign.py                 # the table: 10,000 items, five runs (a few minutes on 2 cores)
    python bench/campaign.py --quick         # 200 items on 4 workers: seconds (the smoke test's size)
    python bench/campaign.py --write-docs    # also replace the table in docs/benchmarks.md

A campaign of 10,000 items of ~14 s each on a V100 (≈39 GPU-hours) is submitted with `[array] items`
(a generated text file) and `workers`, then run by the real `Reconciler` over the `sim` provider
replaying the public preemption traces of one V100 in four AWS zones (April 2023, 32 s ticks;
$0.918/h spot as recorded in the traces, $3.06/h on-demand). The workers' SDK is simulated: every
live worker leases, starts and commits items through the `ItemStore` at 14 s of simulated time per
item, so a reclaimed worker's item in hand is left unfinished and returned by the loop
(`bench/_campaign_workers.py`). Runs: `market = "auto"` with deadlines of 2, 6 and 24 hours; the
same workers on on-demand only; and one spot GPU with no deadline. The all-spot lower bound is the
work itself at the spot price (items x 14 s x $0.918/h): no restart overhead, no reclamation.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._campaign_run import (
    OVERHEAD_H,
    SPOT_USD,
    TRACE_FOLDER,
    ZONES,
    RunResult,
    RunSpec,
    load_traces,
    run_campaign,
)
from bench._table import replace_between
from orchestrator.research.traces import traces_dir

DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench/campaign.py:start -->", "<!-- bench/campaign.py:end -->"
ITEM_SECONDS = 14.0


def runs(workers: int) -> list[RunSpec]:
    """The first table's rows, in order: the three deadlines, then the two yardsticks."""
    return [RunSpec("deadline 2 h", "auto", workers, 2.0), RunSpec("deadline 6 h", "auto", workers, 6.0),
            RunSpec("deadline 24 h", "auto", workers, 24.0), RunSpec("on-demand only", "on-demand", workers),
            RunSpec("one spot GPU", "spot", 1)]


def scarce_runs(workers: int, few: int) -> list[RunSpec]:
    """The second table's rows (a start where spot runs out): the three deadlines, and the 24 h one
    again with `few` workers, the count a plan that sizes workers by the deadline would choose."""
    return [*runs(workers)[:3], RunSpec(f"deadline 24 h, {few} workers", "auto", few, 24.0)]


def lower_bound_usd(items: int, item_seconds: float = ITEM_SECONDS) -> float:
    """The all-spot lower bound: the work alone, billed at the spot price."""
    return items * item_seconds / 3600.0 * SPOT_USD


def _one(job: tuple[RunSpec, int, int]) -> RunResult:
    """One run, in a worker process (each run has its own store and clock)."""
    run, items, start_tick = job
    return run_campaign(run, load_traces(), items=items, item_seconds=ITEM_SECONDS, start_tick=start_tick)


def table(results: list[RunResult], items: int) -> list[str]:
    bound = lower_bound_usd(items)
    head = ("| run | market | workers | cost | x lower bound | finish | spot h | on-demand h | overhead h | "
            "in hand h | idle h | launches | preemptions | items lost | items redone | duplicates | deadline met |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        finish = "not finished" if r.finish_h is None else f"{r.finish_h:.2f} h"
        met = {None: "(none)", True: "yes", False: "**no**"}[r.deadline_met]
        lines.append(f"| {r.run.label} | {r.run.market} | {r.run.workers} | ${r.cost_usd:,.2f} | "
                     f"{r.cost_usd / bound:.3f} | {finish} | {r.spot_hours:.1f} | {r.on_demand_hours:.1f} | "
                     f"{r.overhead_h:.1f} | {r.lost_h:.2f} | {r.idle_h:.1f} | "
                     f"{r.launches} | {r.preemptions} | {r.lost} | {r.redone} | {r.duplicates} | {met} |")
    lines.append(f"| all-spot lower bound | spot | - | ${bound:,.2f} | 1.000 | - | "
                 f"{items * ITEM_SECONDS / 3600:.1f} | 0.0 | 0.0 | 0.00 | 0.0 | - | - | - | - | - | - |")
    return lines


def targets(results: list[RunResult], items: int) -> list[str]:
    """The issue's targets, each with its measured figure."""
    bound = lower_bound_usd(items)
    by = {r.run.label: r for r in results}
    d24 = by.get("deadline 24 h")
    ratio = None if d24 is None else d24.cost_usd / bound
    deadlines = [r for r in results if r.run.deadline_h is not None]
    return [
        f"- 24 h campaign at most 1.15 x the all-spot lower bound: "
        f"{'n/a' if ratio is None else f'{ratio:.3f}'} ({'met' if ratio is not None and ratio <= 1.15 else 'NOT met'})",
        f"- every deadline met: {sum(1 for r in deadlines if r.deadline_met)} of {len(deadlines)}",
        f"- items lost: {sum(r.lost for r in results)}; duplicated in the output: "
        f"{sum(r.duplicates for r in results)} (over all runs)",
    ]


def machine() -> str:
    return f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def report(args: argparse.Namespace) -> tuple[list[str], list[RunResult]]:
    first = [(r, args.items, args.start_tick) for r in runs(args.workers)]
    second = [] if args.scarce_tick < 0 else [(r, args.items, args.scarce_tick)
                                              for r in scarce_runs(args.workers, args.few_workers)]
    started = time.perf_counter()
    if args.processes > 1:
        with multiprocessing.get_context("fork").Pool(args.processes) as pool:
            results = pool.map(_one, first + second, chunksize=1)
    else:
        results = [_one(j) for j in first + second]
    elapsed = time.perf_counter() - started
    flags = " --quick" if args.quick else ""
    extra = "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in DEFAULTS
                    if not args.quick and getattr(args, k) != DEFAULTS[k])
    gpu_h = args.items * ITEM_SECONDS / 3600
    lines = [f"Command: `python bench/campaign.py{flags}{extra}` ({elapsed:.0f} s with {args.processes} "
             f"worker processes), {date.today().isoformat()}.", "",
             f"Machine: {machine()}.", "",
             f"{args.items:,} items of {ITEM_SECONDS:g} s ({gpu_h:.1f} GPU-hours); traces `{TRACE_FOLDER}` "
             f"({', '.join(ZONES)}); restart overhead {OVERHEAD_H} h a launch; loop tick 60 s.", "",
             f"#### Starting at trace tick {args.start_tick} ({_day(args.start_tick)})", "",
             *table(results[:len(first)], args.items), "", *targets(results[:len(first)], args.items)]
    if second:
        lines += ["", f"#### Starting at trace tick {args.scarce_tick} ({_day(args.scarce_tick)}): spot runs out", "",
                  *table(results[len(first):], args.items), "", *targets(results[len(first):], args.items)]
    return lines, results


def _day(tick: int) -> str:
    return f"{tick * 32 / 3600:.1f} h into the week"


# The second start: three of the four zones lose spot within 90 minutes, then none has any for ~8 h.
DEFAULTS = {"items": 10_000, "workers": 32, "start_tick": 0, "scarce_tick": 11_475, "few_workers": 8}


def write_docs(lines: list[str]) -> None:
    replace_between(DOCS, START, END, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 items on 4 workers")
    parser.add_argument("--items", type=int, default=DEFAULTS["items"])
    parser.add_argument("--workers", type=int, default=DEFAULTS["workers"], help="[array] workers of the campaigns")
    parser.add_argument("--start-tick", type=int, default=DEFAULTS["start_tick"],
                        help="the trace tick (32 s each) at which every run starts")
    parser.add_argument("--scarce-tick", type=int, default=DEFAULTS["scarce_tick"],
                        help="the start of the second table, where spot runs out (-1: no second table)")
    parser.add_argument("--few-workers", type=int, default=DEFAULTS["few_workers"],
                        help="workers of the second table's extra 24 h run")
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--write-docs", action="store_true", help=f"replace the table in {DOCS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.workers, args.few_workers = 200, 4, 2
    if not (traces_dir() / TRACE_FOLDER).is_dir():
        print(f"public traces not found under {traces_dir()} (set ORCH_TRACES_DIR)", file=sys.stderr)
        return 2
    lines, _ = report(args)
    print("\n".join(lines))
    if args.write_docs:
        write_docs(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
