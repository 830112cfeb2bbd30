"""The job-side SDK: resume from the newest verified checkpoint, save atomically, know when to save.

A job sees orch only through environment variables (see docs/checkpointing.md) and this class. It is
written for the failure that matters on spot capacity: the process can be told to stop at any moment,
and killed outright a grace period later. So a save is files first and manifest last (a kill mid-save
leaves the previous checkpoint current), a load trusts only files whose sizes and sha256 match their
manifest, and `should_save()` turns "how often?" into Young's interval from measured numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.job.checkpoint import interval
from orchestrator.job.checkpoint.filestore import validate_key, write_atomic
from orchestrator.job.checkpoint.interrupts import Interrupts
from orchestrator.job.checkpoint.manifest import (
    CorruptCheckpoint,
    FileEntry,
    Manifest,
    checkpoint_prefix,
    manifest_key,
    read_manifest,
    scan,
    sha256_file,
    verify_into,
)
from orchestrator.job.checkpoint.storage import ObjectNotFound, Storage, StorageError, open_storage

log = logging.getLogger("orch.checkpoint")

# A job that saved because it was interrupted exits with this (128 + SIGTERM), never 0: 0 means done.
INTERRUPTED_EXIT_CODE = 128 + signal.SIGTERM

Files = Mapping[str, bytes] | str | os.PathLike[str]


class CheckpointConfigError(StorageError):
    """The environment does not say where checkpoints go (not started by orch, and no default given)."""


@dataclass(frozen=True, slots=True)
class LoadedCheckpoint:
    """A verified checkpoint, copied to `path` (a local folder that holds exactly the saved files)."""

    manifest: Manifest
    path: Path

    @property
    def seq(self) -> int:
        return self.manifest.seq

    @property
    def progress(self) -> float | None:
        return self.manifest.progress

    @property
    def metadata(self) -> Mapping[str, Any]:
        return self.manifest.metadata

    def read_bytes(self, name: str) -> bytes:
        return (self.path / validate_key(name)).read_bytes()


class Checkpointer:
    """Checkpoints of one task under one storage prefix. Not thread-safe: call it from one thread."""

    def __init__(
        self,
        storage: Storage | str,
        *,
        attempt: int = 0,
        keep: int = 3,
        market: str = "spot",
        progress_file: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        now: Callable[[], float] = time.time,
        mtbi_prior_s: float | None = None,
        min_interval_s: float = 30.0,
        max_interval_s: float = 3600.0,
        default_save_cost_s: float = 10.0,
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1: pruning the only checkpoint would lose all work")
        self.storage = open_storage(storage) if isinstance(storage, str) else storage
        self.attempt = attempt
        self.keep = keep
        self.market = market
        self.progress_file = Path(progress_file) if progress_file else None
        self._now = now
        self._mtbi_prior_s = interval.mtbi_prior_s(market) if mtbi_prior_s is None else mtbi_prior_s
        self._min_interval_s = min_interval_s
        self._max_interval_s = max_interval_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="orch-ckpt-", ignore_cleanup_errors=True)
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self._started_at = now()
        self._last_save_at = self._started_at
        self._save_cost_s: float | None = None
        self._default_save_cost_s = default_save_cost_s
        self._origin_at: float | None = None
        self._last_progress: float | None = None
        self._interrupts = Interrupts()

    @classmethod
    def from_env(
        cls,
        keep: int = 3,
        *,
        env: Mapping[str, str] | None = None,
        default_uri: str | None = None,
        install_signal_handlers: bool = True,
        **options: Any,
    ) -> Checkpointer:
        """Build from the ORCH_* variables and start listening for the interruption signal.

        `default_uri` is used when ORCH_CHECKPOINT_URI is unset (a job run by hand); without it that
        is a `CheckpointConfigError`, because silently not checkpointing would lose work later.
        """
        env = os.environ if env is None else env
        uri = env.get("ORCH_CHECKPOINT_URI") or default_uri
        if not uri:
            raise CheckpointConfigError("ORCH_CHECKPOINT_URI is not set and no default_uri was given")
        ckpt = cls(
            uri,
            attempt=int(env.get("ORCH_ATTEMPT", "0") or 0),
            keep=int(env.get("ORCH_CHECKPOINT_KEEP", "") or keep),
            market=env.get("ORCH_MARKET", "spot") or "spot",
            progress_file=env.get("ORCH_PROGRESS_FILE") or None,
            **options,
        )
        if install_signal_handlers:
            ckpt.install_signal_handlers(_interrupt_signals(env))
        return ckpt

    # -- interruption -------------------------------------------------------------------------------

    @property
    def interrupted(self) -> bool:
        """True once the interruption signal arrived: save now and exit with INTERRUPTED_EXIT_CODE."""
        return self._interrupts.is_set

    def mark_interrupted(self) -> None:
        """For jobs that learn of an interruption another way (their own framework's hook)."""
        self._interrupts.mark()

    def install_signal_handlers(self, signals: Iterable[int] = (signal.SIGTERM,)) -> None:
        """Record the signal instead of dying of it (`Interrupts.install`)."""
        self._interrupts.install(signals)

    def restore_signal_handlers(self) -> None:
        self._interrupts.restore()

    # -- progress and timing ------------------------------------------------------------------------

    def report_progress(self, progress: float) -> None:
        """Tell the agent how far the task is (0..1). Cheap: one small rename, skipped if unchanged."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be within [0, 1], got {progress}")
        if progress == self._last_progress:
            return
        self._last_progress = progress
        if self.progress_file is not None:
            doc = {"progress": progress, "at": self._now(), "pid": os.getpid()}
            try:
                write_atomic(self.progress_file, json.dumps(doc).encode(), durable=False)
            except OSError as e:
                log.warning("cannot write progress file %s: %s", self.progress_file, e)

    @property
    def save_cost_s(self) -> float:
        """Measured seconds a save takes (smoothed), or the default until one was measured."""
        return self._default_save_cost_s if self._save_cost_s is None else self._save_cost_s

    @property
    def mtbi_s(self) -> float:
        origin = self._started_at if self._origin_at is None else min(self._origin_at, self._started_at)
        return interval.estimate_mtbi_s(self.attempt, self._now() - origin, self._mtbi_prior_s)

    @property
    def next_save_interval_s(self) -> float:
        return interval.young_interval_s(
            self.save_cost_s, self.mtbi_s, min_s=self._min_interval_s, max_s=self._max_interval_s
        )

    def should_save(self) -> bool:
        """True when interrupted, or when Young's interval has passed since the last save (or start)."""
        if self.interrupted:
            return True
        return self._now() - self._last_save_at >= self.next_save_interval_s

    # -- load ---------------------------------------------------------------------------------------

    def load(self) -> LoadedCheckpoint | None:
        """The newest checkpoint whose files match their manifest; damaged ones are skipped, logged."""
        _, complete = scan(self.storage)
        for seq in reversed(complete):
            staging = self.workdir / f".staging-{seq:08d}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                manifest = read_manifest(self.storage, seq)
                verify_into(self.storage, manifest, staging)
            except ObjectNotFound:
                continue  # pruned between the list and the read
            except CorruptCheckpoint as e:
                log.warning("skipping damaged checkpoint %d, trying the previous one: %s", seq, e)
                shutil.rmtree(staging, ignore_errors=True)
                continue
            final = self.workdir / checkpoint_prefix(seq).rstrip("/")
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            self._adopt(manifest)
            return LoadedCheckpoint(manifest=manifest, path=final)
        return None

    def _adopt(self, manifest: Manifest) -> None:
        self._origin_at = manifest.origin_at if manifest.origin_at is not None else manifest.created_at
        if self._save_cost_s is None and manifest.save_seconds is not None:
            self._save_cost_s = manifest.save_seconds
        if manifest.progress is not None:
            self.report_progress(manifest.progress)

    # -- save ---------------------------------------------------------------------------------------

    def save(
        self, files: Files, *, progress: float | None = None, metadata: Mapping[str, Any] | None = None
    ) -> Manifest:
        """Write a new checkpoint: every file, then the manifest (the commit point), then prune.

        `files` is a mapping of relative names to bytes, or a local folder saved whole. Do not change
        the folder while it is being saved: a file that changes under the hash fails verification later.
        """
        started = self._now()
        seen, complete = scan(self.storage)
        seq = max(seen, default=0) + 1  # never reuse a number an unfinished save may have half-filled
        if self._origin_at is None:
            self._origin_at = self._previous_origin(complete) or self._started_at
        prefix = checkpoint_prefix(seq)
        entries = [self._put(prefix, name, data) for name, data in _iter_files(files)]
        manifest = Manifest(
            seq=seq,
            created_at=self._now(),
            attempt=self.attempt,
            progress=progress,
            files=tuple(entries),
            metadata=dict(metadata or {}),
            save_seconds=round(self._now() - started, 6),
            origin_at=self._origin_at,
        )
        self.storage.put_bytes(manifest_key(seq), manifest.to_json())
        self._prune(seen, [*complete, seq], seq)
        finished = self._now()
        self._save_cost_s = interval.smooth(self._save_cost_s, finished - started)
        self._last_save_at = finished
        if progress is not None:
            self.report_progress(progress)
        return manifest

    def _put(self, prefix: str, name: str, data: bytes | Path) -> FileEntry:
        key = prefix + validate_key(name)
        if isinstance(data, Path):
            size, digest = data.stat().st_size, sha256_file(data)
            self.storage.put_file(key, data)
        else:
            size, digest = len(data), hashlib.sha256(data).hexdigest()
            self.storage.put_bytes(key, data)
        return FileEntry(path=name, size=size, sha256=digest)

    def _previous_origin(self, complete: list[int]) -> float | None:
        for seq in reversed(complete):
            with contextlib.suppress(StorageError):
                manifest = read_manifest(self.storage, seq)
                return manifest.origin_at if manifest.origin_at is not None else manifest.created_at
        return None

    def _prune(self, seen: list[int], complete: list[int], newest: int) -> None:
        """Keep the newest `keep` complete checkpoints; drop older ones and older unfinished saves.

        A failure here is logged, not raised: the new checkpoint is already committed.
        """
        kept = set(sorted(complete)[-self.keep :])
        doomed = [s for s in seen if s < newest and s not in kept]
        for seq in doomed:
            try:
                self._delete_checkpoint(seq)
            except StorageError as e:
                log.warning("could not prune checkpoint %d: %s", seq, e)

    def _delete_checkpoint(self, seq: int) -> None:
        # Manifest first: a half-deleted checkpoint must look unfinished, not damaged.
        self.storage.delete(manifest_key(seq))
        for key in self.storage.list(checkpoint_prefix(seq)):
            self.storage.delete(key)

    # -- lifetime -----------------------------------------------------------------------------------

    def close(self) -> None:
        self.restore_signal_handlers()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _interrupt_signals(env: Mapping[str, str]) -> tuple[int, ...]:
    """SIGTERM always (a pod's or a person's stop), plus the agent's configured signal if different."""
    signals = [signal.SIGTERM]
    name = env.get("ORCH_INTERRUPT_SIGNAL", "").strip().upper()
    if name:
        try:
            extra = signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        except KeyError:
            log.warning("ignoring unknown ORCH_INTERRUPT_SIGNAL %r", name)
        else:
            if extra not in signals:
                signals.append(extra)
    return tuple(signals)


def _iter_files(files: Files) -> Iterable[tuple[str, bytes | Path]]:
    if isinstance(files, Mapping):
        for name, data in sorted(files.items()):
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"checkpoint file {name!r} must be bytes, got {type(data).__name__}")
            yield name, bytes(data)
        return
    root = Path(files)
    if not root.is_dir():
        raise NotADirectoryError(f"checkpoint source {root} is not a folder")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield path.relative_to(root).as_posix(), path
