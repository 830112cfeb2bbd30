"""A CPU stand-in for a protein folding campaign, written the way an orch job should be.

Each sequence gets a deterministic "fold" (rounds of sha256 standing in for a model's forward pass)
that yields a score and a fake pLDDT. The point is the resume logic, which is what a real folding
job needs unchanged:

* The results so far live *in the checkpoint* (results.tsv next to state.json), not only in the
  output file. The output file is rewritten atomically from the checkpointed results after every
  save, so after any number of reclamations it holds every sequence exactly once, in input order,
  byte for byte what an uninterrupted run writes.
* On SIGTERM (the agent's interruption notice) the sequence in hand is finished, a checkpoint is
  saved and the process exits with 143, never 0: 0 tells orch the task is done.
* Checkpoints are also taken every `--checkpoint-every` sequences, or sooner when the SDK's Young
  interval says a save is worth it.

Run by hand: `python fold.py [seqs.fasta] --out results.tsv` (checkpoints go to ./.fold-checkpoints).
Under orch: ORCH_CHECKPOINT_URI and friends come from the environment; for an array job
ORCH_ITEM_START / ORCH_ITEM_END select the sequences [start, end) of this task.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from orchestrator.job.checkpoint import INTERRUPTED_EXIT_CODE, Checkpointer
from orchestrator.job.checkpoint.filestore import write_atomic

HEADER = "id\tlength\tscore\tplddt"


def read_fasta(path: Path) -> list[tuple[str, str]]:
    records: list[tuple[str, str]] = []
    name, parts = "", list[str]()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith(">"):
            if name:
                records.append((name, "".join(parts)))
            name, parts = line[1:].split()[0], []
        elif line:
            parts.append(line.upper())
    if name:
        records.append((name, "".join(parts)))
    return records


def fold(name: str, seq: str, rounds: int) -> str:
    """One result line: deterministic in (seq, rounds), and costly enough to resemble work."""
    digest = hashlib.sha256(seq.encode()).digest()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    score = int.from_bytes(digest[:4], "big") / 2**32 * 100.0
    plddt = 40.0 + 55.0 * digest[4] / 255.0
    return f"{name}\t{len(seq)}\t{score:.3f}\t{plddt:.1f}"


def item_range(total: int) -> tuple[int, int]:
    start = int(os.environ.get("ORCH_ITEM_START") or 0)
    end = int(os.environ.get("ORCH_ITEM_END") or total)
    return max(start, 0), min(end, total)


def write_output(path: Path, lines: Sequence[str]) -> None:
    write_atomic(path, "\n".join([HEADER, *lines]).encode() + b"\n")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fasta", nargs="?", type=Path, default=Path(__file__).with_name("seqs.fasta"))
    p.add_argument("--out", type=Path, default=Path("results.tsv"))
    p.add_argument("--seconds-per-seq", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3000)
    p.add_argument("--checkpoint-every", type=int, default=5, metavar="N")
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    records = read_fasta(args.fasta)
    start, end = item_range(len(records))
    items = records[start:end]
    # What this task computes: a checkpoint of a different input must not be resumed as if it were ours.
    fingerprint = hashlib.sha256(json.dumps([items, args.rounds]).encode()).hexdigest()

    default_uri = (Path.cwd() / ".fold-checkpoints").as_uri()
    with Checkpointer.from_env(keep=3, default_uri=default_uri) as ckpt:
        lines: list[str] = []
        loaded = ckpt.load()
        if loaded is not None:
            state = json.loads(loaded.read_bytes("state.json"))
            if state["fingerprint"] != fingerprint:
                print(f"fold: checkpoint {loaded.seq} is for another input; refusing to resume", file=sys.stderr)
                return 2
            lines = loaded.read_bytes("results.tsv").decode().splitlines()[: state["done"]]
            print(f"fold: resuming at {len(lines)}/{len(items)} from checkpoint {loaded.seq}", file=sys.stderr)

        saved = len(lines) if loaded is not None else -1

        def save() -> None:
            nonlocal saved
            state = {"done": len(lines), "fingerprint": fingerprint}
            files = {"state.json": json.dumps(state).encode(), "results.tsv": "\n".join(lines).encode()}
            ckpt.save(files, progress=len(lines) / max(len(items), 1), metadata={"done": len(lines)})
            saved = len(lines)

        for name, seq in items[len(lines) :]:
            if ckpt.interrupted:
                break
            lines.append(fold(name, seq, args.rounds))
            time.sleep(args.seconds_per_seq)
            ckpt.report_progress(len(lines) / len(items))
            if len(lines) % max(args.checkpoint_every, 1) == 0 or ckpt.should_save():
                save()
                write_output(args.out, lines)
        if saved != len(lines):
            save()
        # Always from the checkpointed lines: a new machine starts without the previous output file.
        write_output(args.out, lines)
        if len(lines) < len(items):
            print(f"fold: interrupted at {len(lines)}/{len(items)}, checkpoint saved", file=sys.stderr)
            return INTERRUPTED_EXIT_CODE
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
