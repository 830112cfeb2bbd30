"""A stand-in for multi-node pre-training, written the way a gang job on orch should be.

Every node of the gang runs this file once (orch's agent starts it with the gang's variables, see
docs/gangs.md). Each step every rank computes the gradient of its share of a global batch, the ranks
all-reduce it over plain TCP (`allreduce.py`: rank 0 at MASTER_ADDR:MASTER_PORT sums and sends the sum
back) and apply the same update to the same parameters. What matters is the resume logic, which a
real data-parallel job needs unchanged:

* Rank 0's checkpoint is the gang's: only rank 0 saves (periodically, on a notice, and when the gang
  breaks), and at start every rank loads the same newest checkpoint through the SDK. The ranks show
  each other the step and a digest of what they loaded before training, and refuse to go on apart.
* A notice reaches one node first (the reclaimed one); its flag rides on the next all-reduce, so every
  rank stops after the same step, rank 0 saves exactly that state, and every rank exits 143 (never 0:
  0 tells orch the task is done).
* A rank that loses a peer (a node gone without notice, a hung process) exits 75 within seconds, after
  rank 0 saved the last complete step: nobody waits for the grace period's SIGKILL.
* The arithmetic is exact: gradients are multiples of 1/256, the step size a power of two, and the
  global batch is split across however many ranks there are. So the final parameters are bit-identical
  whether the run was interrupted or not, and even when it resumes on fewer nodes (an elastic gang).

Launch (every rank, same argv): `python3 train.py --steps 600 --out params.json` with
ORCH_NODE_RANK (or NODE_RANK), ORCH_NUM_NODES (or NNODES), MASTER_ADDR, MASTER_PORT and
ORCH_CHECKPOINT_URI in the environment. Without the gang variables it runs as a gang of one;
without ORCH_CHECKPOINT_URI its checkpoints go to ./.pretrain-checkpoints.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from allreduce import Alone, GangMismatch, Head, Hello, Member, PeerLost

from orchestrator.job.checkpoint import INTERRUPTED_EXIT_CODE, Checkpointer
from orchestrator.job.checkpoint.filestore import write_atomic

PEER_LOST_EXIT_CODE = 75  # sysexits' EX_TEMPFAIL: the gang broke; rank 0 saved what every rank agreed on
SETUP_EXIT_CODE = 2  # bad variables, or ranks that resumed from different states: retrying will not help
FORMULA = 1  # bump when the stand-in's maths changes: older checkpoints then belong to another run
LEARNING_RATE = 2.0**-6  # a power of two: the update is exact
MAX_BATCH = 64  # keeps LEARNING_RATE x batch below 1, so the fit converges


@dataclass(frozen=True, slots=True)
class Gang:
    """This node's place in its gang, from the variables the agent gives every node."""

    rank: int
    nodes: int
    addr: str
    port: int


def gang_from_env(env: Mapping[str, str]) -> Gang:
    """orch's names first, torchrun's as the fallback; ValueError names the variable that is wrong."""

    def number(default: int, *names: str) -> int:
        for name in names:
            if env.get(name):
                try:
                    return int(env[name])
                except ValueError:
                    raise ValueError(f"{name} must be an integer, not {env[name]!r}") from None
        return default

    nodes = number(1, "ORCH_NUM_NODES", "NNODES")
    rank = number(0, "ORCH_NODE_RANK", "NODE_RANK")
    port = number(29500, "MASTER_PORT")
    if not 1 <= nodes <= 128 or not 0 <= rank < nodes:
        raise ValueError(f"rank {rank} of {nodes} nodes is not a place in a gang")
    if not 0 < port < 65536:
        raise ValueError(f"MASTER_PORT {port} is not a TCP port")
    addr = env.get("MASTER_ADDR", "")
    if nodes > 1 and not addr:
        raise ValueError("MASTER_ADDR is not set: a gang node needs the head's address (orch's agent sets it)")
    return Gang(rank, nodes, addr, port)


# -- the model: a least-squares fit whose every float operation is exact -------------------------------


def target(sample: int, i: int) -> float:
    return ((sample * 7919 + i * 104729) % 257 - 128) / 16


def local_gradient(params: Sequence[float], step: int, gang: Gang, batch: int) -> list[float]:
    """This rank's share of the global batch (samples rank, rank + N, ...), summed."""
    grad = [0.0] * len(params)
    for j in range(gang.rank, batch, gang.nodes):
        sample = step * batch + j
        for i, p in enumerate(params):
            grad[i] += math.floor((p - target(sample, i)) * 256) / 256
    return grad


def apply(params: Sequence[float], total: Sequence[float]) -> list[float]:
    return [p - LEARNING_RATE * g for p, g in zip(params, total, strict=True)]


def digest(params: Sequence[float]) -> str:
    return hashlib.sha256(struct.pack(f"<{len(params)}d", *params)).hexdigest()


