"""Starting the dashboard: where it listens, who may read it, and a clear line when it cannot start.

Loopback (127.0.0.1, ::1, localhost) needs no token: only this machine's users reach it, as with
`orch status`. Anything else must have a token, because job names, logs and costs are then open to
the network; a server refuses to start without one rather than serve them to anyone.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Callable

from orchestrator.dashboard.source import Source
from orchestrator.extras import missing_extra

TOKEN_ENV = "ORCH_DASHBOARD_TOKEN"


class DashboardError(Exception):
    """The dashboard cannot start as asked; the text is one line for the user."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    if token is not None and not token.strip():
        raise DashboardError(f"--token (or {TOKEN_ENV}) is empty")
    if not is_loopback(host) and not token:
        raise DashboardError(f"--host {host} is reachable from other machines: give a token "
                             f"(--token or {TOKEN_ENV}), which every request must then carry")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that port 0 gives a free port we can print."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DashboardError(f"--host {host!r}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(source: Source, *, host: str, port: int, token: str | None,
          announce: Callable[[str], None] = print) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM)."""
    check_exposure(host, token)
    try:
        import uvicorn

        from orchestrator.dashboard.app import create_app
    except ModuleNotFoundError as exc:
        hint = missing_extra(exc, "orch dashboard")
        if hint is None:
            raise
        raise DashboardError(hint) from exc
    sock = bind(host, port)
    announce(f"orch dashboard: serving {url_of(sock)} (read-only{', token required' if token else ''}; Ctrl-C stops)")
    sys.stdout.flush()
    config = uvicorn.Config(create_app(source, token=token), log_level="warning", access_log=False,
                            lifespan="off", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
