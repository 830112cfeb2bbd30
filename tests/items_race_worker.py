"""A campaign worker for tests/test_items_race.py, run as its own process: `python -m tests.items_race_worker`.

Modes: `work` leases and commits until no item is left; `hang` leases a chunk, starts one item and
waits to be killed; `stale` leases a chunk with a short lease, waits for OUT.go (by then others have
taken the items over and committed them), then commits anyway. Every commit that was *the* result
is appended to OUT as its index.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from orchestrator.store import make_engine
from orchestrator.store.items import ItemStore


def answer(payload: str) -> str:
    return json.dumps({"square": json.loads(payload)["n"] ** 2})


def main(url: str, job: str, owner: str, mode: str, out: str) -> int:
    store = ItemStore(make_engine(url))
    with Path(out).open("a") as wins:
        return run(store, job, owner, mode, out, wins)


def run(store: ItemStore, job: str, owner: str, mode: str, out: str, wins: TextIO) -> int:
    if mode == "hang":
        held = store.lease(job, owner, 3, now=time.time(), lease_seconds=float(sys.argv[6]))
        store.start(job, owner, held[0], now=time.time())
        Path(out + ".started").write_text(",".join(str(x.index) for x in held))
        time.sleep(600)
        return 1
    if mode == "stale":
        held = store.lease(job, owner, 4, now=time.time(), lease_seconds=0.3)
        Path(out + ".started").write_text(",".join(str(x.index) for x in held))
        while not Path(out + ".go").exists():  # the test says when: after others took the items over
            time.sleep(0.05)
        for x in held:
            if store.complete(job, owner, x, now=time.time(), result=answer(x.payload)):
                print(x.index, file=wins, flush=True)
        return 0
    while True:
        held = store.lease(job, owner, 3, now=time.time(), lease_seconds=30.0)
        if not held:
            if store.items_left(job) == 0:
                return 0
            time.sleep(0.1)  # items still held by others (a dead worker's lease has not lapsed yet)
            continue
        for x in held:
            store.start(job, owner, x, now=time.time())
            if store.complete(job, owner, x, now=time.time(), result=answer(x.payload)):
                print(x.index, file=wins, flush=True)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
