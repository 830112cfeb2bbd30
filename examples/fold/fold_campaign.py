"""The fold example as a campaign worker: items leased from orch, one result per sequence, exactly once.

Where `fold.py` is one task that works through its own slice and keeps its results in checkpoints,
this worker takes whatever sequences are waiting (`orch.items()`), commits each result the moment it
is computed, and on an interruption notice stops taking new ones (the sequence in hand is finished
within the grace period, the ones it had leased but not started go back to the queue). Any number of
these run side by side; `orch results JOB --json` has every sequence once, in input order.

Run under orch as `[array] items = "campaign.fasta"` (campaign.toml). Exit status: 0 when nothing is
left to take, 143 (INTERRUPTED_EXIT_CODE) when a notice stopped it: "resume me", not "done".
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from fold import fold  # the same deterministic stand-in for a model's forward pass

from orchestrator.job import worker as orch
from orchestrator.job.checkpoint import INTERRUPTED_EXIT_CODE


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds-per-seq", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--chunk", type=int, default=2, help="sequences leased at a time")
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    worker = orch.items(chunk=args.chunk)
    for item in worker:
        with item:  # an exception fails this sequence only (an OOM is retried on a larger GPU)
            record = item.payload
            name, length, score, plddt = fold(record["id"], record["sequence"], args.rounds).split("\t")
            time.sleep(args.seconds_per_seq)
            item.done({"id": name, "length": int(length), "score": float(score), "plddt": float(plddt)})
    return INTERRUPTED_EXIT_CODE if worker.interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
