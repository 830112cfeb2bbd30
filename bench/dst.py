"""`python -m bench.dst`: the deterministic simulation harness over the real loop (see `bench._dst_run`).

    python -m bench.dst --seeds 1000            # a table of violations per invariant
    python -m bench.dst --seeds 50 --json       # {"runs", "violations", "failing_seeds"}
    python -m bench.dst --seed 17 --trace       # replay one seed, tick by tick; a failing one is shrunk to
                                                # the shortest prefix of its faults that still fails
    python -m bench.dst --seeds 50 --postgres URL   # the same on PostgreSQL (a fresh database per run)

It re-executes itself with PYTHONHASHSEED=0, so that a seed replays the same trace in any process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from bench._dst_check import INVARIANTS
from bench._dst_run import Outcome, run_seed, shortest_failing_prefix


def _reexec_hash_seed() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable, "-m", "bench.dst", *sys.argv[1:]], env)


def summarize(outcomes: list[Outcome]) -> dict[str, object]:
    counts = {name: sum(1 for o in outcomes if name in o.violations) for name in INVARIANTS}
    return {"runs": len(outcomes), "violations": counts,
            "failing_seeds": [o.seed for o in outcomes if o.failed]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dst", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=0, help="run seeds 0..N-1")
    p.add_argument("--first", type=int, default=0, help="the first seed of --seeds")
    p.add_argument("--seed", type=int, help="run one seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trace", action="store_true", help="with --seed: print the trace, one line a tick")
    p.add_argument("--no-shrink", action="store_true", help="with --seed: do not look for the shortest failing prefix")
    p.add_argument("--postgres", metavar="URL", help="run on this PostgreSQL database instead of SQLite in memory")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    seeds = [args.seed] if args.seed is not None else list(range(args.first, args.first + args.seeds))
    if not seeds:
        p.error("give --seeds N or --seed S")
    started = time.perf_counter()
    outcomes = []
    for i, seed in enumerate(seeds):
        if args.postgres:
            _reset_postgres(args.postgres)
        outcomes.append(run_seed(seed, url=args.postgres))
        if len(seeds) > 1 and (i + 1) % 25 == 0:
            print(f"{i + 1} of {len(seeds)} seeds, failing: {[o.seed for o in outcomes if o.failed]}, "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    if args.json:
        print(json.dumps(summarize(outcomes)))
    else:
        _table(outcomes, wall)
    if args.seed is not None:
        o = outcomes[0]
        if args.trace:
            print("\n".join(o.trace))
        print(f"seed {o.seed}: {o.ticks} ticks, trace {o.digest()}, faults injected: {len(o.injected)}")
        for name, messages in o.violations.items():
            for m in messages[:5]:
                print(f"  {name}: {m}")
        if o.failed and not args.no_shrink:
            prefix = shortest_failing_prefix(o.seed, o.faults, url=args.postgres)
            print(f"shortest failing prefix: {len(prefix)} of {len(o.faults)} faults")
            for f in prefix:
                print(f"  {f}")
    return 1 if any(o.failed for o in outcomes) else 0


def _table(outcomes: list[Outcome], wall: float) -> None:
    s = summarize(outcomes)
    counts = s["violations"]
    assert isinstance(counts, dict)
    print(f"| invariant | seeds violating (of {len(outcomes)}) |")
    print("|---|---|")
    for name in INVARIANTS:
        print(f"| {name} | {counts[name]} |")
    ticks = sum(o.ticks for o in outcomes)
    faults = sum(len(o.injected) for o in outcomes)
    deadlines, budgets = (sum(len(o.excused.get(name, ())) for o in outcomes) for name in ("deadline", "budget"))
    print(f"\nnot violations: {deadlines} deadlines missed while on-demand was out or the controller held back, "
          f"{budgets} budgets passed while it was held")
    print(f"\n{len(outcomes)} seeds, {ticks} ticks, {faults} faults injected, {wall:.1f} s "
          f"({1000 * wall / max(1, ticks):.1f} ms a tick); failing seeds: {s['failing_seeds'][:20]}")
    failing = s["failing_seeds"]
    assert isinstance(failing, list)
    for seed in failing[:5]:
        print(f"replay: python -m bench.dst --seed {seed} --trace")


def _reset_postgres(url: str) -> None:
    """A fresh schema for each seed: drop every table of the database."""
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


if __name__ == "__main__":
    _reexec_hash_seed()
    sys.exit(main())
