"""Where the agent learns that its instance is about to be taken back.

Each source answers one question, `poll()`: is there a notice now? They are polled every second or so
from the agent's main loop, so every network call has a short timeout and a source never sleeps.
Transport failures raise `NoticeSourceError`; the agent logs them and polls again (a metadata server
that hiccups must not kill the job). Only the standard library is used: the agent runs in job images
that may hold nothing but Python.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vocab import NoticeKind

DEFAULT_IMDS_URL = "http://169.254.169.254"
DEFAULT_GCE_METADATA_URL = "http://metadata.google.internal"
# GCE gives a preempted VM 30 s before it stops it; its metadata carries no deadline of its own.
GCE_PREEMPTION_NOTICE_S = 30.0


class NoticeSourceError(Exception):
    """The source could not be asked (connection refused, timeout, unexpected status)."""


@dataclass(frozen=True, slots=True)
class AgentNotice:
    kind: NoticeKind
    source: str
    deadline: float | None = None  # Unix seconds when the capacity goes away, if the source says


class NoticeSource(Protocol):
    name: str

    def poll(self) -> AgentNotice | None: ...


class FileNoticeSource:
    """A JSON file the `local` provider writes: {"kind": "interruption", "deadline": <unix s>}.

    A file that is absent, or not (yet) valid JSON, is no notice: the writer replaces it atomically,
    so a half-written file is only ever seen when someone wrote it by hand.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"

    def poll(self) -> AgentNotice | None:
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict):
            return None
        try:
            kind = NoticeKind(doc.get("kind", NoticeKind.INTERRUPTION))
        except ValueError:
            return None
        deadline = doc.get("deadline")
        return AgentNotice(kind, self.name, float(deadline) if isinstance(deadline, int | float) else None)


class _Http:
    """The few HTTP calls metadata servers need, with a short timeout and errors made uniform."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def call(self, method: str, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if not url.startswith(("http://", "https://")):
            raise NoticeSourceError(f"not an http URL: {url}")
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as e:
            with e:
                return e.code, b""
        except (urllib.error.URLError, OSError) as e:
            raise NoticeSourceError(f"{method} {url}: {e}") from e


class ImdsNoticeSource:
    """AWS EC2 instance metadata (IMDSv2): the spot instance-action and rebalance recommendation.

    IMDSv2 wants a session token from `PUT /latest/api/token` on every read; tokens expire, so a 401
    fetches a new one and retries once. `instance-action` answers 404 until AWS decides to reclaim,
    then `{"action": "terminate", "time": "…Z"}` two minutes ahead.
    """

    TOKEN_TTL_S = 21600

    def __init__(self, base_url: str = DEFAULT_IMDS_URL, *, timeout: float = 1.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = f"imds:{self.base_url}"
        self._http = _Http(timeout)
        self._token: str | None = None

    def _fetch_token(self) -> str:
        status, body = self._http.call(
            "PUT",
            f"{self.base_url}/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": str(self.TOKEN_TTL_S)},
        )
        if status != 200 or not body:
            raise NoticeSourceError(f"{self.name}: token request answered {status}")
        return body.decode().strip()

    def _get(self, path: str) -> bytes | None:
        """The body of a metadata path, or None on 404."""
        for _ in range(2):
            if self._token is None:
                self._token = self._fetch_token()
            status, body = self._http.call("GET", f"{self.base_url}{path}", {"X-aws-ec2-metadata-token": self._token})
            if status == 401:
                self._token = None
                continue
            if status == 404:
                return None
            if status != 200:
                raise NoticeSourceError(f"{self.name}: GET {path} answered {status}")
            return body
        raise NoticeSourceError(f"{self.name}: GET {path} refused a fresh token")

    def node_rank(self) -> int:
        """A gang node's rank on EC2: its launch index in the one RunInstances that made the gang."""
        body = self._get("/latest/meta-data/ami-launch-index")
        if body is None or not body.strip().isdigit():
            raise NoticeSourceError(f"{self.name}: no ami-launch-index")
        return int(body)

    def poll(self) -> AgentNotice | None:
        action = self._get("/latest/meta-data/spot/instance-action")
        if action is not None:
            return AgentNotice(NoticeKind.INTERRUPTION, self.name, _instance_action_deadline(action))
        if self._get("/latest/meta-data/events/recommendations/rebalance") is not None:
            return AgentNotice(NoticeKind.REBALANCE, self.name)
        return None


def _instance_action_deadline(body: bytes) -> float | None:
    try:
        doc = json.loads(body)
        return parse_utc(str(doc["time"]))
    except (ValueError, KeyError, TypeError):
        return None  # a notice without a readable time is still a notice


def parse_utc(text: str) -> float:
    """'2026-03-01T12:00:00Z' -> Unix seconds (AWS writes UTC with a Z, which 3.11 parses)."""
    stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


class GceNoticeSource:
    """GCE metadata `instance/preempted`: the body turns from FALSE to TRUE when preemption starts."""

    def __init__(
        self,
        base_url: str = DEFAULT_GCE_METADATA_URL,
        *,
        timeout: float = 1.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = f"gce:{self.base_url}"
        self._http = _Http(timeout)
        self._now = now

    def node_rank(self) -> int:
        """A gang node's rank on GCE: bulkInsert names each VM `<gang>-r<rank>` (providers/gcp/gang.py)."""
        status, body = self._http.call(
            "GET", f"{self.base_url}/computeMetadata/v1/instance/name", {"Metadata-Flavor": "Google"}
        )
        name = body.decode(errors="replace").strip()
        _, sep, rank = name.rpartition("-r")
        if status != 200 or not sep or not rank.isdigit():
            raise NoticeSourceError(f"{self.name}: instance name {name!r} carries no gang rank")
        return int(rank)

    def poll(self) -> AgentNotice | None:
        status, body = self._http.call(
            "GET", f"{self.base_url}/computeMetadata/v1/instance/preempted", {"Metadata-Flavor": "Google"}
        )
        if status != 200:
            raise NoticeSourceError(f"{self.name}: instance/preempted answered {status}")
        if body.strip().upper() == b"TRUE":
            return AgentNotice(NoticeKind.INTERRUPTION, self.name, self._now() + GCE_PREEMPTION_NOTICE_S)
        return None
