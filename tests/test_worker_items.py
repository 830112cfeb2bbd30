"""The worker SDK (`orch.items()`): done items are never redone, failures are recorded, leases are kept
alive while an item runs, and a notice stops the worker without losing the items it held."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.job.item_records import ItemCounts
from orchestrator.job.worker import ItemsConfigError, MemoryItemSource, is_out_of_memory, items
from orchestrator.store import Store
from orchestrator.store.item_source import SqlItemSource, worker_environment
from orchestrator.store.items import ItemStore
from tests.test_items_store import campaign

ROOT = Path(__file__).resolve().parent.parent


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which is what `is_out_of_memory` recognises."""


def test_every_item_is_done_once_and_results_are_kept() -> None:
    source = MemoryItemSource([{"n": i} for i in range(7)])
    for item in items(source=source, chunk=3, install_signal_handlers=False):
        assert item.done({"square": item.payload["n"] ** 2}) is True
    assert source.results == {i: {"square": i * i} for i in range(7)}


def test_an_exception_fails_the_item_and_the_campaign_goes_on() -> None:
    source = MemoryItemSource(["a", "b", "c"], max_failures=0)
    for item in items(source=source, install_signal_handlers=False):
        with item:
            if item.payload == "b":
                raise ValueError("bad residue")
            item.done(item.payload.upper())
    assert source.results == {0: "A", 2: "C"}
    assert source.failures == {1: ["ValueError: bad residue"]} and source.quarantined == {1}


def test_an_item_left_without_done_or_fail_counts_as_failed() -> None:
    source = MemoryItemSource(["a"], max_failures=1)
    seen = [item.index for item in items(source=source, install_signal_handlers=False)]
    assert seen == [0, 0]  # retried once, then quarantined
    assert source.quarantined == {0} and source.results == {}


def test_done_twice_is_a_mistake() -> None:
    source = MemoryItemSource(["a"])
    for item in items(source=source, install_signal_handlers=False):
        item.done(1)
        with pytest.raises(RuntimeError, match="already"):
            item.done(2)
    assert source.results == {0: 1}


