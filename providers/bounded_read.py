"""Reading a user-named file without trusting it: regular files only, and never more than a cap.

A path in a job file or on the command line may name `/dev/zero`, a FIFO nobody writes to, a
directory or a multi-gigabyte log. `Path.read_bytes()` would hang or fill memory on the first two
and fail obscurely on the third, so every file orch reads on a user's say-so goes through
`read_bounded`: it opens without blocking (a FIFO would otherwise block in `open`), refuses anything
that is not a regular file, and reads at most `limit + 1` bytes, so the size check does not depend
on what `stat` claims (a file can grow between the two, and /proc files report size 0).

It lives under `providers/` because both the providers and the orchestrator read such files, and
providers may not import the orchestrator.
"""

from __future__ import annotations

import os
import stat

from vocab.text import KIB, MIB, display

__all__ = ["KIB", "MIB", "FileRefused", "display", "read_bounded", "read_bounded_text"]



class FileRefused(ValueError):
    """A file that was not read; `str()` is one line saying why (without the path: callers add it).

    `unreadable` tells a file that could not be opened or read (missing, no permission) from one
    that was refused for what it is (special, too large, not text), for callers that word them apart.
    """

    def __init__(self, problem: str, *, unreadable: bool = False) -> None:
        super().__init__(problem)
        self.unreadable = unreadable


def _size_text(limit: int) -> str:
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    return f"{limit // KIB} KiB" if limit % KIB == 0 else f"{limit} bytes"


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole content of the regular file at `path`, if it holds at most `limit` bytes.

    Raises `FileRefused` for a missing or unreadable file, a non-regular one (directory, FIFO,
    device, socket) or one larger than `limit`. Never blocks and never reads more than `limit + 1` bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileRefused("no such file", unreadable=True) from None
    except IsADirectoryError:
        raise FileRefused("is a directory, not a regular file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise FileRefused(_reason(exc), unreadable=True) from None
    kind = _kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise FileRefused(f"is {kind}, not a regular file")
    with os.fdopen(fd, "rb", buffering=0) as handle:
        chunks: list[bytes] = []
        left = limit + 1
        try:
            while left > 0:
                chunk = handle.read(min(left, MIB))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise FileRefused(_reason(exc), unreadable=True) from None
    if left <= 0:
        raise FileRefused(f"is larger than the {_size_text(limit)} allowed")
    return b"".join(chunks)


def read_bounded_text(path: str | os.PathLike[str], limit: int) -> str:
    """`read_bounded`, decoded as UTF-8; text that is not UTF-8 is refused the same way."""
    raw = read_bounded(path, limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused("is not UTF-8 text") from None


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _reason(exc: Exception) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split())



