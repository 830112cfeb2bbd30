"""The item service: a campaign's items over HTTP, for workers that must not hold the database URL (pods).

Served by Starlette on uvicorn (the `server` extra), on a thread of the controller
(`orch controller --kubernetes`, every replica: the items live in the shared
store, so any replica answers for any job and a failover does not interrupt the workers). A worker
(`orchestrator.job.worker.http_source.HttpItemSource`) calls

    POST /v1/jobs/<job id>/workers/<attempt id>/<op>      Authorization: Bearer <token>

with a JSON object, where <op> is one of `ItemStore`'s worker calls: `lease`, `start`, `renew`, `done`,
`fail`, `release`. The token is `attempt_token(secret, job id, attempt id)`, given to the attempt by the
loop (`worker_environment`): it lets its holder act as that one worker of that one job, nothing else,
and is never logged (the access log is off; errors name the job and attempt, never the token).

Answers are JSON: `{"leases": [...]}`, `{"ok": bool}`, `{"held": [...]}`, `{"committed": bool}`,
`{"state": ...}`, `{"released": n}`; an error is `{"error": "..."}` with 400 (a malformed request),
401 (no token), 403 (a token that is not this worker's), 404 (no such job or operation), 405, 410 (the
attempt has ended: it may still commit a result, but takes no new items), 411/413 (no length, too
large) or 503 (the store cannot be reached: the worker retries). Bodies are bounded (`MAX_BODY_BYTES`:
one result of `MAX_RESULT_BYTES` as a JSON string, with room for its escapes).

`done` is idempotent for its worker: a retried commit whose first answer was lost reads the item and
answers `committed: true` if the result in is this worker's, so a retry never turns a success into a
"dropped" answer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.core.model import AttemptState
from orchestrator.store.item_source import attempt_token
from orchestrator.store.items import MAX_RESULT_BYTES, ItemStore, Lease
from orchestrator.store.repo import Store

__all__ = ["MAX_BODY_BYTES", "ItemService"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * MAX_RESULT_BYTES  # a 1 MiB result, JSON-escaped, fits; nothing larger is read
MAX_CHUNK = 1000  # items per lease call
MAX_IDS = 10_000  # item ids per renew or release call
MAX_TEXT = 4096  # a reason or a result URI
IDLE_TIMEOUT_S = 60.0  # a kept-alive connection with no request is closed after this
START_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 1024
LEASE_SECONDS = (1.0, 3600.0)
_PATH = re.compile(r"^/v1/jobs/([A-Za-z0-9_.-]{1,128})/workers/([A-Za-z0-9_.-]{1,128})/([a-z]+)$")


class RequestError(Exception):
    """An answer other than 200: the status and a one-line message for the worker."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Job:
    max_failures: int
    task_ids: frozenset[str]


