"""Helpers for tests that run the real reconcile loop against the local provider."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.cli.main import prepare
from orchestrator.cli.wiring import AGENT_COMMAND
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from orchestrator.store.repo import new_id
from providers.local.provider import LocalProvider
from vocab import Clock, SystemClock

REPO = Path(__file__).resolve().parent.parent
FOLD = REPO / "examples" / "fold"


def write_trace(path: Path, data: list[int], gap: float) -> Path:
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return path


def job_toml(tmp: Path, *, command: list[str], local: dict[str, object] | None = None, market: str = "auto",
             extra_schedule: str = "", hours: float = 0.02, deadline_hours: float = 2.0, name: str = "t",
             retry: str = "") -> Path:
    local = local if local is not None else {"availability": "always", "notice_seconds": 1}
    opts = "\n".join(f"{k} = {json.dumps(v)}" for k, v in local.items())
    text = f"""
name = "{name}"
command = {json.dumps(command)}
workdir = "."
[resources]
gpu = "V100"
[schedule]
estimated_hours = {hours}
deadline_hours = {deadline_hours}
market = "{market}"
restart_overhead_hours = 0.0005
{extra_schedule}
[checkpoint]
grace_seconds = 2
{retry}
[placement]
providers = ["local"]
[placement.options.local]
{opts}
"""
    path = tmp / "job.toml"
    path.write_text(text)
    return path


def submit(store: Store, path: Path, home: Path, now: float | None = None) -> str:
    now = time.time() if now is None else now
    spec, _ = prepare(str(path), now)
    job_id = new_id()
    return store.submit(spec, source=str(path), now=now, job_id=job_id,
                        checkpoint_uri=(home / "checkpoints" / job_id).as_uri())


def reconciler(store: Store, home: Path, *, clock: Clock | None = None, owner: str = "test",
               lease_seconds: float = 60.0) -> Reconciler:
    clock = clock or SystemClock()
    provider = LocalProvider(home / "local", clock, agent_command=AGENT_COMMAND)
    return Reconciler(store, {"local": provider}, clock, owner=owner, tick_seconds=0.2,
                      lease_seconds=lease_seconds)


def run_until(r: Reconciler, done: Callable[[], bool], timeout: float = 60.0, pause: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r.tick()
        if done():
            return
        time.sleep(pause)
    raise AssertionError(f"condition not reached within {timeout} s")


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def reclaim_node(home: Path, attempt_id: str, rank: int) -> None:
    """The local market takes one node of a gang now (its own notice), as clouds reclaim nodes one at a
    time: its record's reclaim time is set under the instance's lock, and the provider does the rest."""
    from providers.local.gang import node_instance_id
    from providers.local.records import InstanceDir

    idir = InstanceDir(home / "local" / "instances", node_instance_id(attempt_id, rank))
    with idir.lock():
        record = json.loads(idir.record_path.read_text())
        record["reclaim_at"] = time.time()
        idir.record_path.write_text(json.dumps(record))
