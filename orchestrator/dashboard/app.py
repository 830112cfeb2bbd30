"""The dashboard as an ASGI application (Starlette): two pages, their JSON, the shipped scripts.

Read-only by construction: every route is GET (anything else is 405) and the store is only read.
The pages are static files; their scripts fetch `/api/...` and redraw every few seconds, so a page
follows its job without reloading. A Content-Security-Policy of `'self'` keeps the browser from
loading anything from elsewhere: the charting library (uPlot, MIT) ships in `static/`.

With a token, every request but `/healthz` must carry it: `Authorization: Bearer TOKEN`, or the
cookie the server sets when a person opens `/?token=TOKEN` once (a browser cannot add a header to
a link it follows). The token is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.core.job_states import JOB_STATES
from orchestrator.dashboard.payloads import DEFAULT_LIMIT, MAX_LIMIT, NotFound, job_payload, jobs_payload
from orchestrator.dashboard.source import Source
from orchestrator.store import Store

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "orch_dashboard_token"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the first address may carry ?token=
    "Cache-Control": "no-store",
}


class BadQuery(ValueError):
    """A query parameter the API cannot use; its text is the one-line answer."""


def _states(text: str | None) -> list[str]:
    if not text:
        return []
    names = [s.strip().lower().replace("-", "_") for s in text.split(",") if s.strip()]
    wrong = [n for n in names if n not in JOB_STATES]
    if wrong:
        raise BadQuery(f"state: unknown state {wrong[0]!r}; states: {', '.join(JOB_STATES)}")
    return names


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise BadQuery(f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return value


def create_app(source: Source, *, token: str | None = None, clock: Callable[[], float] = time.time) -> ASGIApp:
    """The application; the store is opened once, on the first request that needs it."""
    opened: list[Store] = []
    opening = threading.Lock()  # requests are answered on several threads; the store is opened once

    def store() -> Store:
        with opening:
            if not opened:
                opened.append(source.open_store())
            return opened[0]

    def api_jobs(request: Request) -> Response:
        q = request.query_params
        try:
            body = jobs_payload(source, store(), states=_states(q.get("state")), name=q.get("name") or None,
                                limit=MAX_LIMIT if q.get("all") == "1" else _limit(q.get("limit")), now=clock())
        except BadQuery as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(body)

    def api_job(request: Request) -> Response:
        from orchestrator.store.repo import AmbiguousJob

        ref = request.path_params["ref"]
        try:
            return JSONResponse(job_payload(source, store(), ref, now=clock()))
        except NotFound:
            return JSONResponse({"error": f"no job {ref!r}"}, status_code=404)
        except AmbiguousJob as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)

    def page(name: str) -> Callable[[Request], Response]:
        def serve(request: Request) -> Response:
            return FileResponse(STATIC / name, media_type="text/html")
        return serve

    def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[
        Route("/", page("jobs.html")),
        Route("/jobs/{ref}", page("job.html")),
        Route("/api/jobs", api_jobs),
        Route("/api/jobs/{ref}", api_job),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
    return _Guard(app, token)


class _Guard:
    """Security headers on every answer; the bearer token, when there is one, on every path but /healthz."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.lower().encode(), v.encode()) for k, v in HEADERS.items())]
            await send(message)

        if self.token is not None and scope["path"] != "/healthz":
            request = Request(scope)
            given = request.query_params.get("token")
            if given is not None and self._ok(given):
                # Trade the address's token for a cookie, and drop it from the address bar.
                answer: Response = RedirectResponse(scope["path"], status_code=303)
                answer.set_cookie(COOKIE, given, httponly=True, samesite="strict",
                                  secure=scope.get("scheme") == "https")
                await answer(scope, receive, with_headers)
                return
            if not self._ok(_bearer(scope) or _cookie(scope) or ""):
                await PlainTextResponse("orch dashboard: a token is required (Authorization: Bearer TOKEN, "
                                        "or open /?token=TOKEN once)", status_code=401,
                                        headers={"WWW-Authenticate": "Bearer"})(scope, receive, with_headers)
                return
        await self.app(scope, receive, with_headers)

    def _ok(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def _cookie(scope: Scope) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed cookie header is no token
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None
