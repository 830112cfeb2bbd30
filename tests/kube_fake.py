"""A small Kubernetes API-server fake over real HTTP on 127.0.0.1, for the real `kubernetes` client.

Why our own and not kmock: kmock is an aiohttp server built for kopf's asyncio tests; driving it from
the synchronous client needs an event loop thread and four more packages, and what the controller
relies on most (watch streams that resume from a resourceVersion and answer 410 Gone, the status
subresource, finalizers, optimistic concurrency on PUT) is exactly what we want to see and control.

What it does: stores objects per (apiVersion, plural, namespace, name); list with label and field
selectors; get/create (generateName too)/replace (409 on a stale resourceVersion)/patch (merge,
strategic treated as merge, JSON patch)/delete (finalizers hold an object with a deletionTimestamp);
`/status` subresources (the main resource never writes .status, the subresource writes only .status);
watch streams with resourceVersion, bookmarks ignored, and `expire_watches()` that answers 410; faults
injected per method and path, and stalls (`stall()`: a request that gets no answer, then a dropped
connection, as from a half-open connection or an overloaded server). `requests` logs what was asked.
What it does not do is listed in docs/kubernetes.md.
"""

from __future__ import annotations

import builtins
import copy
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.http_fake import QuietHandler, ServedFake
from tests.kube_fake_patch import PatchError, json_patch, merge_patch, selected

KINDS = {"pods": "Pod", "nodes": "Node", "events": "Event", "leases": "Lease", "gpujobs": "GpuJob"}
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


@dataclass
class Fault:
    method: str
    path_contains: str
    code: int
    times: int
    reason: str
    message: str


@dataclass(frozen=True)
class Route:
    api: str  # "v1" or "group/version"
    plural: str
    namespace: str | None
    name: str | None
    sub: str | None


def parse_route(path: str) -> Route:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        api, rest = "v1", parts[2:]
    elif parts and parts[0] == "apis" and len(parts) >= 3:
        api, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise ApiError(404, "NotFound", f"no route {path}")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest:
        raise ApiError(404, "NotFound", f"no route {path}")
    return Route(api, rest[0], namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None)


# --- the store ---------------------------------------------------------------------------------

