"""The fold example's guarantee: reclaimed any number of times, it writes what one clean run writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.job.checkpoint import Checkpointer, newest_manifest, open_storage

REPO = Path(__file__).resolve().parents[1]
FOLD = REPO / "examples" / "fold" / "fold.py"
SEQUENCES = 40


def fold_env(tmp: Path, attempt: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(
        PYTHONPATH=str(REPO),
        ORCH_JOB_ID="fold",
        ORCH_TASK_ID="fold-0",
        ORCH_ATTEMPT=str(attempt),
        ORCH_CHECKPOINT_URI=(tmp / "ckpt").as_uri(),
        ORCH_MARKET="spot",
        ORCH_PROGRESS_FILE=str(tmp / "progress.json"),
        **extra,
    )
    return env


def fold_argv(out: Path, seconds_per_seq: float) -> list[str]:
    return [sys.executable, str(FOLD), "--out", str(out), "--seconds-per-seq", str(seconds_per_seq), "--rounds", "500"]


def run_fold(tmp: Path, out: Path, attempt: int = 0, **extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        fold_argv(out, 0.0), env=fold_env(tmp, attempt, **extra), cwd=tmp, capture_output=True, timeout=60
    )


def reported_progress(tmp: Path) -> float:
    try:
        return float(json.loads((tmp / "progress.json").read_text())["progress"])
    except (OSError, ValueError, KeyError):
        return -1.0


def interrupt_after(tmp: Path, out: Path, attempt: int, advance: int) -> int:
    """Start an attempt, SIGTERM it once it has done `advance` more sequences, return its exit code."""
    start = max(reported_progress(tmp), 0.0)
    proc = subprocess.Popen(
        fold_argv(out, 0.02), env=fold_env(tmp, attempt), cwd=tmp, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while reported_progress(tmp) < start + advance / SEQUENCES - 1e-9:
            assert proc.poll() is None, "finished before it could be interrupted"
            assert time.monotonic() < deadline, "no progress reported"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert b"interrupted at" in stderr, stderr.decode()
    return proc.returncode


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    tmp = tmp_path_factory.mktemp("clean")
    result = run_fold(tmp, tmp / "results.tsv")
    assert result.returncode == 0, result.stderr.decode()
    return (tmp / "results.tsv").read_bytes()


def test_uninterrupted_run_writes_every_sequence_once(reference: bytes) -> None:
    lines = reference.decode().splitlines()
    assert lines[0] == "id\tlength\tscore\tplddt"
    ids = [line.split("\t")[0] for line in lines[1:]]
    assert ids == [f"toy{i:03d}" for i in range(1, SEQUENCES + 1)]


def test_reclaimed_runs_equal_the_uninterrupted_run(tmp_path: Path, reference: bytes) -> None:
    out = tmp_path / "results.tsv"
    for attempt in range(3):
        assert interrupt_after(tmp_path, out, attempt, advance=3 + 4 * attempt) == 143
        committed = newest_manifest(open_storage((tmp_path / "ckpt").as_uri()))
        assert committed is not None and committed.attempt == attempt
        # Between attempts the output holds exactly the committed sequences, each once.
        body = out.read_bytes().decode().splitlines()[1:]
        assert len(body) == committed.metadata["done"] == len(set(body))
        assert reference.startswith(out.read_bytes().rstrip(b"\n"))
    result = run_fold(tmp_path, out, attempt=3)
    assert result.returncode == 0, result.stderr.decode()
    assert b"resuming at" in result.stderr
    assert out.read_bytes() == reference


def test_corrupt_newest_checkpoint_resumes_from_the_previous_one(tmp_path: Path, reference: bytes) -> None:
    out = tmp_path / "results.tsv"
    assert interrupt_after(tmp_path, out, 0, advance=12) == 143  # saves at 5, 10, and on the notice
    store = open_storage((tmp_path / "ckpt").as_uri())
    newest = newest_manifest(store)
    assert newest is not None and newest.seq >= 2
    victim = store.root / f"ckpt-{newest.seq:08d}" / "results.tsv"  # type: ignore[attr-defined]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    with Checkpointer(store) as ckpt:
        loaded = ckpt.load()
    assert loaded is not None and loaded.seq == newest.seq - 1
    result = run_fold(tmp_path, out, attempt=1)
    assert result.returncode == 0, result.stderr.decode()
    assert f"from checkpoint {newest.seq - 1}".encode() in result.stderr
    assert out.read_bytes() == reference


def test_array_item_range_and_foreign_checkpoint(tmp_path: Path, reference: bytes) -> None:
    out = tmp_path / "part.tsv"
    result = run_fold(tmp_path, out, ORCH_ITEM_START="10", ORCH_ITEM_END="15")
    assert result.returncode == 0, result.stderr.decode()
    lines = reference.decode().splitlines()
    assert out.read_text().splitlines() == [lines[0], *lines[11:16]]
    # The same checkpoint prefix for a different shard is someone else's work: refuse, do not mix.
    result = run_fold(tmp_path, out, ORCH_ITEM_START="15", ORCH_ITEM_END="20")
    assert result.returncode == 2 and b"another input" in result.stderr
