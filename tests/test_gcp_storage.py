"""gs:// checkpoint storage over HTTP against the GCS fake, and the checkpoint SDK on top of it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from orchestrator.job.checkpoint import Checkpointer, ObjectNotFound, StorageError, open_storage
from orchestrator.job.checkpoint.gcs import GcsStorage
from tests import gcs_fake
from tests.gcs_fake import QUANTUM, TOKEN, GcsFake, anonymous


@pytest.fixture
def gcs() -> Iterator[GcsFake]:
    yield from gcs_fake.running()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make(gcs: GcsFake, sleeps: list[float], uri: str = "gs://ckpt/jobs/t1", **options: object) -> GcsStorage:
    return GcsStorage(
        uri,
        credentials=anonymous(),
        endpoint=gcs.url,
        resumable_threshold=QUANTUM,
        chunk_size=QUANTUM,
        retry_attempts=3,
        retry_wait_seconds=0.001,
        sleep=sleeps.append,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(gcs: GcsFake, sleeps: list[float]) -> GcsStorage:
    return make(gcs, sleeps)


@pytest.fixture(scope="module")
def throwaway_key() -> str:
    """A fresh RSA key for a made-up service account: it signs requests to the fake only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem.decode()


@pytest.fixture
def adc(gcs: GcsFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, throwaway_key: str) -> GcsFake:
    """The standard credential chain, for real: a service account file whose token endpoint is the fake."""
    creds = tmp_path / "adc.json"
    creds.write_text(json.dumps({
        "type": "service_account", "project_id": "orch-test", "private_key_id": "test",
        "private_key": throwaway_key, "client_email": "orch-test@orch-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": f"{gcs.url}/token",
    }))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
    monkeypatch.setenv("ORCH_GCS_ENDPOINT_URL", gcs.url)
    gcs.require_token = True
    return gcs


def test_put_get_delete_round_trip(store: GcsStorage, gcs: GcsFake) -> None:
    store.put_bytes("a/b.bin", b"\x00payload")
    store.put_bytes("odd name #1?&=%.txt", b"x")  # names travel URL-encoded
    assert store.get_bytes("a/b.bin") == b"\x00payload"
    assert store.get_bytes("odd name #1?&=%.txt") == b"x"
    assert ("ckpt", "jobs/t1/odd name #1?&=%.txt") in gcs.objects
    store.put_bytes("a/b.bin", b"")  # overwrite, and empty objects are objects
    assert store.get_bytes("a/b.bin") == b""
    store.delete("a/b.bin")
    store.delete("a/b.bin")  # idempotent
    with pytest.raises(ObjectNotFound):
        store.get_bytes("a/b.bin")


def test_list_is_a_plain_prefix_over_every_page(store: GcsStorage, gcs: GcsFake) -> None:
    gcs.page_size = 2
    for key in ["ckpt-1/x", "ckpt-1/y", "ckpt-10/x", "ckpt-2/x", "heartbeat.json"]:
        store.put_bytes(key, b"1")
    gcs.objects[("ckpt", "jobs/t10/ckpt-1/x")] = b"another task"  # shares the string prefix "jobs/t1"
    assert store.list() == ["ckpt-1/x", "ckpt-1/y", "ckpt-10/x", "ckpt-2/x", "heartbeat.json"]
    assert gcs.calls["list"] == 3
    assert store.list("ckpt-1") == ["ckpt-1/x", "ckpt-1/y", "ckpt-10/x"]  # string prefix, not folder
    assert store.list("nothing") == []