def test_out_of_memory_is_recognised_by_name_and_message() -> None:
    assert is_out_of_memory(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert not is_out_of_memory(MemoryError("host memory"))
    assert not is_out_of_memory(ValueError("out of range"))


def test_a_notice_stops_taking_items_and_gives_back_the_held_ones() -> None:
    source = MemoryItemSource(list(range(10)))
    worker = items(source=source, chunk=4, install_signal_handlers=False)
    for item in worker:
        item.done(item.index)
        if item.index == 1:
            worker.mark_interrupted()  # what the agent's SIGTERM does
    assert source.results == {0: 0, 1: 1}
    # Items 2 and 3 were leased in the first chunk but not started: they are back for other workers.
    rest = items(source=source, install_signal_handlers=False)
    assert sorted(item.index for item in rest if item.done(item.index)) == list(range(2, 10))


def test_without_a_source_or_orch_environment_the_error_says_what_to_do() -> None:
    with pytest.raises(ItemsConfigError, match=r"MemoryItemSource\.from_file"):
        items(env={}, install_signal_handlers=False)


def test_a_source_from_an_items_file(tmp_path: Path) -> None:
    path = tmp_path / "seqs.fasta"
    path.write_text(">a one\nMKV\n>b\nGG\n")
    source = MemoryItemSource.from_file(str(path))
    got = []
    for item in items(source=source, install_signal_handlers=False):
        got.append((item.payload["id"], item.payload["sequence"]))
        item.done(None)
    assert got == [("a", "MKV"), ("b", "GG")]


# --- on orch's database (SQLite and PostgreSQL) ---------------------------------------------------


def _url(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def test_the_sql_source_runs_a_campaign_and_skips_done_items(store: Store) -> None:
    job = campaign(store, 6)
    first = SqlItemSource(_url(store), job_id=job, owner="a1")
    worker = items(source=first, chunk=2, install_signal_handlers=False)
    for item in worker:
        item.done({"n": item.payload["n"]})
        if item.index == 2:
            break  # the process stops (a crash would do the same; the lease would then lapse)
    assert ItemStore(store.engine).counts(job) == ItemCounts(done=3, queued=3)
    second = SqlItemSource(_url(store), job_id=job, owner="a2")
    assert [i.index for i in items(source=second, install_signal_handlers=False) if i.done(i.index)] == [3, 4, 5]
    assert [json.loads(r.result or "null") for r in ItemStore(store.engine).results(job)] == [
        {"n": 0}, {"n": 1}, {"n": 2}, 3, 4, 5]


def test_the_lease_is_renewed_while_an_item_runs(store: Store) -> None:
    job = campaign(store, 1)
    other = ItemStore(store.engine)
    source = SqlItemSource(_url(store), job_id=job, owner="slow", lease_seconds=1.5)
    for item in items(source=source, install_signal_handlers=False):
        time.sleep(3.0)  # twice the lease: without renewals the item would be free to take
        assert other.lease(job, "thief", 1, now=time.time(), lease_seconds=60.0) == []
        assert item.done("ok") is True
    assert other.counts(job) == ItemCounts(done=1)


def test_an_out_of_memory_item_waits_for_a_worker_with_more_memory(store: Store) -> None:
    job = campaign(store, 2)
    small = SqlItemSource(_url(store), job_id=job, owner="v100", gpu_memory_gb=16.0)
    for item in items(source=small, install_signal_handlers=False):
        with item:
            if item.index == 0:
                raise OutOfMemoryError("CUDA out of memory")
            item.done("small")
    store_items = ItemStore(store.engine)
    assert store_items.counts(job) == ItemCounts(done=1, failed=1) and store_items.memory_needed(job) == 16.0
    big = SqlItemSource(_url(store), job_id=job, owner="a100", gpu_memory_gb=80.0)
    assert [i.index for i in items(source=big, install_signal_handlers=False) if i.done("big")] == [0]


WORKER = """
import sys, time
from orchestrator.job import worker as orch
for item in orch.items(chunk=3):
    time.sleep(0.05)
    item.done(item.index)
    print(item.index, flush=True)
"""


def test_sigterm_stops_a_worker_process_and_nothing_it_held_is_lost(store: Store, tmp_path: Path) -> None:
    job = campaign(store, 40)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ORCH_ITEMS_URL": _url(store), "ORCH_JOB_ID": job,
           "ORCH_ATTEMPT_ID": "spot-1", "ORCH_ITEMS_LEASE_SECONDS": "600"}
    proc = subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # one item done: the worker is in its loop
    assert first.strip() == "0"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0  # the notice stops the loop; the job decides its exit status
    done_here = [int(first), *map(int, rest.split())]
    counts = ItemStore(store.engine).counts(job)
    assert counts.leased == 0, "items held at the notice must go back at once, not wait out a 600 s lease"
    assert counts.done == len(done_here) < 40
    env["ORCH_ATTEMPT_ID"] = "spot-2"
    finish = subprocess.run([sys.executable, "-c", WORKER], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    assert sorted(done_here + [int(x) for x in finish.stdout.split()]) == list(range(40))


def test_only_local_workers_are_given_the_database_url() -> None:
    url = "postgresql+psycopg://orch:secret@db.internal/orch"
    assert worker_environment(url, provider="local", gpu_memory_gb=16.0) == {
        "ORCH_ITEMS_URL": url, "ORCH_GPU_MEMORY_GB": "16"}
    for cloud in ("aws", "gcp", "kubernetes", "sim"):
        assert worker_environment(url, provider=cloud, gpu_memory_gb=16.0) == {}


def test_a_worker_without_the_control_plane_installed_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job side never imports the store: orch's database source comes from an entry point, and a job
    image that lacks it is told so in one line."""
    import importlib
    import importlib.metadata

    items_module = importlib.import_module("orchestrator.job.worker.items")

    assert items_module.database_source("sqlite://").__name__ == "SqlItemSource"
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: ())
    with pytest.raises(ItemsConfigError, match=r"orch\.item_sources"):
        items_module.source_from_env({"ORCH_ITEMS_URL": "sqlite://", "ORCH_JOB_ID": "j", "ORCH_ATTEMPT_ID": "a"})
