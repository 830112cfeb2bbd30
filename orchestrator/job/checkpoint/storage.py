"""Where checkpoints, manifests and heartbeats live: a tiny object-store interface.

The control plane talks to running jobs through this store only (no inbound connection to an
instance), so every backend must give read-after-write consistency for single objects and make
`put_bytes` atomic: a reader sees the old object or the new one, never half of one.
Keys are relative, '/'-separated paths under the URI the storage was opened with.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.extras import missing_extra
from orchestrator.job.checkpoint.base import ObjectNotFound, Storage, StorageError

__all__ = ["ObjectNotFound", "Storage", "StorageError", "StorageFactory", "open_storage", "register_scheme"]


StorageFactory = Callable[[str], Storage]
_SCHEMES: dict[str, StorageFactory] = {}


def register_scheme(scheme: str, factory: StorageFactory) -> None:
    _SCHEMES[scheme] = factory


def open_storage(uri: str) -> Storage:
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in _SCHEMES:
        try:
            _load_builtin(scheme)
        except ModuleNotFoundError as exc:
            raise StorageError(missing_extra(exc, f"{scheme}:// checkpoint storage") or str(exc)) from None
    try:
        return _SCHEMES[scheme](uri)
    except KeyError:
        raise StorageError(f"no checkpoint storage for {uri!r} (known: file://, s3://, gs://)") from None


def _load_builtin(scheme: str) -> None:
    """Backends are imported on first use so that an SDK is loaded only by the jobs that need it."""
    if scheme == "file":
        from orchestrator.job.checkpoint.filestore import FileStorage

        register_scheme("file", FileStorage)
    elif scheme == "s3":
        from orchestrator.job.checkpoint.s3 import S3Storage

        register_scheme("s3", S3Storage)
    elif scheme == "gs":
        from orchestrator.job.checkpoint.gcs import GcsStorage

        register_scheme("gs", GcsStorage)
