"""The interruption flag a job's SDK objects share: set by the agent's SIGTERM, or by the job itself.

The checkpointer and the campaign worker both record the signal instead of dying of it, chain to
the handler that was there before, and put it back when they are done; one class does it for both.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

log = logging.getLogger("orch.checkpoint")

SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Interrupts:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: dict[int, SignalHandler] = {}

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def mark(self) -> None:
        self._event.set()

    def install(self, signals: Iterable[int]) -> None:
        """Record the signals instead of dying of them, then call whatever handler was there before.

        Only the main thread may install handlers (a Python rule); elsewhere this logs and does
        nothing, and the job must mark the interruption itself.
        """
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: cannot install the interruption signal handler")
            return
        for signum in signals:
            if signum not in self._previous:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._event.set()
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)

    def restore(self) -> None:
        """Put back the handlers `install` replaced."""
        for signum, previous in self._previous.items():
            if previous is not None:
                signal.signal(signum, previous)
        self._previous.clear()