def _number(body: Mapping[str, Any], key: str, lo: float, hi: float, default: float | None = None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise RequestError(400, f"{key} must be a number from {lo:g} to {hi:g}")
    return float(value)


def _text(body: Mapping[str, Any], key: str, limit: int | None = MAX_TEXT) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (limit is not None and len(value) > limit):
        raise RequestError(400, f"{key} must be a string" + (f" of at most {limit} characters" if limit else ""))
    return value


def _ids(body: Mapping[str, Any]) -> list[int]:
    ids = body.get("item_ids")
    if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise RequestError(400, f"item_ids must be a list of at most {MAX_IDS} integers")
    return ids


def _lease(body: Mapping[str, Any]) -> Lease:
    raw = body.get("lease")
    if not isinstance(raw, dict):
        raise RequestError(400, "lease must be an object (as the lease call returned it)")
    item_id, index, lease_no, key = raw.get("item_id"), raw.get("index"), raw.get("lease_no"), raw.get("key")
    if not (isinstance(item_id, int) and isinstance(index, int) and isinstance(lease_no, int)) or any(
            isinstance(i, bool) for i in (item_id, index, lease_no)) or not (key is None or isinstance(key, str)):
        raise RequestError(400, "lease must hold item_id, index and lease_no as integers and key as a string or null")
    return Lease(item_id, index, key, "", lease_no)  # the payload is not needed to settle an item


def lease_record(lease: Lease) -> dict[str, Any]:
    return {"item_id": lease.item_id, "index": lease.index, "key": lease.key, "payload": lease.payload,
            "lease_no": lease.lease_no}


class ItemService:
    """The HTTP server over one store. `start()` serves on a thread; `stop()` ends it."""

    def __init__(self, store: Store, *, secret: bytes, host: str = "0.0.0.0", port: int = 8081,
                 now: Callable[[], float] = time.time, tls_cert: str | None = None,
                 tls_key: str | None = None) -> None:
        """`tls_cert` and `tls_key` (PEM files) serve HTTPS: workers outside the controller's own host
        (cloud instances) reach it only over TLS. The socket is bound here, so `port` is known (0 picks one)."""
        if len(secret) < 16:
            raise ValueError("the item service's secret must be at least 16 bytes")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("the item service's TLS needs both a certificate and a key file")
        self.store = store
        self.items = ItemStore(store.engine)
        self._secret = secret
        self.now = now
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart takes the same port at once
        self._socket.bind((host, port))
        self._port = int(self._socket.getsockname()[1])
        self.tls = tls_cert is not None
        # Past MAX_CONNECTIONS open connections uvicorn answers 503, which workers retry with backoff.
        config = uvicorn.Config(app(self), log_level="warning", access_log=False, lifespan="off",
                                timeout_keep_alive=int(IDLE_TIMEOUT_S), ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                                server_header=False, date_header=False, limit_concurrency=MAX_CONNECTIONS)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="orch-items", daemon=True)

    @property
    def port(self) -> int:
        return self._port

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> ItemService:
        """Serve on a thread; return once it accepts connections (or raise why it could not)."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the item service did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=START_TIMEOUT_S)
        self._socket.close()

    # --- one request -------------------------------------------------------------------------------

    def authorize(self, job_id: str, attempt_id: str, header: str | None) -> None:
        given = header[len("Bearer "):].strip() if header and header.startswith("Bearer ") else ""
        if not given:
            raise RequestError(401, "an Authorization: Bearer <ORCH_ITEMS_TOKEN> header is required")
        if not hmac.compare_digest(given.encode(), attempt_token(self._secret, job_id, attempt_id).encode()):
            raise RequestError(403, f"this token does not belong to worker {attempt_id} of job {job_id}")

    def _job(self, job_id: str) -> _Job:
        """The job's failure bound and tasks, read once: both are fixed at submission."""
        with self._lock:
            known = self._jobs.get(job_id)
        if known is not None:
            return known
        view = self.store.job(job_id)
        if view is None or view.spec.array is None or not view.spec.array.is_campaign:
            raise RequestError(404, f"no campaign {job_id}")
        job = _Job(view.spec.retry.max_failures,
                   frozenset(t.id for t in self.store.tasks(job_id)))
        with self._lock:
            self._jobs[job_id] = job
        return job

    def _live(self, job: _Job, job_id: str, attempt_id: str) -> None:
        """A worker whose attempt has ended takes no new items (the loop has given its items back)."""
        attempt = self.store.attempt(attempt_id)
        if attempt is None or attempt.task_id not in job.task_ids:
            raise RequestError(404, f"job {job_id} has no attempt {attempt_id}")
        if attempt.state is AttemptState.ENDED:
            raise RequestError(410, f"attempt {attempt_id} has ended; it takes no new items")

    def handle(self, job_id: str, attempt_id: str, op: str, body: Mapping[str, Any]) -> dict[str, Any]:
        job = self._job(job_id)
        now = self.now()
        if op == "lease":
            self._live(job, job_id, attempt_id)
            n = int(_number(body, "n", 1, MAX_CHUNK, 1) or 1)
            seconds = _number(body, "lease_seconds", *LEASE_SECONDS, 120.0) or 120.0
            leases = self.items.lease(job_id, attempt_id, n, now=now, lease_seconds=seconds,
                                      gpu_memory_gb=_number(body, "gpu_memory_gb", 0.0, 1e6))
            return {"leases": [lease_record(x) for x in leases]}
        if op == "start":
            return {"ok": self.items.start(job_id, attempt_id, _lease(body), now=now)}
        if op == "renew":
            seconds = _number(body, "lease_seconds", *LEASE_SECONDS, 120.0) or 120.0
            held = self.items.renew(job_id, attempt_id, _ids(body), now=now, lease_seconds=seconds)
            return {"held": sorted(held)}
        if op == "done":
            return {"committed": self._done(job_id, attempt_id, _lease(body), body, now)}
        if op == "fail":
            oom = body.get("oom", False)
            if not isinstance(oom, bool):
                raise RequestError(400, "oom must be true or false")
            state = self.items.fail(job_id, attempt_id, _lease(body), reason=_text(body, "reason") or "failed",
                                    now=now, max_failures=job.max_failures, oom=oom,
                                    gpu_memory_gb=_number(body, "gpu_memory_gb", 0.0, 1e6))
            return {"state": None if state is None else str(state)}
        if op == "release":
            return {"released": self.items.release(job_id, attempt_id, _ids(body), now=now)}
        raise RequestError(404, f"no operation {op!r}; one of lease, start, renew, done, fail, release")

    def _done(self, job_id: str, attempt_id: str, lease: Lease, body: Mapping[str, Any], now: float) -> bool:
        result = _text(body, "result", limit=None)
        if result is not None:
            if len(result) > MAX_RESULT_BYTES:
                raise RequestError(413, f"a result of {len(result):,} characters is over the {MAX_RESULT_BYTES:,} "
                                        "allowed; write it to storage and commit its URI")
            try:
                json.loads(result)
            except ValueError:
                raise RequestError(400, "result must be JSON text") from None
        work = _number(body, "work_seconds", 0.0, 1e9)
        if self.items.complete(job_id, attempt_id, lease, now=now, result=result,
                               result_uri=_text(body, "result_uri"), work_seconds=work):
            return True
        # A retry whose first answer was lost: the result in may be this worker's own.
        first = next(self.items.results(job_id, after_index=lease.index - 1, page=1), None)
        return first is not None and first.index == lease.index and first.done_by == attempt_id


