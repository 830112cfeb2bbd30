"""What the cloud fakes share: a loopback HTTP server on a thread, a quiet handler, and a manual clock.

The GCE, GCS and IMDS fakes are driven by the real client libraries over real HTTP, so each needs a
server on a free port of 127.0.0.1 that serves from a daemon thread and stops cleanly at teardown,
and a handler that reads a request and writes a reply with its length (keep-alive clients need it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit


class LoopbackServer:
    """A threading HTTP server on a free loopback port, serving from a daemon thread from the start."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, poll_seconds: float = 0.02) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(poll_seconds,), daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (the Google clients keep connections alive), no access log on the test's stderr."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def read_request(self, *, keep_blank_values: bool = False) -> tuple[str, dict[str, str], bytes]:
        """Path, query (the last value of each name) and body of the request being served."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        pairs = parse_qs(parts.query, keep_blank_values=keep_blank_values)
        return parts.path, {k: v[-1] for k, v in pairs.items()}, body

    def reply(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ServedFake:
    """Base of a fake API that serves itself: `start()` puts it on a loopback port, `url` says where.

    `crashes` collects the fake's own bugs (its handler answers them with a 500): `serving` fails
    the test that met one, so a broken fake cannot pass for a provider's error handling.
    """

    def __init__(self) -> None:
        self.crashes: list[str] = []
        self._server: LoopbackServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = LoopbackServer(self.handler())
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return self._server.url


F = TypeVar("F", bound=ServedFake)


def serving(fake: F) -> Iterator[F]:
    """Generator for a pytest fixture: `fake` started, stopped afterwards, and free of crashes."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.crashes, fake.crashes


class ManualClock:
    """Wall time plus an offset that `sleep` advances at once: backoff waits cost no real time."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class ManualMonotonic:
    """A monotonic clock (call it) that moves only when the test advances it.

    For code that measures an interval against `time.monotonic` (a lease's expiry, a grace period):
    the test says when the interval has passed, instead of sleeping until it has, so the outcome does
    not depend on how busy the machine is. Readers on other threads see a float, written atomically.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
