"""`HttpItemSource`: a worker's `ItemSource` over the controller's item service (pods, cloud workers).

Chosen by `orch.items()` when ORCH_ITEMS_ENDPOINT is set (with ORCH_ITEMS_TOKEN, ORCH_JOB_ID and
ORCH_ATTEMPT_ID). On httpx, with tenacity for the retries: a job image needs orch's base install only,
and no database driver. The protocol is `orchestrator.store.item_service`'s.

**Retries.** A dropped connection, a refused one, a timeout or a 502/503/504 (the controller
restarting, a failover between replicas, the database away a moment) is retried with exponential
backoff and jitter for up to `retry_for_s` (default 300 s, ORCH_ITEMS_RETRY_SECONDS), so lease
renewals and commits ride out a controller restart. Every call is safe to repeat: `done` answers
`true` to its own worker's repeated commit, `start`, `renew` and `release` are idempotent; a
repeated `lease` whose first answer was lost leaves that first chunk leased to nobody who works on
it until its lease lapses (one lease time), then any worker takes it. Other errors (401, 403, 400)
are raised as `ItemServiceError`: a worker with a wrong token must stop, not retry. A 410 on `lease`
(this attempt has ended) reads as "no item left": the worker finishes and exits.

Proxy variables (HTTP_PROXY, …) are not used: the endpoint is an address inside the cluster or the
VPC. An https:// endpoint is verified against `ca_pem` (ORCH_ITEMS_CA: the PEM text of the certificate
the service presents, or of the CA that signed it; public, so it may sit in an instance's user data)
when given, else against the system's trusted CAs.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_before_delay, wait_random_exponential

from orchestrator.job.item_records import Lease

__all__ = ["HttpItemSource", "ItemServiceError"]

log = logging.getLogger("orch.items")

RETRY_STATUSES = frozenset({502, 503, 504})
RELEASE_RETRY_S = 10.0
# The store's bound on one result (orchestrator.store.items.MAX_RESULT_BYTES, which this side may not
# import; a test holds the two equal): a larger one is refused here, before it is sent.
MAX_RESULT_CHARS = 1024 * 1024
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a chunk of payloads (each at most 1 MiB)


class ItemServiceError(RuntimeError):
    """The item service refused a call (or could not be reached for `retry_for_s`). `status` 0: no answer."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class HttpItemSource:
    """One worker (`owner`, its attempt id) of one campaign (`job_id`), through the item service at `endpoint`."""

    def __init__(self, endpoint: str, *, job_id: str, owner: str, token: str, gpu_memory_gb: float | None = None,
                 lease_seconds: float = 120.0, timeout_s: float = 30.0, retry_for_s: float = 300.0,
                 ca_pem: str | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"ORCH_ITEMS_ENDPOINT must be an http:// or https:// URL, got {endpoint!r}")
        quote = urllib.parse.quote
        self.base = f"{endpoint.rstrip('/')}/v1/jobs/{quote(job_id, safe='')}/workers/{quote(owner, safe='')}"
        self.job_id, self.owner = job_id, owner
        self._token = token
        self.gpu_memory_gb = gpu_memory_gb
        self.lease_seconds = lease_seconds
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self._sleep = sleep
        verify: ssl.SSLContext | bool = ssl.create_default_context(cadata=ca_pem) if ca_pem else True
        self._client = httpx.Client(timeout=timeout_s, trust_env=False, verify=verify,
                                    headers={"Authorization": f"Bearer {token}".strip()})

    def __repr__(self) -> str:  # never the token
        return f"HttpItemSource({self.base!r})"

    # --- the protocol --------------------------------------------------------------------------------

    def lease(self, n: int) -> list[Lease]:
        try:
            answer = self._call("lease", {"n": n, "lease_seconds": self.lease_seconds,
                                          "gpu_memory_gb": self.gpu_memory_gb})
        except ItemServiceError as exc:
            if exc.status == 410:  # this attempt has ended: take nothing more
                return []
            raise
        return [Lease(int(x["item_id"]), int(x["index"]), x.get("key"), str(x["payload"]), int(x["lease_no"]))
                for x in answer.get("leases", [])]

    def start(self, lease: Lease) -> bool:
        return bool(self._call("start", {"lease": _lease(lease)}).get("ok"))

    def renew(self, leases: Collection[Lease]) -> set[int]:
        if not leases:
            return set()
        answer = self._call("renew", {"item_ids": [x.item_id for x in leases], "lease_seconds": self.lease_seconds})
        return {int(i) for i in answer.get("held", [])}

    def complete(self, lease: Lease, *, result: str | None, result_uri: str | None, work_seconds: float) -> bool:
        if result is not None and len(result) > MAX_RESULT_CHARS:
            raise ValueError(f"a result of {len(result):,} characters is over the {MAX_RESULT_CHARS:,} allowed in "
                             "the store; write it to storage and commit its URI instead")
        return bool(self._call("done", {"lease": _lease(lease), "result": result, "result_uri": result_uri,
                                        "work_seconds": max(0.0, work_seconds)}).get("committed"))

    def fail(self, lease: Lease, *, reason: str, oom: bool) -> str | None:
        state = self._call("fail", {"lease": _lease(lease), "reason": reason[:4096], "oom": oom,
                                    "gpu_memory_gb": self.gpu_memory_gb}).get("state")
        return None if state is None else str(state)

    def release(self, leases: Collection[Lease]) -> None:
        """Best effort, and quick: it runs as the worker stops (often on a notice, within a grace
        period), and items not given back return anyway when their leases lapse."""
        if not leases:
            return
        try:
            self._call("release", {"item_ids": [x.item_id for x in leases]},
                       retry_for_s=min(self.retry_for_s, RELEASE_RETRY_S))
        except ItemServiceError as exc:
            if exc.status not in RETRY_STATUSES and exc.status != 0:
                raise
            log.warning("could not give back %d item(s); they return when their leases lapse: %s", len(leases), exc)

    def close(self) -> None:
        self._client.close()

    # --- the transport -------------------------------------------------------------------------------

    def _call(self, op: str, body: Mapping[str, Any], *, retry_for_s: float | None = None) -> dict[str, Any]:
        data = json.dumps(body, allow_nan=False).encode()
        retry_for_s = self.retry_for_s if retry_for_s is None else retry_for_s
        retrying = Retrying(retry=retry_if_exception(_retried), stop=stop_before_delay(retry_for_s),
                            wait=wait_random_exponential(multiplier=0.2, max=5.0), sleep=self._sleep, reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(op, data)
        except ItemServiceError as exc:
            if not _retried(exc):
                raise
            raise ItemServiceError(f"{op}: gave up after {retry_for_s:g} s: {exc}", status=exc.status) from exc
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    def _once(self, op: str, data: bytes) -> dict[str, Any]:
        try:
            with self._client.stream("POST", f"{self.base}/{op}", content=data,
                                     headers={"Content-Type": "application/json"}) as resp:
                raw = bytearray()
                for chunk in resp.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        raise ItemServiceError(f"{op}: the answer is larger than {MAX_ANSWER_BYTES:,} bytes",
                                               status=500)
        except httpx.LocalProtocolError as exc:  # a request this side cannot send (a bad header): not retried
            raise ItemServiceError(f"{op}: cannot send the request: {exc}", status=400) from None
        except httpx.TransportError as exc:  # no answer (refused, dropped, timed out): retried
            raise ItemServiceError(f"{op}: cannot reach the item service: {exc or type(exc).__name__}",
                                   status=0) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if resp.status_code != 200:
            text = answer.get("error") if isinstance(answer, dict) else None
            raise ItemServiceError(f"{op}: {resp.status_code} {text or resp.reason_phrase}", status=resp.status_code)
        if not isinstance(answer, dict):
            raise ItemServiceError(f"{op}: the answer is not a JSON object", status=502)
        return answer


def _retried(exc: BaseException) -> bool:
    """No answer, or a 502/503/504: the controller restarting or its store away a moment."""
    return isinstance(exc, ItemServiceError) and (exc.status == 0 or exc.status in RETRY_STATUSES)


def _lease(lease: Lease) -> dict[str, Any]:
    return {"item_id": lease.item_id, "index": lease.index, "key": lease.key, "lease_no": lease.lease_no}