# -- the run --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="training steps in all (default 600)")
    p.add_argument("--out", type=Path, default=Path("params.json"), help="rank 0's final parameters (JSON)")
    p.add_argument("--dim", type=int, default=8, help="parameters (default 8)")
    p.add_argument("--batch", type=int, default=16, help=f"global samples per step, 1..{MAX_BATCH} (default 16)")
    p.add_argument("--step-seconds", type=float, default=0.1, help="stand-in compute time per step")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="STEPS",
                   help="rank 0 saves this often, or sooner when the SDK's interval says so")
    p.add_argument("--connect-timeout", type=float, default=600.0,
                   help="seconds the ranks wait for each other at start (nodes boot at different times)")
    p.add_argument("--peer-timeout", type=float, default=60.0,
                   help="seconds without a peer's answer before the gang is given up (keep it under the grace)")
    args = p.parse_args(argv)
    if not 1 <= args.batch <= MAX_BATCH or args.dim < 1 or args.steps < 0:
        p.error(f"need --dim >= 1, --steps >= 0 and --batch within 1..{MAX_BATCH}")
    return args


Link = Alone | Head | Member


def open_link(gang: Gang, me: Hello, args: argparse.Namespace, ckpt: Checkpointer,
              say: Callable[[str], None]) -> Link:
    """The all-reduce, once every rank has joined (PeerLost, GangMismatch or OSError otherwise)."""
    if gang.nodes == 1:
        return Alone()
    if gang.rank == 0:
        return Head(me, gang.addr, gang.port, connect_timeout=args.connect_timeout,
                    peer_timeout=args.peer_timeout, interrupted=lambda: ckpt.interrupted, log=say)
    return Member(me, gang.addr, gang.port, connect_timeout=args.connect_timeout,
                  peer_timeout=args.peer_timeout, interrupted=lambda: ckpt.interrupted)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        gang = gang_from_env(os.environ)
    except ValueError as exc:
        print(f"pretrain: {exc}", file=sys.stderr)
        return SETUP_EXIT_CODE

    def say(msg: str) -> None:
        print(f"pretrain[{gang.rank}/{gang.nodes}]: {msg}", file=sys.stderr, flush=True)

    # What this run computes: a checkpoint of another configuration must not be resumed as if it were ours.
    fingerprint = hashlib.sha256(json.dumps([FORMULA, args.dim, args.batch]).encode()).hexdigest()
    with Checkpointer.from_env(keep=3, default_uri=(Path.cwd() / ".pretrain-checkpoints").as_uri()) as ckpt:
        step, params = 0, [float(i) for i in range(args.dim)]
        loaded = ckpt.load()  # every rank, before the join: rank 0 saves nothing until all have loaded
        if loaded is not None:
            state = json.loads(loaded.read_bytes("state.json"))
            if state["fingerprint"] != fingerprint:
                say(f"checkpoint {loaded.seq} is for another configuration; refusing to resume")
                return SETUP_EXIT_CODE
            step, params = int(state["step"]), [float(x) for x in state["params"]]
            say(f"resuming at step {step} from checkpoint {loaded.seq}")
        head, saved = gang.rank == 0, step

        def save() -> None:
            nonlocal saved
            doc = {"step": step, "params": params, "fingerprint": fingerprint, "nodes": gang.nodes}
            ckpt.save({"state.json": json.dumps(doc).encode()}, progress=min(step / max(args.steps, 1), 1.0),
                      metadata={"step": step})
            saved = step
            say(f"checkpoint at step {step}")

        try:
            link = open_link(gang, Hello(gang.rank, gang.nodes, step, digest(params)), args, ckpt, say)
        except GangMismatch as exc:
            say(f"the gang did not resume from one state: {exc}")
            return SETUP_EXIT_CODE
        except (PeerLost, OSError) as exc:
            say(f"the gang did not assemble: {exc}")
            return INTERRUPTED_EXIT_CODE if ckpt.interrupted else PEER_LOST_EXIT_CODE

        stop = False
        say(f"training from step {step} to {args.steps} on {gang.nodes} node(s)")
        try:
            while step < args.steps and not stop:
                time.sleep(args.step_seconds)
                grad = local_gradient(params, step, gang, args.batch)
                total, stop = link.exchange(step, grad, ckpt.interrupted)
                params, step = apply(params, total), step + 1
                if head:
                    ckpt.report_progress(step / args.steps)
                    if not stop and (step % max(args.checkpoint_every, 1) == 0 or ckpt.should_save()):
                        save()
        except PeerLost as exc:
            say(f"lost the gang at step {step}: {exc}")
            if head and saved != step:
                save()  # rank 0's parameters are always those of a complete step
            return INTERRUPTED_EXIT_CODE if ckpt.interrupted else PEER_LOST_EXIT_CODE
        finally:
            link.close()
        if head and saved != step:
            save()
        if step < args.steps:
            say(f"stopped after step {step} by an interruption notice (rank 0 saved it)")
            return INTERRUPTED_EXIT_CODE
        if head:
            out = {"steps": step, "params": params, "sha256": digest(params)}
            write_atomic(args.out, json.dumps(out, indent=1).encode() + b"\n")
            say(f"done: {step} steps, parameters {digest(params)[:16]} in {args.out}")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
