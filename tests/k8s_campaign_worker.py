"""The user's command in a campaign pod, for tests/test_k8s_campaign.py: run under the real orch agent by
the test's kubelet, with the pod's environment only. Each commit that was *the* item's result is appended
to $WINS (a file the test reads) as "index attempt"."""

from __future__ import annotations

import os
import time

from orchestrator.job import worker as orch


def main() -> int:
    with open(os.environ["WINS"], "a") as wins:
        for item in orch.items(chunk=2):
            with item:
                time.sleep(0.03)  # some work, so that a reclamation finds items in hand
                if item.done({"square": item.payload["n"] ** 2}):
                    print(item.index, os.environ["ORCH_ATTEMPT_ID"], file=wins, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