def test_large_objects_go_up_resumably(store: GcsStorage, gcs: GcsFake, tmp_path: Path) -> None:
    data = bytes(range(256)) * (QUANTUM * 5 // 2 // 256)  # 2.5 chunks
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    store.put_file("w/weights.bin", path)
    assert gcs.objects[("ckpt", "jobs/t1/w/weights.bin")] == data
    assert gcs.calls["chunk"] == 3 and gcs.calls["upload"] == 1
    store.put_bytes("w/again.bin", data)
    assert store.get_bytes("w/again.bin") == data
    store.put_file("w/small.bin", _small(tmp_path))
    assert gcs.calls["upload"] == 3 and gcs.calls["chunk"] == 6  # the small file went up in one request


def _small(tmp_path: Path) -> Path:
    path = tmp_path / "small.bin"
    path.write_bytes(b"tiny")
    return path


def test_a_failed_chunk_resumes_where_gcs_stopped(store: GcsStorage, gcs: GcsFake) -> None:
    store.chunk_size = 4 * QUANTUM
    data = b"0123456789abcdef" * (QUANTUM * 6 // 16)
    gcs.break_chunk()  # GCS keeps 2 of the first 4 quanta, then answers 503
    store.put_bytes("big", data)
    assert gcs.objects[("ckpt", "jobs/t1/big")] == data
    # quanta 0-4 (broken), a status query, then 2-6: the fake refuses a chunk not starting at its offset
    assert gcs.calls["chunk"] == 3


def test_transient_failures_are_retried_within_bounds(store: GcsStorage, gcs: GcsFake, sleeps: list[float]) -> None:
    gcs.fail_next("upload", 503, times=2)
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v" and len(sleeps) == 2
    gcs.fail_next("get", 429, times=5)
    with pytest.raises(StorageError, match="HTTP 429"):
        store.get_bytes("k")
    assert gcs.calls["get"] == 1 + 3


def test_refusals_are_not_retried(store: GcsStorage, gcs: GcsFake, sleeps: list[float]) -> None:
    gcs.fail_next("upload", 403)
    with pytest.raises(StorageError, match="HTTP 403") as caught:
        store.put_bytes("k", b"v")
    assert not isinstance(caught.value, ObjectNotFound)
    assert gcs.calls["upload"] == 1 and sleeps == []


def test_get_file_is_atomic(store: GcsStorage, tmp_path: Path) -> None:
    store.put_bytes("f", b"content")
    target = tmp_path / "out" / "f"
    store.get_file("f", target)
    assert target.read_bytes() == b"content"
    with pytest.raises(ObjectNotFound):
        store.get_file("missing", tmp_path / "out" / "g")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f"]  # no temporary left behind


def test_bad_keys_and_uris_fail_before_any_request(gcs: GcsFake, store: GcsStorage, sleeps: list[float]) -> None:
    for key in ["../escape", "/abs", "a//b", ""]:
        with pytest.raises(StorageError, match="invalid storage key"):
            store.put_bytes(key, b"x")
    for uri in ["gs://", "gs://bucket/p?x=1", "s3://bucket/p"]:
        with pytest.raises(StorageError):
            make(gcs, sleeps, uri)
    assert sum(gcs.calls.values()) == 0
    missing = make(gcs, sleeps, "gs://no-such-bucket")
    with pytest.raises(StorageError, match="no bucket"):
        missing.list()
    with pytest.raises(StorageError, match="no bucket") as caught:
        missing.put_bytes("k", b"v")
    assert not isinstance(caught.value, ObjectNotFound)


def test_checkpoint_round_trip_through_the_sdk_and_the_credential_chain(adc: GcsFake, tmp_path: Path) -> None:
    storage = open_storage("gs://ckpt/jobs/t1")
    assert isinstance(storage, GcsStorage) and storage.endpoint == adc.url
    with Checkpointer("gs://ckpt/jobs/t1", workdir=tmp_path / "w1") as ckpt:
        assert ckpt.load() is None
        ckpt.save({"model.pt": b"weights-1", "opt/state": b"s1"}, progress=0.25)
        ckpt.save({"model.pt": b"weights-2", "opt/state": b"s2"}, progress=0.5)
    with Checkpointer("gs://ckpt/jobs/t1", workdir=tmp_path / "w2") as again:
        loaded = again.load()
    assert loaded is not None and loaded.seq == 2 and loaded.progress == 0.5
    assert loaded.read_bytes("model.pt") == b"weights-2" and loaded.read_bytes("opt/state") == b"s2"
    # Every request carried the token the chain fetched; orch itself never touched a credential.
    assert adc.calls["token"] >= 1 and set(adc.authorizations) == {f"Bearer {TOKEN}"}


def test_a_corrupt_file_falls_back_to_the_previous_checkpoint(
    adc: GcsFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Checkpointer("gs://ckpt/jobs/t1", workdir=tmp_path / "w1") as ckpt:
        ckpt.save({"model.pt": b"weights-1"}, progress=0.1)
        ckpt.save({"model.pt": b"weights-2"}, progress=0.2)
    victim = ("ckpt", "jobs/t1/ckpt-00000002/model.pt")
    assert victim in adc.objects
    adc.objects[victim] = b"weights-X"  # same size, different bytes: only the sha256 can tell
    with caplog.at_level(logging.WARNING, "orch.checkpoint"), Checkpointer(
        "gs://ckpt/jobs/t1", workdir=tmp_path / "w2"
    ) as again:
        loaded = again.load()
    assert loaded is not None and loaded.seq == 1 and loaded.read_bytes("model.pt") == b"weights-1"
    assert "checkpoint 2" in caplog.text


def test_without_credentials_the_error_says_where_they_come_from(
    gcs: GcsFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(StorageError, match=r"google\.auth\.default"):
        GcsStorage("gs://ckpt/x", endpoint=gcs.url)
