"""How a path is named in a one-line message, and the byte units the size bounds are written in."""

from __future__ import annotations

import os

KIB = 1024
MIB = 1024 * KIB


def display(path: str | os.PathLike[str]) -> str:
    """A path as messages show it: itself, unless it holds characters that would break the line."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)
