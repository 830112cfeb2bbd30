"""What the AWS and GCP campaign tests' test hosts share: ticking the loop until a condition holds, and
killing the instances' processes they booted. Each host's `tick` runs one loop tick and plays its cloud."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


class BootingHost:
    def __init__(self) -> None:
        self.booted: dict[str, subprocess.Popen[bytes]] = {}  # instance -> the process its boot script runs

    def tick(self) -> None:
        raise NotImplementedError

    def until(self, done: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.tick()
            time.sleep(0.1)

    def kill(self) -> None:
        for agent in self.booted.values():
            if agent.poll() is None:
                agent.kill()
                agent.wait(timeout=5)
