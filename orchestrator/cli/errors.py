"""The CLI's one error type, shared by its command modules."""

from __future__ import annotations

EXIT_USAGE = 2  # bad input: a job file or flag refused, nothing stored
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class CliError(Exception):
    """A user-facing failure: printed as `orch: <message>` with no traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
