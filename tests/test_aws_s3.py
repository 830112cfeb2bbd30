"""S3 checkpoint storage against moto over HTTP, alone and under the checkpoint SDK."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrator.job.checkpoint import Checkpointer, ObjectNotFound, StorageError, open_storage
from orchestrator.job.checkpoint.manifest import manifest_key
from orchestrator.job.checkpoint.s3 import MIB, S3Storage
from tests.aws_support import REGION, Faults, client_factory


@pytest.fixture
def s3(aws_env: str) -> Any:
    return client_factory(aws_env)("s3", REGION)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"orch-ckpt-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def test_round_trip_under_a_prefix(bucket: str, s3: Any, tmp_path: Path) -> None:
    store = open_storage(f"s3://{bucket}/jobs/j1/")  # the registered scheme, default client, env endpoint
    assert isinstance(store, S3Storage)
    store.put_bytes("_orch/heartbeat.json", b'{"progress": 0.5}')
    store.put_bytes("ckpt-00000001/a.bin", b"a")
    assert store.get_bytes("_orch/heartbeat.json") == b'{"progress": 0.5}'
    assert s3.get_object(Bucket=bucket, Key="jobs/j1/ckpt-00000001/a.bin")["Body"].read() == b"a"
    assert store.list() == ["_orch/heartbeat.json", "ckpt-00000001/a.bin"]
    assert store.list("ckpt-") == ["ckpt-00000001/a.bin"]
    store.get_file("ckpt-00000001/a.bin", tmp_path / "out" / "a.bin")
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"a"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.bin"]  # no temporary left behind
    store.delete("ckpt-00000001/a.bin")
    store.delete("ckpt-00000001/a.bin")  # idempotent
    assert store.list("ckpt-") == []


def test_missing_objects_are_object_not_found(bucket: str, tmp_path: Path) -> None:
    store = S3Storage(f"s3://{bucket}")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nope")
    with pytest.raises(ObjectNotFound):
        store.get_file("nope", tmp_path / "nope")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_bucket_is_an_error_not_a_missing_object(aws_env: str) -> None:
    store = S3Storage("s3://no-such-bucket-orch/x")
    with pytest.raises(StorageError, match="NoSuchBucket") as info:
        store.get_bytes("k")
    assert not isinstance(info.value, ObjectNotFound)


def test_big_files_go_up_in_parts_and_come_back_whole(bucket: str, s3: Any, tmp_path: Path) -> None:
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(6 * MIB + 123))
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    store = S3Storage(f"s3://{bucket}/p", client=s3, multipart_threshold=1 * MIB, multipart_chunksize=5 * MIB)
    store.put_file("weights.bin", big)
    store.put_file("small.bin", small)
    assert s3.head_object(Bucket=bucket, Key="p/weights.bin")["ETag"].strip('"').endswith("-2")  # two parts
    assert "-" not in s3.head_object(Bucket=bucket, Key="p/small.bin")["ETag"]  # one PUT
    store.get_file("weights.bin", tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_listing_follows_every_page(bucket: str, aws_env: str) -> None:
    faults = Faults()
    client = client_factory(aws_env, faults)("s3", REGION)
    store = S3Storage(f"s3://{bucket}/p", client=client, list_page_size=2)
    for n in range(5):
        store.put_bytes(f"k{n}", b"")
    client.put_object(Bucket=bucket, Key="other/k9", Body=b"")  # outside the prefix
    faults.calls.clear()
    assert store.list() == [f"k{n}" for n in range(5)]
    assert faults.calls["ListObjectsV2"] == 3


def test_server_errors_become_storage_errors(bucket: str, aws_env: str) -> None:
    faults = Faults()
    store = S3Storage(f"s3://{bucket}", client=client_factory(aws_env, faults)("s3", REGION))
    faults.fail("PutObject", "InternalError", status=500)
    with pytest.raises(StorageError, match="InternalError"):
        store.put_bytes("k", b"v")


@pytest.mark.parametrize("uri", ["s3://", "gs://b/p", "s3://b/p?versionId=1"])
def test_bad_uris_are_refused(uri: str) -> None:
    with pytest.raises(StorageError):
        S3Storage(uri, client=object())


def test_keys_cannot_escape_the_prefix(bucket: str) -> None:
    store = S3Storage(f"s3://{bucket}/p")
    for key in ("../x", "/abs", "a//b", ""):
        with pytest.raises(StorageError):
            store.put_bytes(key, b"")


def test_checkpoints_round_trip_and_skip_a_corrupt_manifest(bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/job-1/task-1"
    with Checkpointer(uri, workdir=tmp_path / "w1") as ckpt:
        ckpt.save({"state.bin": b"one"}, progress=0.25)
        ckpt.save({"state.bin": b"two"}, progress=0.5)
    with Checkpointer(uri, workdir=tmp_path / "w2") as ckpt:
        loaded = ckpt.load()
        assert loaded is not None and loaded.seq == 2 and loaded.read_bytes("state.bin") == b"two"
    open_storage(uri).put_bytes(manifest_key(2), b'{"version": 1, "seq": ')  # a torn manifest
    with Checkpointer(uri, workdir=tmp_path / "w3") as ckpt:
        loaded = ckpt.load()
        assert loaded is not None and loaded.seq == 1 and loaded.progress == 0.25
        assert loaded.read_bytes("state.bin") == b"one"


def test_a_large_checkpoint_file_is_verified_after_a_multipart_upload(bucket: str, s3: Any, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(6 * MIB))
    (folder / "config.json").write_text("{}")
    store = S3Storage(f"s3://{bucket}/t", client=s3, multipart_threshold=1 * MIB, multipart_chunksize=5 * MIB)
    with Checkpointer(store, workdir=tmp_path / "w1") as ckpt:
        ckpt.save(folder, progress=0.9)
    with Checkpointer(store, workdir=tmp_path / "w2") as ckpt:
        loaded = ckpt.load()
        assert loaded is not None
        assert loaded.read_bytes("weights.bin") == (folder / "weights.bin").read_bytes()
    # Damage the big file behind the manifest's back: its sha256 no longer matches, so no checkpoint loads.
    store.put_bytes("ckpt-00000001/weights.bin", b"not the weights")
    with Checkpointer(store, workdir=tmp_path / "w3") as ckpt:
        assert ckpt.load() is None
