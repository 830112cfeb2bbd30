"""`BucketItemSource`: a worker's `ItemSource` through objects in the job's own bucket.

For a campaign whose controller has no address its workers could reach (a laptop, a CI runner): the
worker and the controller share only the job's bucket (ORCH_ITEMS_BUCKET, under the job's checkpoint
URI), which the instance's own role may already write. Every object is written with a conditional
write (`orchestrator.job.checkpoint.conditional`: S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`), so
nothing is ever overwritten and every race has one winner:

    req/<attempt>/<stamp>.json   a call of this worker, carrying its token; the controller applies it
                                 to the store on its next tick, in stamp order, then deletes it
    ans/<attempt>/<stamp>.json   the controller's answer to a `lease` or `fail` (written once)
    res/<index>.json             an item's one result: the first worker to create it has committed

- **Commit: exactly once, at once.** `complete` creates `res/<index>`; the store's rule (first writer
  wins, a lapsed worker's result counts if none is in) is the bucket's: the create succeeds for one
  worker only, and the others' `complete` answers False. A retried create whose first answer was lost
  finds its own result there and answers True. A `done` request then tells the controller to move
  the result into the store; a worker that died between the two leaves the result for the next
  worker of that item, whose create fails and whose `done` request moves the first one in.
- **Lease: one tick at most.** `lease` and `fail` wait for the controller's answer (it answers every
  request each tick). `start`, `renew` and `release` are sent and not waited for: a lost lease costs
  at most a duplicate piece of work, never a duplicate result (the commit above decides).
- **Tokens.** Every request and result carries the attempt's token (ORCH_ITEMS_TOKEN); the controller
  applies a request only to its own attempt's leases and moves in only results whose token is their
  writer's (a forged result is deleted, and its item is done again by a worker that holds its lease).
- **Retries.** A write or read that fails (throttling, a dropped connection) is retried with backoff
  for `retry_for_s`; a repeated create of the same request finds it there and counts as written.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_before_delay, wait_random_exponential

from orchestrator.job.checkpoint.conditional import ConditionalObjects, open_conditional, result_key
from orchestrator.job.checkpoint.storage import StorageError
from orchestrator.job.item_records import Lease

__all__ = ["BucketItemSource"]

log = logging.getLogger("orch.items")

MAX_RESULT_CHARS = 1024 * 1024  # the store's bound on one result (held equal by a test)
POLL_S = (0.2, 2.0)  # how often an answer is looked for: from the first to the longest wait


class BucketItemSource:
    """One worker (`owner`, its attempt id) of one campaign, through the objects under `uri`."""

    def __init__(self, uri: str, *, job_id: str, owner: str, token: str, gpu_memory_gb: float | None = None,
                 lease_seconds: float = 120.0, retry_for_s: float = 300.0, answer_wait_s: float = 600.0,
                 objects: ConditionalObjects | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.uri, self.job_id, self.owner = uri, job_id, owner
        self._token = token
        self.gpu_memory_gb = gpu_memory_gb
        self.lease_seconds = lease_seconds
        self.retry_for_s = retry_for_s
        self.answer_wait_s = answer_wait_s
        self._objects = objects if objects is not None else open_conditional(uri)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last = 0

    def __repr__(self) -> str:  # never the token
        return f"BucketItemSource({self.uri!r}, owner={self.owner!r})"

    # --- the protocol --------------------------------------------------------------------------------

    def lease(self, n: int) -> list[Lease]:
        answer = self._ask("lease", {"n": n, "lease_seconds": self.lease_seconds,
                                     "gpu_memory_gb": self.gpu_memory_gb})
        return [Lease(int(x["item_id"]), int(x["index"]), x.get("key"), str(x["payload"]), int(x["lease_no"]))
                for x in answer.get("leases", [])]

    def start(self, lease: Lease) -> bool:
        self._send("start", {"lease": _lease(lease)})
        return True

    def renew(self, leases: Collection[Lease]) -> set[int]:
        if leases:
            self._send("renew", {"item_ids": [x.item_id for x in leases], "lease_seconds": self.lease_seconds})
        return {x.item_id for x in leases}

    def complete(self, lease: Lease, *, result: str | None, result_uri: str | None, work_seconds: float) -> bool:
        if result is not None and len(result) > MAX_RESULT_CHARS:
            raise ValueError(f"a result of {len(result):,} characters is over the {MAX_RESULT_CHARS:,} allowed in "
                             "the store; write it to storage and commit its URI instead")
        body = {"attempt": self.owner, "token": self._token, "lease": _lease(lease), "result": result,
                "result_uri": result_uri, "work_seconds": max(0.0, work_seconds)}
        key = result_key(lease.index)
        committed = bool(self._retry(self._objects.create, key, json.dumps(body).encode()))
        if not committed:  # someone's result is in: this worker's own, if a retried create lost its answer
            first = self._retry(self._objects.read, key)
            committed = first is not None and _own(first.data, self.owner, self._token)
        self._send("done", {"lease": _lease(lease)})  # the controller moves the result into the store
        return committed

    def fail(self, lease: Lease, *, reason: str, oom: bool) -> str | None:
        state = self._ask("fail", {"lease": _lease(lease), "reason": reason[:4096], "oom": oom,
                                   "gpu_memory_gb": self.gpu_memory_gb}).get("state")
        return None if state is None else str(state)

    def release(self, leases: Collection[Lease]) -> None:
        if not leases:
            return
        try:
            self._send("release", {"item_ids": [x.item_id for x in leases]})
        except StorageError as exc:  # as the worker stops: the leases lapse instead
            log.warning("could not give back %d item(s); they return when their leases lapse: %s", len(leases), exc)

    def close(self) -> None:
        pass

    # --- the transport -------------------------------------------------------------------------------

    def _stamp(self) -> str:
        """A request's name: later than this worker's previous one (the controller applies them in
        name order), and unique across restarts of the worker process (a random tail)."""
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return f"{self._last:020d}-{secrets.token_hex(4)}"

    def _send(self, op: str, body: Mapping[str, Any]) -> str:
        stamp = self._stamp()
        data = json.dumps({"op": op, "token": self._token, **body}, allow_nan=False).encode()
        self._retry(self._objects.create, f"req/{self.owner}/{stamp}.json", data)  # False: a retry's, already in
        return stamp

    def _ask(self, op: str, body: Mapping[str, Any]) -> dict[str, Any]:
        stamp = self._send(op, body)
        key = f"ans/{self.owner}/{stamp}.json"
        deadline, wait = time.monotonic() + self.answer_wait_s, POLL_S[0]
        while True:
            found = self._retry(self._objects.read, key)
            if found is not None:
                answer = json.loads(found.data)
                if not isinstance(answer, dict):
                    raise StorageError(f"{self.uri}: the answer {key} is not a JSON object")
                if answer.get("error"):
                    raise StorageError(f"{op}: the controller refused it: {answer['error']}")
                return answer
            if time.monotonic() + wait > deadline:
                raise StorageError(f"{op}: no answer from the controller in {self.answer_wait_s:g} s ({self.uri})")
            self._sleep(wait)
            wait = min(wait * 1.5, POLL_S[1])

    def _retry(self, call: Callable[..., Any], *args: Any) -> Any:
        retrying = Retrying(retry=retry_if_exception_type(StorageError), stop=stop_before_delay(self.retry_for_s),
                            wait=wait_random_exponential(multiplier=0.2, max=5.0), sleep=self._sleep, reraise=True)
        return retrying(call, *args)


def _lease(lease: Lease) -> dict[str, Any]:
    return {"item_id": lease.item_id, "index": lease.index, "key": lease.key, "lease_no": lease.lease_no}


def _own(data: bytes, owner: str, token: str) -> bool:
    """Whether a result object is this worker's own: its name and its token (a result another holder of
    the bucket wrote in this worker's name is not)."""
    try:
        body = json.loads(data)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("attempt") == owner and isinstance(body.get("token"), str) and \
        hmac.compare_digest(body["token"].encode(), token.encode())
