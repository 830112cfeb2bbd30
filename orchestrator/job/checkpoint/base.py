"""The object-store interface every checkpoint backend implements, and its errors.

Kept apart from `storage` (which opens a URI with the right backend, importing backends on first use)
so that the backends depend on this module only and never on the module that imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """A storage backend failed; the message names the URI and the cause."""


class ObjectNotFound(StorageError):
    pass


class Storage(Protocol):
    uri: str

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def put_file(self, key: str, path: Path) -> None: ...

    def get_bytes(self, key: str) -> bytes:
        """Raises `ObjectNotFound` when the key does not exist."""
        ...

    def get_file(self, key: str, path: Path) -> None: ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix`, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Idempotent."""
        ...
