"""`gs://bucket/prefix` checkpoint storage through google-cloud-storage.

GCS gives what the storage contract needs: an object appears whole when its upload finishes, and
reads after a write are strongly consistent. Small objects (manifests, heartbeats, files up to
`resumable_threshold`) go up in one request; larger files as a resumable upload in `chunk_size`
pieces (`Blob.open("wb")`), where a chunk that failed is sent again and GCS keeps what it already
had. Uploads and downloads carry MD5 checksums that the library checks end to end, beside the
manifest's sha256.

The library's own retries are off except within a resumable upload; every call is retried here
instead, within the bounds given (tenacity, on throttling, 5xx and dropped connections), with an
injectable `sleep`, as the other storages are. Credentials come from `google.auth.default()` (on
GCE: the instance's service account); orch never sees them, and error messages carry GCS's status
and message, never headers. `ORCH_GCS_ENDPOINT_URL` points the storage at another server (a test
fake, an emulator). google-cloud-storage is the `[gcp]` extra's, imported only when a `gs://` URI is
opened: the job side needs nothing of the control plane.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from orchestrator.job.checkpoint.base import ObjectNotFound, StorageError
from orchestrator.job.checkpoint.filestore import validate_key

MIB = 1024 * 1024
CHUNK_QUANTUM = 256 * 1024  # GCS wants resumable chunks in multiples of 256 KiB (all but the last)
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
T = TypeVar("T")


def _parse(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "gs" or not parts.netloc:
        raise StorageError(f"not a gs://bucket/prefix URI: {uri!r}")
    if parts.query or parts.fragment:
        raise StorageError(f"gs URI with a query or fragment is not supported: {uri!r}")
    return parts.netloc, parts.path.strip("/")


def default_credentials() -> tuple[Any, str | None]:
    """Credentials (and project) from the standard chain, scoped to object read and write.

    One lookup per process, shared by every task's storage: `google.auth.default()` reads files and
    may ask the metadata server, far too slow to repeat for each task each tick. A chain that finds
    no credentials is not remembered (the next call looks again).
    """
    return _shared_credentials(os.getpid(), os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", ""))


@functools.lru_cache(maxsize=4)
def _shared_credentials(pid: int, credentials_file: str) -> tuple[Any, str | None]:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, project = google.auth.default(scopes=[SCOPE])
    except DefaultCredentialsError as exc:
        raise StorageError(
            "no Google credentials for gs:// checkpoints: google.auth.default found none "
            "(GOOGLE_APPLICATION_CREDENTIALS, gcloud application-default login, or a VM's service account)"
        ) from exc
    return credentials, project


def _transient(exc: BaseException) -> bool:
    """Worth another try: throttling, a 5xx, a dropped or timed-out connection."""
    import requests
    from google.api_core import exceptions as api
    from google.auth.exceptions import TransportError
    from google.cloud.storage.exceptions import DataCorruption

    if isinstance(exc, api.GoogleAPICallError):
        return exc.code in _RETRY_STATUSES
    # DataCorruption: the bytes that arrived do not match GCS's MD5; another transfer may be whole.
    return isinstance(exc, requests.ConnectionError | requests.Timeout | ConnectionError | TransportError
                      | DataCorruption)


class GcsStorage:
    """Objects under one bucket and name prefix; `list` has GCS's plain string-prefix semantics."""

    def __init__(
        self,
        uri: str,
        *,
        credentials: Any = None,
        endpoint: str | None = None,
        resumable_threshold: int = 16 * MIB,
        chunk_size: int = 8 * MIB,
        timeout: float = 60.0,
        retry_attempts: int = 5,
        retry_wait_seconds: float = 0.5,
        retry_max_wait_seconds: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from google.cloud import storage  # type: ignore[attr-defined]  # no stubs for google-cloud-storage
        from google.cloud.storage.retry import DEFAULT_RETRY

        self.uri = uri
        self.bucket, self.prefix = _parse(uri)
        self.endpoint = (endpoint or os.environ.get("ORCH_GCS_ENDPOINT_URL") or DEFAULT_ENDPOINT).rstrip("/")
        project: str | None = None
        if credentials is None:
            credentials, project = default_credentials()
        # No project lookup: objects in a named bucket need none, and the lookup may ask a server.
        self._client = storage.Client(project=project or "<none>", credentials=credentials,
                                      client_options={"api_endpoint": self.endpoint})
        self._bucket = self._client.bucket(self.bucket)
        self.resumable_threshold = max(0, resumable_threshold)
        self.chunk_size = max(CHUNK_QUANTUM, chunk_size // CHUNK_QUANTUM * CHUNK_QUANTUM)
        self._timeout = timeout
        self._retrying = Retrying(
            stop=stop_after_attempt(max(1, retry_attempts)),
            wait=wait_random_exponential(multiplier=retry_wait_seconds, max=retry_max_wait_seconds),
            retry=retry_if_exception(_transient),
            sleep=sleep,
            reraise=True,
        )
        # Within one resumable upload, the library sends a failed chunk again (GCS keeps what it had).
        self._chunk_retry = DEFAULT_RETRY.with_delay(initial=retry_wait_seconds, maximum=retry_max_wait_seconds)

    # --- plumbing ------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, action: str, key: str, fn: Callable[[], T]) -> T:
        """`fn` retried within bounds; GCS's refusals become StorageError (ObjectNotFound for a 404)."""
        from google.api_core import exceptions as api

        try:
            return self._retrying(fn)
        except api.NotFound:
            raise ObjectNotFound(f"{self.uri}: no object {key!r}") from None
        except api.GoogleAPICallError as exc:
            raise StorageError(f"{self.uri}: cannot {action} {key!r}: HTTP {exc.code}: {exc.message}") from None
        except Exception as exc:
            if _transient(exc):
                raise StorageError(f"{self.uri}: cannot {action} {key!r}: {type(exc).__name__}") from exc
            raise

    # --- writes --------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        with self._writing(key):
            self._upload(key, name, lambda: io.BytesIO(data), len(data))  # BytesIO shares `data`, no copy

    def put_file(self, key: str, path: Path) -> None:
        name = self._name(key)
        try:
            size = path.stat().st_size
            with path.open("rb") as f, self._writing(key):
                self._upload(key, name, lambda: f, size)
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot read {path} for {key!r}: {exc}") from exc

    @contextlib.contextmanager
    def _writing(self, key: str) -> Iterator[None]:
        """A 404 on an upload means the bucket is missing, not the object: say so."""
        try:
            yield
        except ObjectNotFound:
            raise StorageError(f"{self.uri}: cannot write {key!r}: no bucket {self.bucket!r}") from None

    def _upload(self, key: str, name: str, source: Callable[[], IO[bytes]], size: int) -> None:
        def once() -> None:
            stream = source()
            stream.seek(0)
            blob = self._bucket.blob(name)
            if size <= self.resumable_threshold:
                blob.upload_from_file(stream, size=size, content_type="application/octet-stream",
                                      checksum="md5", retry=None, timeout=self._timeout)
                return
            with blob.open("wb", chunk_size=self.chunk_size, ignore_flush=True, checksum="md5",
                           content_type="application/octet-stream", retry=self._chunk_retry,
                           timeout=self._timeout) as out:
                shutil.copyfileobj(stream, out, self.chunk_size)

        self._call("write", key, once)

    # --- reads ---------------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        blob = self._bucket.blob(self._name(key))
        data: bytes = self._call("read", key, lambda: blob.download_as_bytes(
            checksum="md5", retry=None, timeout=self._timeout))
        return data

    def get_file(self, key: str, path: Path) -> None:
        """Download next to `path`, then rename: a reader of `path` never sees half a file."""
        blob = self._bucket.blob(self._name(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".orch-tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:

                def once() -> None:
                    out.seek(0)
                    out.truncate()
                    blob.download_to_file(out, checksum="md5", retry=None, timeout=self._timeout)

                self._call("read", key, once)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""

        def names() -> list[str]:
            blobs = self._client.list_blobs(self._bucket, prefix=base + prefix, fields="items(name),nextPageToken",
                                            retry=None, timeout=self._timeout)
            return [str(blob.name) for blob in blobs]

        try:
            found = self._call("list", prefix or "/", names)
        except ObjectNotFound:
            raise StorageError(f"{self.uri}: no bucket {self.bucket!r}") from None
        return sorted(name[len(base):] for name in found)

    def delete(self, key: str) -> None:
        blob = self._bucket.blob(self._name(key))
        with contextlib.suppress(ObjectNotFound):
            self._call("delete", key, lambda: blob.delete(retry=None, timeout=self._timeout))

    def __repr__(self) -> str:
        return f"GcsStorage({self.uri!r})"
