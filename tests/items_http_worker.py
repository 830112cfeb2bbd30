"""A campaign worker over the item service, run as its own process by tests/test_item_service.py.

It uses the SDK exactly as a job in a pod does (`orch.items()`, reading ORCH_ITEMS_ENDPOINT,
ORCH_ITEMS_TOKEN, ORCH_JOB_ID and ORCH_ATTEMPT_ID), under tests/import_blocker.py so that a database
driver or the kubernetes client cannot be imported. Modes: `work` commits until nothing is left and
appends each index whose commit was *the* result to OUT; `hang` starts one item of a chunk of three,
writes OUT.started and waits to be killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from orchestrator.job import worker as orch


def main(mode: str, out: str) -> int:
    if mode == "hang":
        for item in orch.items(chunk=3):
            Path(out + ".started").write_text(str(item.index))
            time.sleep(600)
        return 1
    with Path(out).open("a") as wins:
        for item in orch.items(chunk=2):
            with item:
                if item.done({"square": item.payload["n"] ** 2}):
                    print(item.index, file=wins, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
