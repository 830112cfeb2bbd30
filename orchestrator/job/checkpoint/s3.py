"""`s3://bucket/prefix` checkpoint storage.

S3 gives what the storage contract needs without extra machinery: a single PUT is atomic and reads
after it are strongly consistent, so `put_bytes` (manifests, heartbeats) is one `put_object`. Large
files go up as multipart uploads through boto3's transfer manager, which S3 also publishes
atomically on completion. Credentials come from boto3's standard chain (on EC2: the instance
profile); `ORCH_S3_ENDPOINT_URL` points the client elsewhere (moto, MinIO), and boto3 itself honours
`AWS_ENDPOINT_URL_S3`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.job.checkpoint.base import ObjectNotFound, StorageError
from orchestrator.job.checkpoint.filestore import validate_key

MIB = 1024 * 1024
_MISSING = ("NoSuchKey", "404", "NotFound")
_SDK_ERRORS = (ClientError, BotoCoreError)


def _parse(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageError(f"not an s3://bucket/prefix URI: {uri!r}")
    if parts.query or parts.fragment:
        raise StorageError(f"s3 URI with a query or fragment is not supported: {uri!r}")
    return parts.netloc, parts.path.strip("/")


def default_client() -> Any:
    """One S3 client per process and endpoint, shared by every task's storage.

    Making a client resolves credentials and loads botocore's service model (hundreds of ms); the
    control plane reads every running task's heartbeat each tick, so a client per task per tick
    would cost more than the reads. boto3 clients are thread-safe; a forked child makes its own.
    """
    return _shared_client(os.environ.get("ORCH_S3_ENDPOINT_URL"), os.getpid(), _chain_key(_AWS_CHAIN))


# The environment boto3's credential and region chain reads: a change makes a new client.
_AWS_CHAIN = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
              "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL")


def _chain_key(names: tuple[str, ...]) -> str:
    """A digest of the credential environment (never the values themselves) to key shared clients."""
    return hashlib.sha256("\0".join(os.environ.get(n, "") for n in names).encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def _shared_client(endpoint_url: str | None, pid: int, chain: str) -> Any:
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


class S3Storage:
    """Objects under one bucket and key prefix; `list` has S3's string-prefix semantics."""

    def __init__(
        self,
        uri: str,
        *,
        client: Any | None = None,
        multipart_threshold: int = 64 * MIB,
        multipart_chunksize: int = 16 * MIB,
        list_page_size: int = 1000,
    ) -> None:
        self.uri = uri
        self.bucket, self.prefix = _parse(uri)
        self._client = client if client is not None else default_client()
        self._page_size = list_page_size
        # S3 refuses parts under 5 MiB (except the last), so the chunk size never goes below that.
        self._transfer = TransferConfig(
            multipart_threshold=max(1, multipart_threshold),
            multipart_chunksize=max(5 * MIB, multipart_chunksize),
        )

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, action: str, key: str, exc: Exception) -> StorageError:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return ObjectNotFound(f"{self.uri}: no object {key!r}")
            return StorageError(f"{self.uri}: cannot {action} {key!r}: {code}: {exc.response['Error'].get('Message')}")
        return StorageError(f"{self.uri}: cannot {action} {key!r}: {type(exc).__name__}: {exc}")

    def put_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data)
        except _SDK_ERRORS as exc:
            raise self._fail("write", key, exc) from exc

    def put_file(self, key: str, path: Path) -> None:
        full = self._key(key)
        try:
            self._client.upload_file(str(path), self.bucket, full, Config=self._transfer)
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot read {path} for {key!r}: {exc}") from exc
        except _SDK_ERRORS as exc:
            raise self._fail("write", key, exc) from exc

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=full)
            with contextlib.closing(reply["Body"]) as body:
                return bytes(body.read())
        except _SDK_ERRORS as exc:
            raise self._fail("read", key, exc) from exc

    def get_file(self, key: str, path: Path) -> None:
        """Download next to `path`, then rename: a reader of `path` never sees half a file."""
        full = self._key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".orch-tmp-", dir=path.parent)
        os.close(fd)
        try:
            self._client.download_file(self.bucket, full, tmp, Config=self._transfer)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, _SDK_ERRORS):
                raise self._fail("read", key, exc) from exc
            raise

    def list(self, prefix: str = "") -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix, PaginationConfig={"PageSize": self._page_size}
            )
            for page in pages:
                keys += [str(obj["Key"])[len(base) :] for obj in page.get("Contents", [])]
        except _SDK_ERRORS as exc:
            raise self._fail("list", prefix or "/", exc) from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except _SDK_ERRORS as exc:
            error = self._fail("delete", key, exc)
            if not isinstance(error, ObjectNotFound):
                raise error from exc

    def __repr__(self) -> str:
        return f"S3Storage({self.uri!r})"
