"""Checkpoint manifests: the record that makes a folder of files a checkpoint.

A checkpoint is `ckpt-<seq:08d>/<files…>` plus `ckpt-<seq>/MANIFEST.json`, written last. A folder
without a readable manifest is an unfinished save and does not exist as far as any reader is concerned;
a manifest whose files do not match their sizes and sha256 is a damaged checkpoint and is skipped.
The control plane reads manifests only (`newest_manifest`): it never hashes a job's files, which can
be gigabytes. Only a job that is about to resume (the SDK's `load`) pays for verification.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.job.checkpoint.filestore import validate_key
from orchestrator.job.checkpoint.storage import ObjectNotFound, Storage, StorageError

log = logging.getLogger("orch.checkpoint")

MANIFEST_VERSION = 1
MANIFEST_NAME = "MANIFEST.json"
CHECKPOINT_PREFIX = "ckpt-"
_SEQ_RE = re.compile(r"^ckpt-(\d+)/")


class CorruptCheckpoint(StorageError):
    """A manifest that cannot be parsed, or files that do not match it."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """One checkpoint as its writer described it. `progress` is the *committed* fraction of the task.

    `save_seconds` and `origin_at` are optional extensions of version 1: how long the files took to
    write (a new attempt's first estimate of the save cost) and when the task's first checkpoint was
    written (carried forward so the interruption rate survives pruning of old checkpoints).
    """

    seq: int
    created_at: float
    attempt: int
    progress: float | None
    files: tuple[FileEntry, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    save_seconds: float | None = None
    origin_at: float | None = None
    version: int = MANIFEST_VERSION

    @property
    def prefix(self) -> str:
        return checkpoint_prefix(self.seq)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "version": self.version,
            "seq": self.seq,
            "created_at": self.created_at,
            "attempt": self.attempt,
            "progress": self.progress,
            "metadata": dict(self.metadata),
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }
        if self.save_seconds is not None:
            doc["save_seconds"] = self.save_seconds
        if self.origin_at is not None:
            doc["origin_at"] = self.origin_at
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "manifest") -> Manifest:
        """Parse strictly: a manifest that lies about its own shape cannot be trusted about its files."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise TypeError("a manifest must be a JSON object")
            if doc.get("version") != MANIFEST_VERSION:
                raise ValueError(f"unsupported manifest version {doc.get('version')!r}")
            files = tuple(_file_entry(f) for f in doc["files"])
            metadata = doc.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise ValueError("metadata must be an object")
            return cls(
                seq=_int(doc["seq"]),
                created_at=float(doc["created_at"]),
                attempt=_int(doc["attempt"]),
                progress=None if doc.get("progress") is None else float(doc["progress"]),
                files=files,
                metadata=metadata,
                save_seconds=_opt_float(doc.get("save_seconds")),
                origin_at=_opt_float(doc.get("origin_at")),
            )
        except (ValueError, TypeError, KeyError, StorageError) as e:
            raise CorruptCheckpoint(f"{where}: corrupt manifest: {e}") from e


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _file_entry(doc: object) -> FileEntry:
    if not isinstance(doc, dict):
        raise TypeError("file entry must be an object")
    path, sha = doc["path"], doc["sha256"]
    if not isinstance(path, str) or not isinstance(sha, str) or len(sha) != 64:
        raise TypeError(f"bad file entry {doc!r}")
    validate_key(path)
    if path == MANIFEST_NAME:
        raise ValueError("a checkpoint file may not be named like the manifest")
    return FileEntry(path=path, size=_int(doc["size"]), sha256=sha.lower())


def checkpoint_prefix(seq: int) -> str:
    return f"{CHECKPOINT_PREFIX}{seq:08d}/"


def manifest_key(seq: int) -> str:
    return checkpoint_prefix(seq) + MANIFEST_NAME


def scan(storage: Storage) -> tuple[list[int], list[int]]:
    """(every sequence number that has any object, those with a manifest), both ascending."""
    seen: set[int] = set()
    complete: set[int] = set()
    for key in storage.list(CHECKPOINT_PREFIX):
        m = _SEQ_RE.match(key)
        if m is None:
            continue
        seq = int(m.group(1))
        seen.add(seq)
        if key == manifest_key(seq):
            complete.add(seq)
    return sorted(seen), sorted(complete)


def read_manifest(storage: Storage, seq: int) -> Manifest:
    """Raises `ObjectNotFound` (no manifest: unfinished) or `CorruptCheckpoint`."""
    key = manifest_key(seq)
    manifest = Manifest.from_json(storage.get_bytes(key), where=f"{storage.uri}/{key}")
    if manifest.seq != seq:
        raise CorruptCheckpoint(f"{storage.uri}/{key}: manifest says seq {manifest.seq}")
    return manifest


def newest_manifest(storage: Storage) -> Manifest | None:
    """The newest readable manifest, without hashing any file: what the control plane polls."""
    _, complete = scan(storage)
    for seq in reversed(complete):
        try:
            return read_manifest(storage, seq)
        except ObjectNotFound:
            continue  # pruned between the list and the read
        except CorruptCheckpoint as e:
            log.warning("skipping checkpoint %d: %s", seq, e)
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_into(storage: Storage, manifest: Manifest, dest: Path) -> None:
    """Download every file of `manifest` under `dest` and check it; `CorruptCheckpoint` on mismatch."""
    for entry in manifest.files:
        local = dest / entry.path
        try:
            storage.get_file(manifest.prefix + entry.path, local)
        except ObjectNotFound:
            raise CorruptCheckpoint(f"checkpoint {manifest.seq}: {entry.path} is missing") from None
        size = local.stat().st_size
        if size != entry.size:
            raise CorruptCheckpoint(
                f"checkpoint {manifest.seq}: {entry.path} has {size} bytes, manifest says {entry.size}"
            )
        if sha256_file(local) != entry.sha256:
            raise CorruptCheckpoint(f"checkpoint {manifest.seq}: {entry.path} does not match its sha256")
