"""Worker processes racing on one campaign, on SQLite and PostgreSQL: every item done exactly once.

One worker is killed (SIGKILL) in the middle of an item and returned by the loop's `release_worker`;
another is killed with a short lease and returned only by its lease lapsing; a third lets its lease
lapse and commits after others re-leased and finished its items: its commits must all be refused.
The rest work until nothing is left. Each process appends the indexes whose commit was *the* result;
together they must be every index once, and the stored results must be the right ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.job.item_records import ItemCounts
from orchestrator.store import Store
from orchestrator.store.items import ItemStore
from tests.test_items_store import campaign

ROOT = Path(__file__).resolve().parent.parent
N = 200


def worker(url: str, job: str, owner: str, mode: str, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.items_race_worker", url, job, owner, mode, str(out),
                             *extra], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> list[int]:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, "the worker died before starting its item"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return [int(i) for i in path.read_text().split(",")]


def test_processes_racing_with_killed_and_stale_workers_do_every_item_once(
        store: Store, db_url: str, tmp_path: Path) -> None:
    job = campaign(store, N)
    items = ItemStore(store.engine)
    out = tmp_path / "wins"
    out.mkdir()
    url = store.engine.url.render_as_string(hide_password=False)

    killed = worker(url, job, "killed", "hang", out / "killed", "600")
    held_killed = wait_for(out / "killed.started", killed)
    lapsing = worker(url, job, "lapsing", "hang", out / "lapsing", "1.0")
    held_lapsing = wait_for(out / "lapsing.started", lapsing)
    for p in (killed, lapsing):
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert items.counts(job).leased == 6
    # The loop saw the first worker's instance end: its items go back at once (the lapsing one's wait).
    assert items.release_worker("killed", now=time.time()) == 3

    stale = worker(url, job, "stale", "stale", out / "stale")
    held_stale = wait_for(out / "stale.started", stale)
    workers = [worker(url, job, f"w{i}", "work", out / f"w{i}") for i in range(4)]
    for p in workers:
        assert p.wait(timeout=300) == 0
    (out / "stale.go").touch()  # the stale worker commits only now, when every item has its result
    assert stale.wait(timeout=60) == 0
    assert (out / "stale").read_text() == "", "a commit after the items' results were in counted"

    wins = sorted(int(line) for f in out.glob("*") if f.suffix != ".started"
                  for line in f.read_text().split())
    assert wins == list(range(N)), "an item was committed twice, or never"
    assert items.counts(job) == ItemCounts(done=N)
    results = list(items.results(job))
    assert [r.index for r in results] == list(range(N))
    assert all(json.loads(r.result or "null") == {"square": r.index ** 2} for r in results)
    by = {r.index: r.done_by for r in results}
    assert "killed" not in by.values() and "lapsing" not in by.values()
    assert {by[i] for i in held_killed + held_lapsing + held_stale} <= {"w0", "w1", "w2", "w3"}