async def _request(service: ItemService, request: Request) -> dict[str, Any]:
    match = _PATH.match(request.url.path)
    if match is None:
        raise RequestError(404, "no such path; POST /v1/jobs/<job>/workers/<attempt>/<op>")
    job_id, attempt_id, op = match.groups()
    service.authorize(job_id, attempt_id, request.headers.get("Authorization"))
    length = request.headers.get("Content-Length")
    if length is None or not length.isdigit():
        raise RequestError(411, "a Content-Length is required")
    if int(length) > MAX_BODY_BYTES:  # refused before the body is read
        raise RequestError(413, f"a request of {int(length):,} bytes is over the {MAX_BODY_BYTES:,} allowed")
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError):
        raise RequestError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object")
    # The store is synchronous (SQLAlchemy): each call runs on the thread pool, as the old threads did.
    return await run_in_threadpool(service.handle, job_id, attempt_id, op, body)


def app(service: ItemService) -> Starlette:
    """The ASGI application: one POST route; errors as `{"error": ...}` with their status."""

    def answer(status: int, body: Mapping[str, Any]) -> Response:
        headers = {"Connection": "close"} if status >= 400 else None
        return JSONResponse(dict(body), status_code=status, headers=headers)

    async def post(request: Request) -> Response:
        if request.method != "POST":
            return answer(405, {"error": "only POST is served"})
        try:
            return answer(200, await _request(service, request))
        except RequestError as exc:
            return answer(exc.status, {"error": str(exc)})
        except ClientDisconnect:  # the client went away: nobody to answer
            return Response(status_code=400)
        except (OperationalError, DBAPIError, PoolTimeout) as exc:  # the worker retries a 503
            orig = exc.orig if isinstance(exc, DBAPIError) else exc
            log.warning("item service: the store failed: %s", " ".join(str(orig).split())[:300])
            return answer(503, {"error": "the store is unavailable; retry"})
        except Exception:  # a bug: logged here, a plain 500 to the worker
            log.exception("item service request failed")
            return answer(500, {"error": "internal error in the item service"})

    methods = ["POST", "GET", "PUT", "DELETE", "PATCH"]
    # No access log (uvicorn's is off): request lines are harmless, but nothing here may ever print a header.
    return Starlette(routes=[Route("/{path:path}", post, methods=methods)])
