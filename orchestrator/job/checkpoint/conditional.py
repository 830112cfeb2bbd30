"""Objects written only if absent: the one primitive a campaign's bucket transport needs.

A worker that cannot reach its controller (a laptop, a CI runner) still shares the job's bucket with
it. The races of a campaign (two workers committing one item, a request written twice because its
first answer was lost, two controllers answering one request) are settled by the object store itself
with a conditional write: the object is created only if no object has that name, atomically, and the
loser is told so. S3 spells it `PutObject` with `If-None-Match: *`, GCS `ifGenerationMatch=0`, a
file system `link(2)` (which never replaces). `delete_if` removes an object only while it is the one
that was read (S3 `If-Match: <etag>`, GCS `ifGenerationMatch=<generation>`), so a cleanup never
removes a newer object of the same name.

Job side: imports no control-plane module; boto3 or the Google session only for their own schemes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from orchestrator.extras import missing_extra
from orchestrator.job.checkpoint.filestore import validate_key
from orchestrator.job.checkpoint.storage import StorageError

__all__ = ["ConditionalObjects", "Versioned", "open_conditional", "result_key"]


def result_key(index: int) -> str:
    """Where a campaign item's one result lies in its items bucket (orchestrator/job/worker/bucket_source.py):
    here, where both the worker and the controller's pump may import it."""
    return f"res/{index:09d}.json"


class Versioned(Protocol):
    """What `read` returns: the bytes and the version token `delete_if` checks (ETag, generation)."""

    data: bytes
    version: str


class _Read:
    __slots__ = ("data", "version")

    def __init__(self, data: bytes, version: str) -> None:
        self.data, self.version = data, version