class KubeFake(ServedFake):
    """The server and its state. Tests call the helpers at the bottom to play kubelet and cluster."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str], dict[Key, dict[str, Any]]] = {}
        self.history: list[tuple[int, tuple[str, str], str, dict[str, Any]]] = []
        self.rv = 0
        self.floor = 0  # watches from a resourceVersion below this get 410 Gone
        self.epoch = 0  # bumped by expire_watches() to end open watch streams with 410
        self.faults: list[Fault] = []
        self.stalls: list[Fault] = []  # `code` unused; `times` requests wait `seconds` (in `message`)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in arrival order
        # API group/versions this cluster does not serve (a CRD not installed): 404, as a real server says.
        self.missing_apis: set[str] = set()
        self.cond = threading.Condition()
        self.stopping = False

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def stop(self) -> None:
        """End open watch streams first: the server's shutdown waits for no request, but they would
        hold their client's threads until their own timeout."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        super().stop()

    # -- core operations (hold self.cond) --

    def _bucket(self, api: str, plural: str) -> dict[Key, dict[str, Any]]:
        return self.objects.setdefault((api, plural), {})

    def _record(self, res: tuple[str, str], kind: str, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, res, kind, copy.deepcopy(obj)))
        self.cond.notify_all()

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def create(self, r: Route, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = (r.namespace or "", meta["name"])
        bucket = self._bucket(r.api, r.plural)
        if key in bucket:
            raise ApiError(409, "AlreadyExists", f'{r.plural} "{meta["name"]}" already exists')
        if r.namespace:
            meta["namespace"] = r.namespace
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_iso(), generation=1)
        body.setdefault("apiVersion", r.api)
        body.setdefault("kind", KINDS.get(r.plural, r.plural))
        self._bump(body)
        bucket[key] = body
        self._record((r.api, r.plural), "ADDED", body)
        return body

    def get(self, r: Route) -> dict[str, Any]:
        obj = self._bucket(r.api, r.plural).get((r.namespace or "", r.name or ""))
        if obj is None:
            raise ApiError(404, "NotFound", f'{r.plural} "{r.name}" not found')
        return obj

    def write(self, r: Route, new: dict[str, Any], *, expected_rv: str | None = None) -> dict[str, Any]:
        """Store `new` over the existing object under the subresource rules; deletes when released."""
        old = self.get(r)
        if expected_rv and expected_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'the object has been modified; {r.plural} "{r.name}"')
        if r.sub == "status":
            obj = copy.deepcopy(old)
            obj["status"] = new.get("status", {})
        else:
            obj = copy.deepcopy(new)
            for k in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp"):
                if k in old["metadata"]:
                    obj["metadata"][k] = old["metadata"][k]
            if "status" in old:
                obj["status"] = old["status"]
            else:
                obj.pop("status", None)
            if obj.get("spec") != old.get("spec"):
                obj["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if obj == old:
            return old
        self._bump(obj)
        key = (r.namespace or "", r.name or "")
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            del self._bucket(r.api, r.plural)[key]
            self._record((r.api, r.plural), "DELETED", obj)
        else:
            self._bucket(r.api, r.plural)[key] = obj
            self._record((r.api, r.plural), "MODIFIED", obj)
        return obj

    def delete(self, r: Route) -> dict[str, Any]:
        obj = copy.deepcopy(self.get(r))
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = now_iso()
                self._bump(obj)
                self._bucket(r.api, r.plural)[(r.namespace or "", r.name or "")] = obj
                self._record((r.api, r.plural), "MODIFIED", obj)
            return obj
        del self._bucket(r.api, r.plural)[(r.namespace or "", r.name or "")]
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._record((r.api, r.plural), "DELETED", obj)
        return obj

    def list(self, r: Route, labels: str, fields: str) -> list[dict[str, Any]]:
        out = []
        for (ns, _), obj in sorted(self._bucket(r.api, r.plural).items()):
            if r.namespace and ns != r.namespace:
                continue
            if selected(obj, labels, fields):
                out.append(obj)
        return out

    def _stalled(self, method: str, path: str) -> bool:
        """Hold the request unanswered (the lock released) if a stall matches; True when it did."""
        with self.cond:
            self.requests.append((method, path))
            stall = next((f for f in self.stalls if f.method == method and f.path_contains in path
                          and f.times > 0), None)
            if stall is None:
                return False
            stall.times -= 1
            self.cond.wait_for(lambda: self.stopping, timeout=float(stall.message))
        return True

    def _check_fault(self, method: str, path: str) -> None:
        for f in self.faults:
            if f.method == method and f.path_contains in path and f.times > 0:
                f.times -= 1
                raise ApiError(f.code, f.reason, f.message)

    # -- watch --

    def watch(self, r: Route, query: dict[str, str]) -> Iterator[dict[str, Any]]:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        timeout = float(query.get("timeoutSeconds", "30"))
        deadline = threading.Event()
        def expire() -> None:
            deadline.set()
            self._notify()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            with self.cond:
                epoch = self.epoch
                since_raw = query.get("resourceVersion", "")
                if since_raw in ("", "0"):
                    since = self.rv
                    initial = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in self.list(r, labels, fields)]
                else:
                    since = int(since_raw)
                    initial = []
                    if since < self.floor:
                        initial = [self._gone(since)]
            yield from initial
            if initial and initial[-1]["type"] == "ERROR":
                return
            yield from self._follow(r, since, epoch, labels, fields, deadline)
        finally:
            timer.cancel()

    def _follow(self, r: Route, since: int, epoch: int, labels: str, fields: str,
                deadline: threading.Event) -> Iterator[dict[str, Any]]:
        while True:
            with self.cond:
                while not self._pending(r, since) and not deadline.is_set() and not self.stopping \
                        and self.epoch == epoch:
                    self.cond.wait(0.5)
                if self.epoch != epoch:
                    yield self._gone(since)
                    return
                if self.stopping or (deadline.is_set() and not self._pending(r, since)):
                    return
                batch = [h for h in self.history if h[0] > since and h[1] == (r.api, r.plural)]
                since = self.history[-1][0] if self.history else since
            for _, _, kind, obj in batch:
                if r.namespace and obj["metadata"].get("namespace") != r.namespace:
                    continue
                if selected(obj, labels, fields):
                    yield {"type": kind, "object": obj}

    def _pending(self, r: Route, since: int) -> bool:
        return any(h[0] > since and h[1] == (r.api, r.plural) for h in self.history)

    def _gone(self, since: int) -> dict[str, Any]:
        err = ApiError(410, "Expired", f"too old resource version: {since} ({self.floor})")
        return {"type": "ERROR", "object": err.body()}

    def _notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # -- helpers for tests: the cluster side --------------------------------------------------------

    def expire_watches(self) -> None:
        """Compact history: open watches end with 410 Gone, and so does any watch from an older version."""
        with self.cond:
            self.floor = self.rv + 1
            self.history.clear()
            self.epoch += 1
            self.cond.notify_all()

    def fail(self, method: str, path_contains: str, code: int, *, times: int = 1,
             reason: str = "InternalError", message: str = "injected fault") -> None:
        with self.cond:
            self.faults.append(Fault(method, path_contains, code, times, reason, message))

    def stall(self, method: str, path_contains: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` matching requests get no answer for `seconds`, then their connection drops."""
        with self.cond:
            self.stalls.append(Fault(method, path_contains, 0, times, "Stalled", str(seconds)))

    def lease_requests(self) -> builtins.list[tuple[str, str]]:
        with self.cond:
            return [r for r in self.requests if "/leases" in r[1]]

    def objects_of(self, api: str, plural: str, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        with self.cond:
            return [copy.deepcopy(o) for (ns, _), o in sorted(self._bucket(api, plural).items())
                    if namespace is None or ns == namespace]

    def find(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.cond:
            obj = self._bucket(api, plural).get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def put(self, api: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object as the cluster would (a node, a pod made by someone else)."""
        ns = obj.get("metadata", {}).get("namespace")
        with self.cond:
            return copy.deepcopy(self.create(Route(api, plural, ns, None, None), copy.deepcopy(obj)))

    def update(self, api: str, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch any part of an object, status included (what kubelet and controllers do)."""
        with self.cond:
            r = Route(api, plural, namespace or None, name, None)
            old = self.get(r)
            new = merge_patch(old, patch)
            self.write(Route(api, plural, namespace or None, name, "status"), new)
            return copy.deepcopy(self.write(r, new))

    def remove(self, api: str, plural: str, namespace: str, name: str) -> None:
        """Delete regardless of finalizers (a node that vanished, a pod force-deleted)."""
        with self.cond:
            r = Route(api, plural, namespace or None, name, None)
            obj = copy.deepcopy(self.get(r))
            del self._bucket(api, plural)[(namespace, name)]
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self._record((api, plural), "DELETED", obj)


def _handler(fake: KubeFake) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        # HTTP/1.1 (QuietHandler's) so watch streams can be chunked as the real server's are: urllib3
        # hands a chunked body to the client chunk by chunk, an unchunked one only when it ends.

        def _send(self, code: int, body: Any) -> None:
            self.reply(code, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if fake._stalled(method, parts.path):
                self.close_connection = True  # no answer at all: the client sees a dropped connection
                return
            try:
                with fake.cond:
                    fake._check_fault(method, parts.path)
                r = parse_route(parts.path)
                if r.api in fake.missing_apis:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                if method == "GET" and query.get("watch") in ("true", "1"):
                    return self._stream(r, query)
                code, body = self._dispatch(method, r, query)
            except ApiError as exc:
                code, body = exc.code, exc.body()
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                code, body = 400, ApiError(400, "BadRequest", f"fake cannot serve: {exc!r}").body()
            self._send(code, body)

        def _dispatch(self, method: str, r: Route, query: dict[str, str]) -> tuple[int, Any]:
            with fake.cond:
                if method == "GET" and r.name is None:
                    items = fake.list(r, query.get("labelSelector", ""), query.get("fieldSelector", ""))
                    kind = KINDS.get(r.plural, r.plural) + "List"
                    return 200, {"kind": kind, "apiVersion": r.api, "items": items,
                                 "metadata": {"resourceVersion": str(fake.rv)}}
                if method == "GET":
                    return 200, fake.get(r)
                if method == "POST":
                    return 201, fake.create(r, self._body())
                if method == "DELETE":
                    return 200, fake.delete(r)
                if method == "PUT":
                    body = self._body()
                    return 200, fake.write(r, body, expected_rv=body.get("metadata", {}).get("resourceVersion"))
                if method == "PATCH":
                    body = self._body()
                    ctype = self.headers.get("Content-Type", "")
                    old = fake.get(r)
                    if "json-patch" in ctype:
                        try:
                            new = json_patch(old, body if isinstance(body, list) else [])
                        except PatchError as exc:
                            raise ApiError(422, "Invalid", str(exc)) from None
                    elif isinstance(body, dict):
                        want = (body.get("metadata") or {}).get("resourceVersion")
                        if want and want != old["metadata"]["resourceVersion"]:
                            raise ApiError(409, "Conflict", "the object has been modified")
                        new = merge_patch(old, body)
                    else:
                        raise ApiError(422, "Invalid", "a merge patch must be a JSON object")
                    return 200, fake.write(r, new)
            raise ApiError(405, "MethodNotAllowed", method)

        def _stream(self, r: Route, query: dict[str, str]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for event in fake.watch(r, query):
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        setattr(Handler, f"do_{method}", lambda self, m=method: self._serve(m))
    return Handler
