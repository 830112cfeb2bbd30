"""`gs://bucket/prefix` checkpoint storage over the GCS JSON API.

GCS gives what the storage contract needs: an object appears whole when its upload finishes (simple
or resumable), and reads after a write are strongly consistent. So `put_bytes` (manifests,
heartbeats) is one simple media upload, and files above `resumable_threshold` go up as a resumable
upload in chunks, where a failed chunk asks GCS how much it kept and continues from there instead of
starting over. Requests go through `google.auth.transport.requests.AuthorizedSession` with
credentials from `google.auth.default()` (on GCE: the instance's service account); orch never sees
them, and error messages carry GCS's status and message, never headers. `ORCH_GCS_ENDPOINT_URL`
points the storage at another server (a test fake, an emulator).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from orchestrator.checkpoint.filestore import validate_key
from orchestrator.checkpoint.storage import ObjectNotFound, StorageError

MIB = 1024 * 1024
CHUNK_QUANTUM = 256 * 1024  # GCS wants resumable chunks in multiples of 256 KiB (all but the last)
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class _Retryable(StorageError):
    """A failure worth another try (throttling, 5xx, a dropped connection)."""


def _parse(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "gs" or not parts.netloc:
        raise StorageError(f"not a gs://bucket/prefix URI: {uri!r}")
    if parts.query or parts.fragment:
        raise StorageError(f"gs URI with a query or fragment is not supported: {uri!r}")
    return parts.netloc, parts.path.strip("/")


def default_session() -> requests.Session:
    """An authorized session from the standard credential chain, scoped to object read and write.

    One per process, shared by every task's storage: `google.auth.default()` reads files and may ask
    the metadata server, far too slow to repeat for each task each tick. A chain that finds no
    credentials is not remembered (the next call looks again).
    """
    return _shared_session(os.getpid(), os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", ""))


@functools.lru_cache(maxsize=4)
def _shared_session(pid: int, credentials_file: str) -> requests.Session:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.auth.transport.requests import AuthorizedSession

    try:
        credentials, _ = google.auth.default(scopes=[SCOPE])
    except DefaultCredentialsError as exc:
        raise StorageError(
            "no Google credentials for gs:// checkpoints: google.auth.default found none "
            "(GOOGLE_APPLICATION_CREDENTIALS, gcloud application-default login, or a VM's service account)"
        ) from exc
    session: requests.Session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    return session


class GcsStorage:
    """Objects under one bucket and name prefix; `list` has GCS's plain string-prefix semantics."""

    def __init__(
        self,
        uri: str,
        *,
        session: requests.Session | None = None,
        endpoint: str | None = None,
        resumable_threshold: int = 16 * MIB,
        chunk_size: int = 8 * MIB,
        timeout: float = 60.0,
        retry_attempts: int = 5,
        retry_wait_seconds: float = 0.5,
        retry_max_wait_seconds: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.uri = uri
        self.bucket, self.prefix = _parse(uri)
        self.endpoint = (endpoint or os.environ.get("ORCH_GCS_ENDPOINT_URL") or DEFAULT_ENDPOINT).rstrip("/")
        self._session = session if session is not None else default_session()
        self.resumable_threshold = max(0, resumable_threshold)
        self.chunk_size = max(CHUNK_QUANTUM, chunk_size // CHUNK_QUANTUM * CHUNK_QUANTUM)
        self._timeout = timeout
        self._attempts, self._wait, self._max_wait, self._sleep = (
            max(1, retry_attempts), retry_wait_seconds, retry_max_wait_seconds, sleep
        )
        self._retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=retry_wait_seconds, max=retry_max_wait_seconds),
            retry=retry_if_exception_type(_Retryable),
            sleep=sleep,
            reraise=True,
        )

    # --- plumbing ------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _object_url(self, name: str) -> str:
        return f"{self.endpoint}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"

    def _upload_url(self) -> str:
        return f"{self.endpoint}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o"

    def _send(self, action: str, key: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One HTTP request; connection failures and retryable statuses raise `_Retryable`."""
        try:
            reply = self._session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise _Retryable(f"{self.uri}: cannot {action} {key!r}: {type(exc).__name__}") from exc
        if reply.status_code == 404:
            raise ObjectNotFound(f"{self.uri}: no object {key!r}")
        if reply.status_code in _RETRY_STATUSES:
            raise _Retryable(self._describe(action, key, reply))
        return reply

    def _request(self, action: str, key: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        """`_send` retried within bounds; any status other than 2xx (and 308) becomes a StorageError."""
        reply: requests.Response = self._retrying(self._send, action, key, method, url, **kwargs)
        if not (200 <= reply.status_code < 300 or reply.status_code == 308):
            raise StorageError(self._describe(action, key, reply))
        return reply

    def _describe(self, action: str, key: str, reply: requests.Response) -> str:
        try:
            message = str(reply.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = reply.text[:200]
        return f"{self.uri}: cannot {action} {key!r}: HTTP {reply.status_code}: {message}"

    # --- writes --------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        with self._writing(key):
            if len(data) > self.resumable_threshold:
                self._resumable(key, name, io.BytesIO(data), len(data))  # BytesIO shares `data`, no copy
            else:
                self._simple(key, name, data)

    def put_file(self, key: str, path: Path) -> None:
        name = self._name(key)
        try:
            size = path.stat().st_size
            with path.open("rb") as f, self._writing(key):
                if size <= self.resumable_threshold:
                    self._simple(key, name, f.read())
                else:
                    self._resumable(key, name, f, size)
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot read {path} for {key!r}: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self, key: str) -> Iterator[None]:
        """A 404 on an upload means the bucket is missing, not the object: say so."""
        try:
            yield
        except ObjectNotFound:
            raise StorageError(f"{self.uri}: cannot write {key!r}: no bucket {self.bucket!r}") from None

    def _simple(self, key: str, name: str, data: bytes) -> None:
        reply = self._request(
            "write", key, "POST", self._upload_url(),
            params={"uploadType": "media", "name": name},
            data=data, headers={"Content-Type": "application/octet-stream"},
        )
        self._check_size(key, reply, len(data))

    def _resumable(self, key: str, name: str, source: IO[bytes], size: int) -> None:
        """Start a session, then send chunks; after a failed chunk, resume from what GCS kept."""
        start = self._request(
            "start upload of", key, "POST", self._upload_url(),
            params={"uploadType": "resumable", "name": name},
            headers={"X-Upload-Content-Type": "application/octet-stream", "X-Upload-Content-Length": str(size)},
        )
        session_url = start.headers.get("Location")
        if not session_url:
            raise StorageError(f"{self.uri}: cannot write {key!r}: no resumable session URL in the reply")
        offset, stalls = 0, 0
        while True:
            reply = self._chunk(key, session_url, source, offset, size)
            if reply.status_code in (200, 201):
                self._check_size(key, reply, size)
                return
            if reply.status_code != 308:
                raise StorageError(self._describe("write", key, reply))
            kept = _persisted(reply)
            stalls = 0 if kept > offset else stalls + 1
            if stalls > self._attempts:
                raise StorageError(f"{self.uri}: cannot write {key!r}: the upload makes no progress at {kept}")
            if stalls:
                self._sleep(min(self._max_wait, self._wait * 2**stalls))
            offset = kept

    def _chunk(self, key: str, session_url: str, source: IO[bytes], offset: int, size: int) -> requests.Response:
        """Send the chunk at `offset`; when that fails, ask GCS where the upload stands instead."""
        source.seek(offset)
        chunk = source.read(self.chunk_size)
        span = f"bytes {offset}-{offset + len(chunk) - 1}/{size}" if chunk else f"bytes */{size}"
        try:
            try:
                return self._send("write", key, "PUT", session_url, data=chunk, headers={"Content-Range": span})
            except _Retryable:
                return self._request(
                    "resume upload of", key, "PUT", session_url, headers={"Content-Range": f"bytes */{size}"}
                )
        except ObjectNotFound:
            raise StorageError(f"{self.uri}: cannot write {key!r}: the upload session expired") from None

    def _check_size(self, key: str, reply: requests.Response, size: int) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            stored = int(reply.json()["size"])
            if stored != size:
                raise StorageError(f"{self.uri}: wrote {key!r}: GCS stored {stored} bytes of {size}")

    # --- reads ---------------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        reply = self._request("read", key, "GET", self._object_url(self._name(key)), params={"alt": "media"})
        return reply.content

    def get_file(self, key: str, path: Path) -> None:
        """Download next to `path`, then rename: a reader of `path` never sees half a file."""
        url = self._object_url(self._name(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".orch-tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                self._retrying(self._download, key, url, out)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _download(self, key: str, url: str, out: IO[bytes]) -> None:
        out.seek(0)
        out.truncate()
        with contextlib.closing(self._send("read", key, "GET", url, params={"alt": "media"}, stream=True)) as reply:
            if reply.status_code != 200:
                raise StorageError(self._describe("read", key, reply))
            try:
                for block in reply.iter_content(MIB):
                    out.write(block)
            except requests.RequestException as exc:
                raise _Retryable(f"{self.uri}: cannot read {key!r}: {type(exc).__name__}") from exc

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        return sorted(name[len(base):] for name in self._names(base + prefix))

    def _names(self, prefix: str) -> Iterator[str]:
        url = f"{self.endpoint}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        params = {"prefix": prefix, "fields": "items(name),nextPageToken"}
        while True:
            try:
                doc = self._request("list", prefix or "/", "GET", url, params=params).json()
            except ObjectNotFound:
                raise StorageError(f"{self.uri}: no bucket {self.bucket!r}") from None
            except ValueError as exc:
                raise StorageError(f"{self.uri}: cannot list {prefix!r}: unreadable reply") from exc
            yield from (str(item["name"]) for item in doc.get("items", []))
            token = doc.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = str(token)

    def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            self._request("delete", key, "DELETE", self._object_url(self._name(key)))

    def __repr__(self) -> str:
        return f"GcsStorage({self.uri!r})"


def _persisted(reply: requests.Response) -> int:
    """The next offset after a 308: GCS's `Range: bytes=0-N` says it kept N + 1 bytes (none if absent)."""
    kept = reply.headers.get("Range", "")
    if not kept.startswith("bytes=0-"):
        return 0
    try:
        return int(kept.removeprefix("bytes=0-")) + 1
    except ValueError:
        raise StorageError(f"unreadable Range header in a resumable upload reply: {kept!r}") from None