class ConditionalObjects(Protocol):
    uri: str

    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if no object has that name; False if one had (nothing is changed)."""

    def read(self, key: str) -> Versioned | None:
        """The object and its version, or None if there is none."""

    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""

    def delete_if(self, key: str, version: str) -> bool:
        """Delete `key` if it is still at `version`; False if it changed or is gone."""


def open_conditional(uri: str) -> ConditionalObjects:
    scheme = uri.split("://", 1)[0]
    try:
        if scheme == "s3":
            return S3Objects(uri)
        if scheme == "gs":
            return GcsObjects(uri)
    except ModuleNotFoundError as exc:
        raise StorageError(missing_extra(exc, f"{scheme}:// campaign items") or str(exc)) from None
    if scheme == "file":
        return FileObjects(uri)
    raise StorageError(f"no conditional object storage for {uri!r} (known: s3://, gs://, file://)")


def _split(uri: str, scheme: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != scheme or not parts.netloc or parts.query or parts.fragment:
        raise StorageError(f"not a {scheme}://bucket/prefix URI: {uri!r}")
    return parts.netloc, parts.path.strip("/")


class S3Objects:
    """S3 (and moto, MinIO): conditional PutObject / DeleteObject, client from the standard chain."""

    def __init__(self, uri: str, *, client: Any | None = None) -> None:
        from orchestrator.job.checkpoint.s3 import default_client

        self.uri = uri
        self.bucket, self.prefix = _split(uri, "s3")
        self._client = client if client is not None else default_client()

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _code(self, exc: Exception) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            # 409 ConditionalRequestConflict: a concurrent write of the same name is in flight; it wins.
            if self._code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise StorageError(f"{self.uri}: cannot write {key!r}: {self._code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{self.uri}: cannot write {key!r}: {type(exc).__name__}") from exc

    def read(self, key: str) -> Versioned | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            with contextlib.closing(reply["Body"]) as body:
                return _Read(bytes(body.read()), str(reply["ETag"]))
        except ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StorageError(f"{self.uri}: cannot read {key!r}: {self._code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{self.uri}: cannot read {key!r}: {type(exc).__name__}") from exc

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                               Prefix=base + prefix):
                keys += [str(obj["Key"])[len(base):] for obj in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"{self.uri}: cannot list {prefix!r}: {type(exc).__name__}") from exc
        return sorted(keys)

    def delete_if(self, key: str, version: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=version)
            return True
        except ClientError as exc:
            if self._code(exc) in ("PreconditionFailed", "NoSuchKey", "404", "NotFound",
                                   "ConditionalRequestConflict"):
                return False
            raise StorageError(f"{self.uri}: cannot delete {key!r}: {self._code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{self.uri}: cannot delete {key!r}: {type(exc).__name__}") from exc


class GcsObjects:
    """GCS's JSON API with generation preconditions, on the checkpoint storage's authorized session."""

    def __init__(self, uri: str, *, session: Any | None = None, endpoint: str | None = None,
                 timeout: float = 30.0) -> None:
        self.uri = uri
        self.bucket, self.prefix = _split(uri, "gs")
        self.endpoint = (endpoint or os.environ.get("ORCH_GCS_ENDPOINT_URL") or "https://storage.googleapis.com"
                         ).rstrip("/")
        if session is None:  # the credentials the checkpoint storage uses, from the standard chain
            from google.auth.transport.requests import AuthorizedSession

            from orchestrator.job.checkpoint.gcs import default_credentials

            session = AuthorizedSession(default_credentials()[0])  # type: ignore[no-untyped-call]
        self._session = session
        self._timeout = timeout

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _object(self, key: str) -> str:
        return f"{self.endpoint}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(self._name(key), safe='')}"

    def _send(self, action: str, key: str, method: str, url: str, **kwargs: Any) -> Any:
        import requests

        try:
            return self._session.request(method, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise StorageError(f"{self.uri}: cannot {action} {key!r}: {type(exc).__name__}") from exc

    def _fail(self, action: str, key: str, reply: Any) -> StorageError:
        return StorageError(f"{self.uri}: cannot {action} {key!r}: HTTP {reply.status_code}")

    def create(self, key: str, data: bytes) -> bool:
        url = f"{self.endpoint}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o"
        reply = self._send("write", key, "POST", url, data=data, headers={"Content-Type": "application/octet-stream"},
                           params={"uploadType": "media", "name": self._name(key), "ifGenerationMatch": "0"})
        if reply.status_code == 412:
            return False
        if reply.status_code != 200:
            raise self._fail("write", key, reply)
        return True

    def read(self, key: str) -> Versioned | None:
        reply = self._send("read", key, "GET", self._object(key), params={"alt": "media"})
        if reply.status_code == 404:
            return None
        if reply.status_code != 200:
            raise self._fail("read", key, reply)
        return _Read(reply.content, str(reply.headers.get("x-goog-generation", "")))

    def list(self, prefix: str) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        url = f"{self.endpoint}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        params = {"prefix": base + prefix, "fields": "items(name),nextPageToken"}
        names: list[str] = []
        while True:
            reply = self._send("list", prefix, "GET", url, params=params)
            if reply.status_code != 200:
                raise self._fail("list", prefix, reply)
            doc = reply.json()
            names += [str(item["name"])[len(base):] for item in doc.get("items", [])]
            if not doc.get("nextPageToken"):
                return sorted(names)
            params["pageToken"] = str(doc["nextPageToken"])

    def delete_if(self, key: str, version: str) -> bool:
        reply = self._send("delete", key, "DELETE", self._object(key), params={"ifGenerationMatch": version})
        if reply.status_code in (404, 412):
            return False
        if reply.status_code not in (200, 204):
            raise self._fail("delete", key, reply)
        return True


class FileObjects:
    """A local folder (tests, a single machine): a write goes to a temporary file, then `link(2)`s to its
    name, which fails if the name exists; the version is the inode number."""

    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise StorageError(f"not a file:///path URI: {uri!r}")
        self.uri = uri
        self.root = Path(parts.path)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".orch-tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def read(self, key: str) -> Versioned | None:
        path = self._path(key)
        try:
            with path.open("rb") as f:
                return _Read(f.read(), str(os.fstat(f.fileno()).st_ino))
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                if p.is_file() and not p.name.startswith(".orch-tmp-"))
        return sorted(k for k in keys if k.startswith(prefix))

    def delete_if(self, key: str, version: str) -> bool:
        path = self._path(key)
        try:
            if str(path.stat().st_ino) != version:
                return False
            path.unlink()
            return True
        except FileNotFoundError:
            return False
