"""The checkpoint SDK and file:// storage, against real files in a temporary folder."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

import pytest

from orchestrator.job.checkpoint import (
    CheckpointConfigError,
    Checkpointer,
    Heartbeat,
    ObjectNotFound,
    StorageError,
    newest_manifest,
    open_storage,
    read_heartbeat,
    write_heartbeat,
)
from orchestrator.job.checkpoint.filestore import FileStorage
from orchestrator.job.checkpoint.interval import estimate_mtbi_s, young_interval_s
from orchestrator.job.checkpoint.manifest import manifest_key, scan

REPO = Path(__file__).resolve().parents[1]


class FakeTime:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path: Path) -> FileStorage:
    storage = open_storage((tmp_path / "ckpt").as_uri())
    assert isinstance(storage, FileStorage)
    return storage


def make(store: FileStorage, tmp_path: Path, **kw: object) -> Checkpointer:
    return Checkpointer(store, workdir=tmp_path / "work", **kw)  # type: ignore[arg-type]


# -- FileStorage --------------------------------------------------------------------------------


def test_file_storage_roundtrip_list_and_delete(store: FileStorage, tmp_path: Path) -> None:
    store.put_bytes("b/x.bin", b"1")
    store.put_bytes("a.txt", b"2")
    store.put_bytes("b/y/z", b"3")
    store.put_bytes("a.txt", b"22")  # overwrite
    assert store.get_bytes("a.txt") == b"22"
    assert store.list() == ["a.txt", "b/x.bin", "b/y/z"]
    assert store.list("b/") == ["b/x.bin", "b/y/z"]
    assert store.list("b/x") == ["b/x.bin"]
    assert store.list("nothing/") == []
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    store.put_file("f/src.bin", src)
    store.get_file("f/src.bin", tmp_path / "out" / "copy.bin")
    assert (tmp_path / "out" / "copy.bin").read_bytes() == b"payload"
    store.delete("b/y/z")
    store.delete("b/y/z")  # idempotent
    assert not (store.root / "b" / "y").exists()  # empty folders go with their last object
    with pytest.raises(ObjectNotFound):
        store.get_bytes("b/y/z")
    with pytest.raises(ObjectNotFound):
        store.get_file("missing", tmp_path / "m")


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "", "./a", ".orch-tmp-x"])
def test_file_storage_rejects_keys_that_escape_or_are_malformed(store: FileStorage, key: str) -> None:
    with pytest.raises(StorageError):
        store.put_bytes(key, b"x")
    assert not (store.root.parent / "escape").exists()


def test_file_storage_hides_temporary_files_and_leaves_none(store: FileStorage) -> None:
    store.put_bytes("k", b"v" * 10_000)
    umask = os.umask(0o022)
    os.umask(umask)
    assert (store.root / "k").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    (store.root / ".orch-tmp-crashed").write_bytes(b"half")  # what a crash mid-write leaves
    assert store.list() == ["k"]
    assert sorted(p.name for p in store.root.iterdir()) == [".orch-tmp-crashed", "k"]


def test_open_storage_rejects_unknown_and_remote_file_uris() -> None:
    with pytest.raises(StorageError):
        open_storage("ftp://host/x")
    with pytest.raises(StorageError):
        open_storage("file://otherhost/x")


# -- save / load --------------------------------------------------------------------------------


def test_save_then_load_returns_files_progress_and_metadata(store: FileStorage, tmp_path: Path) -> None:
    with make(store, tmp_path) as ckpt:
        assert ckpt.load() is None
        m1 = ckpt.save({"state.json": b'{"i": 1}'}, progress=0.1, metadata={"step": 1})
        m2 = ckpt.save({"state.json": b'{"i": 2}', "sub/w.bin": b"\x00\x01"}, progress=0.2)
    assert (m1.seq, m2.seq) == (1, 2)
    with make(store, tmp_path, attempt=1) as again:
        loaded = again.load()
        assert loaded is not None
        assert loaded.seq == 2 and loaded.progress == 0.2 and loaded.metadata == {}
        assert loaded.read_bytes("state.json") == b'{"i": 2}'
        assert (loaded.path / "sub" / "w.bin").read_bytes() == b"\x00\x01"
        assert loaded.manifest.origin_at == m1.origin_at  # carried forward across saves


def test_save_a_local_folder(store: FileStorage, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "shards").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "shards" / "0.bin").write_bytes(os.urandom(3000))
    with make(store, tmp_path) as ckpt:
        manifest = ckpt.save(src, progress=0.5)
        assert [f.path for f in manifest.files] == ["config.json", "shards/0.bin"]
        loaded = ckpt.load()
    assert loaded is not None
    assert loaded.read_bytes("shards/0.bin") == (src / "shards" / "0.bin").read_bytes()


def test_keep_prunes_older_checkpoints(store: FileStorage, tmp_path: Path) -> None:
    with make(store, tmp_path, keep=2) as ckpt:
        for i in range(5):
            ckpt.save({"s": str(i).encode()}, progress=i / 5)
    seen, complete = scan(store)
    assert seen == complete == [4, 5]


def test_manifest_is_written_last_and_an_unfinished_save_is_ignored(store: FileStorage, tmp_path: Path) -> None:
    with make(store, tmp_path, keep=1) as ckpt:
        ckpt.save({"s": b"good"}, progress=0.3)
        store.put_bytes("ckpt-00000002/s", b"half written")  # killed before its manifest
        loaded = ckpt.load()
        assert loaded is not None and loaded.seq == 1
        assert ckpt.save({"s": b"next"}).seq == 3  # never reuses the unfinished number
    assert scan(store) == ([3], [3])  # the unfinished save is pruned with the old one
    manifest = json.loads(store.get_bytes(manifest_key(3)))
    assert manifest["files"] == [{"path": "s", "size": 4, "sha256": manifest["files"][0]["sha256"]}]


def test_corrupt_newest_checkpoint_falls_back_to_previous(
    store: FileStorage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with make(store, tmp_path) as ckpt:
        ckpt.save({"s": b"one"}, progress=0.1)
        ckpt.save({"s": b"two"}, progress=0.2)
    victim = store.root / "ckpt-00000002" / "s"
    data = bytearray(victim.read_bytes())
    data[0] ^= 0xFF
    victim.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, "orch.checkpoint"), make(store, tmp_path) as again:
        loaded = again.load()
    assert loaded is not None and loaded.seq == 1 and loaded.read_bytes("s") == b"one"
    assert "checkpoint 2" in caplog.text and "sha256" in caplog.text
    # The control plane reads manifests only and does not notice: that is the job's check to make.
    newest = newest_manifest(store)
    assert newest is not None and newest.seq == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda root: (root / "ckpt-00000002" / "MANIFEST.json").write_text("{not json"),
        lambda root: (root / "ckpt-00000002" / "s").write_bytes(b"tw"),  # size differs
        lambda root: (root / "ckpt-00000002" / "s").unlink(),
        lambda root: (root / "ckpt-00000002" / "MANIFEST.json").write_text('{"version": 99}'),
    ],
)
def test_other_damage_falls_back_too(store: FileStorage, tmp_path: Path, damage: object) -> None:
    with make(store, tmp_path) as ckpt:
        ckpt.save({"s": b"one"})
        ckpt.save({"s": b"two"})
        damage(store.root)  # type: ignore[operator]
        loaded = ckpt.load()
    assert loaded is not None and loaded.seq == 1


def test_save_rejects_bad_names_and_values(store: FileStorage, tmp_path: Path) -> None:
    with make(store, tmp_path) as ckpt:
        with pytest.raises(StorageError):
            ckpt.save({"../x": b"1"})
        with pytest.raises(TypeError):
            ckpt.save({"x": "text"})  # type: ignore[dict-item]
        with pytest.raises(ValueError):
            Checkpointer(store, keep=0)


# -- progress, timing, interruption -------------------------------------------------------------


def test_report_progress_writes_the_progress_file(store: FileStorage, tmp_path: Path) -> None:
    progress = tmp_path / "p" / "progress.json"
    with make(store, tmp_path, progress_file=progress) as ckpt:
        ckpt.report_progress(0.25)
        assert json.loads(progress.read_text())["progress"] == 0.25
        ckpt.save({"s": b"x"}, progress=0.5)  # a save reports its committed progress too
        assert json.loads(progress.read_text())["progress"] == 0.5
        with pytest.raises(ValueError):
            ckpt.report_progress(1.5)


def test_young_daly_formula_and_clamps() -> None:
    assert estimate_mtbi_s(0, 0.0, 7200.0) == 7200.0
    assert estimate_mtbi_s(3, 10_000.0, 2_000.0) == 3000.0
    assert estimate_mtbi_s(100, 10.0, 10.0) == 60.0  # never below a minute
    assert young_interval_s(10.0, 7200.0, min_s=1.0, max_s=1e9) == pytest.approx(math.sqrt(2 * 10 * 7200))
    assert young_interval_s(0.001, 7200.0, min_s=30.0, max_s=3600.0) == 30.0
    assert young_interval_s(500.0, 1e6, min_s=30.0, max_s=3600.0) == 3600.0


def test_should_save_follows_measured_cost_and_interruptions(store: FileStorage, tmp_path: Path) -> None:
    clock = FakeTime()
    ckpt = make(store, tmp_path, now=clock, min_interval_s=1.0, max_interval_s=1e6, default_save_cost_s=8.0)
    with ckpt:
        # No save measured yet: the default cost and the spot prior (2 h) give sqrt(2*8*7200) = 339 s;
        # time without an interruption lengthens the estimated MTBI: at 360 s, sqrt(2*8*7560) = 348 s.
        assert ckpt.next_save_interval_s == pytest.approx(math.sqrt(2 * 8 * 7200))
        clock.t += 300
        assert not ckpt.should_save()
        clock.t += 60
        assert ckpt.next_save_interval_s == pytest.approx(math.sqrt(2 * 8 * 7560))
        assert ckpt.should_save()
        ckpt.save({"s": b"x"})  # takes 0 s on the fake clock: the interval falls to the minimum
        assert ckpt.next_save_interval_s == 1.0
        assert not ckpt.should_save()
        ckpt.mark_interrupted()
        assert ckpt.should_save()
    # More interruptions over the same time -> a shorter mean time between them -> save more often.
    calm = make(store, tmp_path, attempt=0, now=clock, min_interval_s=1.0, max_interval_s=1e6)
    stormy = make(store, tmp_path, attempt=5, now=clock, min_interval_s=1.0, max_interval_s=1e6)
    with calm, stormy:
        assert stormy.next_save_interval_s < calm.next_save_interval_s


def test_from_env_reads_the_contract_and_chains_the_signal_handler(tmp_path: Path) -> None:
    seen: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGUSR1, previous)
    env = {
        "ORCH_CHECKPOINT_URI": (tmp_path / "c").as_uri(),
        "ORCH_ATTEMPT": "2",
        "ORCH_MARKET": "on-demand",
        "ORCH_PROGRESS_FILE": str(tmp_path / "progress.json"),
        "ORCH_INTERRUPT_SIGNAL": "USR1",
    }
    try:
        with Checkpointer.from_env(keep=2, env=env) as ckpt:
            assert (ckpt.attempt, ckpt.keep, ckpt.market) == (2, 2, "on-demand")
            assert not ckpt.interrupted
            os.kill(os.getpid(), signal.SIGUSR1)
            assert ckpt.interrupted and seen == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is previous  # restored on close
    finally:
        signal.signal(signal.SIGUSR1, old)
    with pytest.raises(CheckpointConfigError):
        Checkpointer.from_env(env={})


# -- control-plane readers ----------------------------------------------------------------------


def test_heartbeat_roundtrip_missing_and_corrupt(store: FileStorage) -> None:
    assert read_heartbeat(store) is None
    hb = Heartbeat(attempt=3, at=12.5, progress=0.4, newest_checkpoint=7, pid=42, interrupted=True)
    write_heartbeat(store, hb)
    assert read_heartbeat(store) == hb
    doc = json.loads(store.get_bytes("_orch/heartbeat.json"))
    assert doc["version"] == 1 and doc["exit_code"] is None and doc["newest_checkpoint"] == 7
    store.put_bytes("_orch/heartbeat.json", b"{oops")
    assert read_heartbeat(store) is None


def test_newest_manifest_skips_corrupt_manifests(store: FileStorage, tmp_path: Path) -> None:
    assert newest_manifest(store) is None
    with make(store, tmp_path) as ckpt:
        ckpt.save({"s": b"1"}, progress=0.1)
        ckpt.save({"s": b"2"}, progress=0.2)
    store.put_bytes(manifest_key(2), b"[]")
    newest = newest_manifest(store)
    assert newest is not None and newest.seq == 1 and newest.progress == 0.1


def test_sdk_import_loads_no_cloud_sdk() -> None:
    code = (
        "import sys, orchestrator.job.checkpoint as c, orchestrator.job.agent;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'google')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=30)
