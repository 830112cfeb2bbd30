"""`file://` checkpoint storage: a folder on a local or shared file system.

This is the backend of the `local` provider and of every test, so it is held to the same contract as
an object store: `put_bytes` is atomic (a temporary file in the same folder, fsync, `os.replace`, then
an fsync of the folder so the rename itself survives a crash), keys cannot escape the root, and `list`
uses string-prefix semantics like S3 and GCS do, so callers behave the same on every backend.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from orchestrator.job.checkpoint.base import ObjectNotFound, StorageError

# Temporary files carry this prefix; `list` hides them and keys may not use it.
_TMP_PREFIX = ".orch-tmp-"


def validate_key(key: str) -> str:
    """Refuse keys that could name something outside the root or that no object store would accept."""
    if not key or key.startswith("/") or "\x00" in key or "\\" in key:
        raise StorageError(f"invalid storage key {key!r}")
    for part in key.split("/"):
        if part in ("", ".", "..") or part.startswith(_TMP_PREFIX):
            raise StorageError(f"invalid storage key {key!r}: bad path component {part!r}")
    return key


def _root_from_uri(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise StorageError(f"not a file:// URI: {uri!r}")
    if parts.netloc not in ("", "localhost"):
        raise StorageError(f"file:// URI with a remote host is not supported: {uri!r}")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise StorageError(f"file:// URI must hold an absolute path: {uri!r}")
    return Path(path)


def _fsync_dir(path: Path) -> None:
    # Some file systems (and all of Windows) refuse to open a folder; durability is best effort there.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _file_mode() -> int:
    """What `open()` would give a new file: mkstemp's 0600 would hide results from their own group."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_writer(target: Path, *, durable: bool = True) -> Iterator[int]:
    """Yield a file descriptor whose content replaces `target` in one rename once the block succeeds.

    Shared with the agent's status and progress files: every file another process polls must be
    either the old version or the new one, never a prefix of the new one. `durable=False` skips the
    fsyncs for files that only matter while the machine is up (progress reports), keeping them cheap.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
    try:
        try:
            os.fchmod(fd, _file_mode())
            yield fd
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(target.parent)


def write_atomic(target: Path, data: bytes, *, durable: bool = True) -> None:
    with atomic_writer(target, durable=durable) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


class FileStorage:
    """Objects as files under the folder named by a `file:///abs/path` URI (created on first write)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.root = _root_from_uri(uri)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            write_atomic(self._path(key), data)
        except OSError as e:
            raise StorageError(f"{self.uri}: cannot write {key!r}: {e}") from e

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        try:
            with open(path, "rb") as src, atomic_writer(target) as fd, os.fdopen(fd, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
        except OSError as e:
            raise StorageError(f"{self.uri}: cannot write {key!r} from {path}: {e}") from e

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"{self.uri}: no object {key!r}") from None
        except OSError as e:
            raise StorageError(f"{self.uri}: cannot read {key!r}: {e}") from e

    def get_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        try:
            with open(source, "rb") as src, atomic_writer(path) as fd, os.fdopen(fd, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
            if not source.is_file():
                raise ObjectNotFound(f"{self.uri}: no object {key!r}") from None
            raise StorageError(f"{self.uri}: cannot copy {key!r} to {path}: {e}") from e
        except OSError as e:
            raise StorageError(f"{self.uri}: cannot copy {key!r} to {path}: {e}") from e

    def list(self, prefix: str = "") -> list[str]:
        # Walk only the deepest folder the prefix names, then filter by the prefix as a plain string.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if folder:
            validate_key(folder)
        start = self.root / folder if folder else self.root
        keys: list[str] = []
        for dirpath, _dirs, files in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as e:
            raise StorageError(f"{self.uri}: cannot delete {key!r}: {e}") from e
        # Object stores have no folders: drop the ones this delete left empty, up to the root.
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def __repr__(self) -> str:
        return f"FileStorage({self.uri!r})"
