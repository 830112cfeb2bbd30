"""A small GCS JSON-API fake over real HTTP: the calls google-cloud-storage makes for `GcsStorage`, and
an OAuth token endpoint.

Hand-written from the public JSON API reference, not Google. It keeps objects in memory and serves
media and multipart uploads, resumable uploads (a chunk must start at or before the server's offset,
its overlap with what the server kept must be the same bytes, and chunks other than the last are
multiples of 256 KiB, as GCS demands; 308 with a `Range` header in between; the total may be `*` until
the last chunk), media downloads (with an MD5 `x-goog-hash`, and `md5Hash` in object metadata, so the
library's end-to-end checks run), paginated listing by plain string prefix, and deletes. `/token` plays Google's OAuth
token endpoint for credential files that name it as their `token_uri`, so a test can drive the real
`google.auth.default()` chain and see the bearer token arrive. Every object has a generation, and
uploads and deletes honour `ifGenerationMatch` (0: only if absent) with 412, as GCS does; media
downloads carry `x-goog-generation`. Faults: `fail_next(action, status)`,
and `break_chunk()`, which keeps half of the next resumable chunk and then answers 503.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from google.auth.credentials import AnonymousCredentials

from tests.http_fake import QuietHandler, ServedFake, serving

QUANTUM = 256 * 1024
TOKEN = "fake-access-token-1"
_OBJECT = re.compile(r"^(?:/download)?/storage/v1/b/([^/]+)/o/(.+)$")
_OBJECTS = re.compile(r"^/storage/v1/b/([^/]+)/o$")
_UPLOAD = re.compile(r"^/upload/storage/v1/b/([^/]+)/o$")
_RANGE = re.compile(r"^bytes (\*|(\d+)-(\d+))/(\*|\d+)$")


class Reply:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.headers = status, headers or {}
        if body is None:
            self.data = b""
        elif isinstance(body, bytes):
            self.data = body
        else:
            self.data = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json; charset=UTF-8")


def error(status: int, message: str) -> Reply:
    return Reply(status, {"error": {"code": status, "message": message, "errors": [{"message": message}]}})


class GcsFake(ServedFake):
    def __init__(self, buckets: tuple[str, ...] = ("ckpt",)) -> None:
        super().__init__()
        self.buckets = set(buckets)
        self.objects: dict[tuple[str, str], bytes] = {}
        self.generations: dict[tuple[str, str], int] = {}
        self._generation = itertools.count(1_000_001)
        self.sessions: dict[str, tuple[str, str, int, bytearray]] = {}
        self.calls: Counter[str] = Counter()
        self.authorizations: list[str] = []
        self.page_size = 1000
        self.require_token = False
        self.lock = threading.RLock()
        self._faults: dict[str, list[int]] = {}
        self._break_chunk = False
        self._ids = itertools.count(1)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    def fail_next(self, action: str, status: int = 503, *, times: int = 1) -> None:
        """Actions: upload, chunk, get, list, delete."""
        with self.lock:
            self._faults.setdefault(action, []).extend([status] * times)

    def break_chunk(self) -> None:
        self._break_chunk = True

    # --- routing ---------------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, query: dict[str, str], headers: Any, body: bytes) -> Reply:
        with self.lock:
            if method == "POST" and raw_path == "/token":
                self.calls["token"] += 1
                return Reply(200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})
            self.authorizations.append(str(headers.get("Authorization", "")))
            if self.require_token and headers.get("Authorization") != f"Bearer {TOKEN}":
                return error(401, "Anonymous caller does not have storage.objects access")
            action, args = self._route(method, raw_path, query)
            self.calls[action] += 1
            faults = self._faults.get(action)
            if faults:
                return error(faults.pop(0), f"injected {action} failure")
            if args and args[0] not in self.buckets:
                return error(404, "The specified bucket does not exist.")
            handler = {
                "upload": self._upload, "chunk": self._chunk, "get": self._get,
                "list": self._list, "delete": self._delete,
            }.get(action)
            if handler is None:
                return error(404, f"no route for {method} {raw_path}")
            return handler(args, query, headers, body)

    def _route(self, method: str, path: str, query: dict[str, str]) -> tuple[str, list[str]]:
        if (m := _UPLOAD.match(path)) and method == "POST":
            return "upload", [unquote(m.group(1))]
        if _UPLOAD.match(path) and method == "PUT" and "upload_id" in query:
            return "chunk", []
        if (m := _OBJECT.match(path)) and method in ("GET", "DELETE"):
            return ("get" if method == "GET" else "delete"), [unquote(m.group(1)), unquote(m.group(2))]
        if (m := _OBJECTS.match(path)) and method == "GET":
            return "list", [unquote(m.group(1))]
        return "unknown", []

    # --- the API ---------------------------------------------------------------------------

    def _meta(self, bucket: str, name: str) -> dict[str, Any]:
        data = self.objects[(bucket, name)]
        return {"kind": "storage#object", "bucket": bucket, "name": name, "size": str(len(data)),
                "generation": str(self.generations.get((bucket, name), 0)), "md5Hash": _md5(data)}

    def _precondition(self, bucket: str, name: str, query: dict[str, str]) -> Reply | None:
        """412 unless `ifGenerationMatch` names the object's generation (0: no object)."""
        wanted = query.get("ifGenerationMatch")
        if wanted is None:
            return None
        current = self.generations.get((bucket, name), 1) if (bucket, name) in self.objects else 0
        if not wanted.isdigit() or int(wanted) != current:
            return error(412, "At least one of the pre-conditions you specified did not hold.")
        return None

    def _store(self, bucket: str, name: str, data: bytes) -> None:
        self.objects[(bucket, name)] = data
        self.generations[(bucket, name)] = next(self._generation)

    def _upload(self, args: list[str], query: dict[str, str], headers: Any, body: bytes) -> Reply:
        bucket, name = args[0], query.get("name", "")
        kind = query.get("uploadType")
        if kind == "multipart":
            name, body = _multipart(headers.get("Content-Type", ""), body)
        elif not name and body:  # a resumable session's metadata, as JSON
            name = str(json.loads(body).get("name", ""))
        if not name:
            return error(400, "Required parameter: name")
        refused = self._precondition(bucket, name, query)
        if refused is not None:
            return refused
        if kind in ("media", "multipart"):
            self._store(bucket, name, body)
            return Reply(200, self._meta(bucket, name))
        if kind == "resumable":
            sid = f"session-{next(self._ids)}"
            total = int(headers.get("X-Upload-Content-Length", "-1"))
            self.sessions[sid] = (bucket, name, total, bytearray())
            location = f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={sid}"
            return Reply(200, None, {"Location": location})
        return error(400, f"unsupported uploadType {query.get('uploadType')!r}")

    def _chunk(self, args: list[str], query: dict[str, str], headers: Any, body: bytes) -> Reply:
        session = self.sessions.get(query["upload_id"])
        if session is None:
            return error(404, "No such upload session")
        bucket, name, total, kept = session
        match = _RANGE.match(headers.get("Content-Range", ""))
        if match is not None and match.group(4) != "*":
            if total >= 0 and int(match.group(4)) != total:
                match = None
            total = int(match.group(4)) if match else total
            self.sessions[query["upload_id"]] = (bucket, name, total, kept)
        if match is None:
            return error(400, f"bad Content-Range {headers.get('Content-Range')!r}")
        if match.group(1) != "*":
            start, end = int(match.group(2)), int(match.group(3))
            # A chunk sent again after a failure may start before the offset: GCS keeps one copy of
            # the overlap, which must be the same bytes.
            if start > len(kept) or end - start + 1 != len(body) or bytes(kept[start:]) != body[: len(kept) - start]:
                return error(400, f"chunk {start}-{end} does not continue at {len(kept)}")
            if (total < 0 or end + 1 < total) and len(body) % QUANTUM:
                return error(400, "chunks other than the last must be multiples of 256 KiB")
            if self._break_chunk:
                self._break_chunk = False
                kept += body[len(kept) - start:][: len(body) // 2 // QUANTUM * QUANTUM]
                return error(503, "Backend Error")
            kept += body[len(kept) - start:]
        if len(kept) == total:
            self._store(bucket, name, bytes(kept))
            del self.sessions[query["upload_id"]]
            return Reply(200, self._meta(bucket, name))
        return Reply(308, None, {"Range": f"bytes=0-{len(kept) - 1}"} if kept else {})

    def _get(self, args: list[str], query: dict[str, str], headers: Any, body: bytes) -> Reply:
        data = self.objects.get((args[0], args[1]))
        if data is None:
            return error(404, f"No such object: {args[0]}/{args[1]}")
        if query.get("alt") != "media":
            return Reply(200, self._meta(args[0], args[1]))
        return Reply(200, data, {"Content-Type": "application/octet-stream", "x-goog-hash": f"md5={_md5(data)}",
                                 "x-goog-generation": str(self.generations.get((args[0], args[1]), 0))})

    def _list(self, args: list[str], query: dict[str, str], headers: Any, body: bytes) -> Reply:
        prefix = query.get("prefix", "")
        names = sorted(n for (b, n) in self.objects if b == args[0] and n.startswith(prefix))
        start = int(query.get("pageToken") or 0)
        end = start + min(self.page_size, int(query.get("maxResults", "1000")))
        doc: dict[str, Any] = {"kind": "storage#objects", "items": [{"name": n} for n in names[start:end]]}
        if end < len(names):
            doc["nextPageToken"] = str(end)
        return Reply(200, doc)

    def _delete(self, args: list[str], query: dict[str, str], headers: Any, body: bytes) -> Reply:
        if (args[0], args[1]) in self.objects and (refused := self._precondition(args[0], args[1], query)):
            return refused
        if self.objects.pop((args[0], args[1]), None) is None:
            return error(404, f"No such object: {args[0]}/{args[1]}")
        return Reply(204)


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # GCS's own checksum


def _multipart(content_type: str, body: bytes) -> tuple[str, bytes]:
    """A multipart/related upload: (the name from its JSON metadata part, the media part)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        return "", b""
    parts = body.split(b"--" + boundary.group(1).encode())
    metadata, media = (part.split(b"\r\n\r\n", 1)[1] for part in parts[1:3])
    return str(json.loads(metadata).get("name", "")), media.removesuffix(b"\r\n")


def _handler(fake: GcsFake) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def _serve(self) -> None:
            path, query, body = self.read_request(keep_blank_values=True)
            try:
                reply = fake.handle(self.command, path, query, self.headers, body)
            except Exception as exc:  # a bug of the fake: answer 500 and fail the test at teardown
                fake.crashes.append(f"{self.command} {self.path}: {exc!r}")
                reply = error(500, "fake crashed")
            self.reply(reply.status, reply.data, reply.headers)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def anonymous() -> Any:
    """Credentials that sign nothing: the fakes need none, and no real ones are ever near a test."""
    return AnonymousCredentials()  # type: ignore[no-untyped-call]


def running(buckets: tuple[str, ...] = ("ckpt",)) -> Iterator[GcsFake]:
    """Generator for a pytest fixture: a started fake, stopped afterwards."""
    return serving(GcsFake(buckets))
