"""The controller's half of the bucket transport: each tick, apply the workers' requests to the store.

A campaign whose workers cannot reach the controller (docs/campaigns.md, "Cloud instances") talks
through objects under its checkpoint URI (`items_uri`), laid out by
`orchestrator.job.worker.bucket_source`. Each tick, for every such campaign, `BucketPump.pump` lists the
pending requests (one LIST: applied requests are deleted, so the listing holds only what is new) and,
per worker in stamp order, checks the request's token, applies it to `ItemStore` exactly as the item
service would, writes the answer if the call has one, and deletes the request.

Exactly once, through restarts and a second controller:
- An answer is created with a conditional write. A request applied twice (a controller that stopped
  between applying and deleting it, two controllers listing the same request) finds its answer there
  and is only deleted; of two controllers that leased for the same request, the one whose answer
  lost gives its chunk back at once.
- `start`, `renew`, `release` and `done` are idempotent in the store; `done` moves in `res/<index>`,
  the item's one result in the bucket (its writer checked by its own token), so the store and the
  bucket agree on whose result counts.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from orchestrator.core.model import AttemptState, AttemptView
from orchestrator.job.checkpoint.conditional import ConditionalObjects, open_conditional, result_key
from orchestrator.job.checkpoint.storage import StorageError
from orchestrator.loop.snapshot import JobSnapshot
from orchestrator.store.item_service import lease_record
from orchestrator.store.item_source import ItemEndpoint, attempt_token, items_uri
from orchestrator.store.items import ItemStore, Lease

__all__ = ["BucketPump", "pump_buckets"]

log = logging.getLogger(__name__)

MAX_CHUNK = 1000
MAX_PER_TICK = 5000  # requests applied per campaign per tick: the rest wait for the next one
ANSWERED = frozenset({"lease", "fail"})  # the calls whose worker waits for an answer object
LEASE_SECONDS = (1.0, 3600.0)


class _Refused(ValueError):
    """A request that is not applied (a bad token, a malformed body): deleted, and answered if it asks."""


class BucketPump:
    """Applies the bucket requests of the campaigns whose workers run on `endpoint.bucket_providers`."""

    def __init__(self, items: ItemStore, endpoint: ItemEndpoint,
                 open_objects: Callable[[str], ConditionalObjects] = open_conditional) -> None:
        self.items, self.endpoint = items, endpoint
        self._open = open_objects

    def pump(self, snaps: Iterable[JobSnapshot], now: float) -> int:
        """Apply every pending request of these campaigns; the number applied. A bucket that cannot be
        read is logged and tried again next tick (the workers' calls wait, their leases do not lapse
        sooner than the lease time)."""
        applied = 0
        for snap in snaps:
            attempts = {a.id: a for a in snap.attempts if a.provider in self.endpoint.bucket_providers}
            if not attempts or snap.job.spec.array is None:
                continue
            uri = items_uri(snap.job.checkpoint_uri)
            try:
                objects = self._open(uri)
                applied += self.pump_job(objects, snap.job.id, attempts, snap.job.spec.retry.max_failures, now)
            except (StorageError, ValueError) as exc:  # ValueError: an unreadable listing
                log.warning("campaign %s: cannot read its items bucket this tick: %s", snap.job.id, exc)
        return applied

    def pump_job(self, objects: ConditionalObjects, job_id: str, attempts: Mapping[str, AttemptView],
                 max_failures: int, now: float) -> int:
        applied = 0
        for key in objects.list("req/")[:MAX_PER_TICK]:  # sorted: per worker, in the order its calls were made
            parts = key.split("/")
            if len(parts) != 3 or not parts[2].endswith(".json"):
                continue
            found = objects.read(key)
            if found is None:  # applied by another controller meanwhile
                continue
            attempt_id, stamp = parts[1], parts[2]
            answer_key = f"ans/{attempt_id}/{stamp}"
            try:
                request = self._request(found.data, job_id, attempt_id, attempts)
                # Only a call that takes an answer can be applied twice to effect (the others are
                # idempotent in the store): its answer, if there, says it was.
                answered = request.get("op") in ANSWERED and objects.read(answer_key) is not None
                answer = None if answered else self._apply(objects, job_id, attempts[attempt_id], request,
                                                           max_failures, now)
            except _Refused as exc:
                log.warning("campaign %s: a request of worker %s refused: %s", job_id, attempt_id, exc)
                answer = {"error": str(exc)}
            if answer is not None and not objects.create(answer_key, json.dumps(answer).encode()):
                self._lost_answer(job_id, attempt_id, answer, now)
            objects.delete_if(key, found.version)
            applied += 1
        return applied

    def _request(self, data: bytes, job_id: str, attempt_id: str,
                 attempts: Mapping[str, AttemptView]) -> dict[str, Any]:
        try:
            request = json.loads(data)
        except ValueError:
            raise _Refused("the request is not JSON") from None
        if not isinstance(request, dict):
            raise _Refused("the request is not a JSON object")
        if not self._token_ok(request.get("token"), job_id, attempt_id) or attempt_id not in attempts:
            raise _Refused(f"this token does not belong to worker {attempt_id} of job {job_id}")
        return request

    def _token_ok(self, token: Any, job_id: str, attempt_id: str) -> bool:
        return isinstance(token, str) and hmac.compare_digest(
            token.encode(), attempt_token(self.endpoint.secret, job_id, attempt_id).encode())

    def _apply(self, objects: ConditionalObjects, job_id: str, attempt: AttemptView, request: Mapping[str, Any],
               max_failures: int, now: float) -> dict[str, Any] | None:
        """One call, as the item service answers it; None for the calls that take no answer."""
        op, owner = request.get("op"), attempt.id
        if op == "lease":
            if attempt.state is AttemptState.ENDED:
                return {"leases": [], "ended": True}
            n = int(_number(request, "n", 1, MAX_CHUNK, 1))
            leases = self.items.lease(job_id, owner, n, now=now,
                                      lease_seconds=_number(request, "lease_seconds", *LEASE_SECONDS, 120.0),
                                      gpu_memory_gb=_optional(request, "gpu_memory_gb"))
            return {"leases": [lease_record(x) for x in leases]}
        if op == "start":
            self.items.start(job_id, owner, _lease(request), now=now)
        elif op == "renew":
            self.items.renew(job_id, owner, _ids(request), now=now,
                             lease_seconds=_number(request, "lease_seconds", *LEASE_SECONDS, 120.0))
        elif op == "release":
            self.items.release(job_id, owner, _ids(request), now=now)
        elif op == "done":
            self._move_result(objects, job_id, _lease(request).index, now)
        elif op == "fail":
            state = self.items.fail(job_id, owner, _lease(request), reason=str(request.get("reason") or "failed"),
                                    now=now, max_failures=max_failures, oom=request.get("oom") is True,
                                    gpu_memory_gb=_optional(request, "gpu_memory_gb"))
            return {"state": None if state is None else str(state)}
        else:
            raise _Refused(f"no operation {op!r}")
        return None

    def _move_result(self, objects: ConditionalObjects, job_id: str, index: int, now: float) -> None:
        """Move the item's one result (`res/<index>`) into the store, if its writer's token is its own."""
        key = result_key(index)
        found = objects.read(key)
        if found is None:
            return
        try:
            body = json.loads(found.data)
            writer, lease = str(body["attempt"]), _lease(body)
            ok = lease.index == index and self._token_ok(body.get("token"), job_id, writer)
        except (ValueError, KeyError, TypeError, _Refused):
            ok = False
        if not ok:  # forged or broken: gone, so that the worker holding the item's lease can commit it
            log.warning("campaign %s: item %d's result in the bucket is not a worker's own; deleted", job_id, index)
            objects.delete_if(key, found.version)
            return
        result = body.get("result")
        self.items.complete(job_id, writer, lease, now=now, result=result if isinstance(result, str) else None,
                            result_uri=body.get("result_uri") if isinstance(body.get("result_uri"), str) else None,
                            work_seconds=_optional(body, "work_seconds"))

    def _lost_answer(self, job_id: str, attempt_id: str, answer: Mapping[str, Any], now: float) -> None:
        """Another controller answered this request first: the chunk this one leased goes back."""
        ids = [int(x["item_id"]) for x in answer.get("leases", [])]
        if ids:
            self.items.release(job_id, attempt_id, ids, now=now)


def pump_buckets(endpoint: ItemEndpoint | None, items: ItemStore, snaps: Iterable[JobSnapshot], now: float) -> int:
    """The loop's one call (`Reconciler._campaigns`): nothing unless the endpoint names bucket providers."""
    if endpoint is None or not endpoint.bucket_providers:
        return 0
    return BucketPump(items, endpoint).pump(snaps, now)


def _number(body: Mapping[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _Refused(f"{key} must be a number from {lo:g} to {hi:g}")
    return float(value)


def _optional(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    return _number(body, key, 0.0, 1e9, 0.0)


def _ids(body: Mapping[str, Any]) -> list[int]:
    ids = body.get("item_ids")
    if not isinstance(ids, list) or len(ids) > 10_000 or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise _Refused("item_ids must be a list of at most 10000 integers")
    return ids


def _lease(body: Mapping[str, Any]) -> Lease:
    raw = body.get("lease")
    if not isinstance(raw, dict):
        raise _Refused("lease must be an object")
    item_id, index, lease_no, key = raw.get("item_id"), raw.get("index"), raw.get("lease_no"), raw.get("key")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (item_id, index, lease_no)) or not (
            key is None or isinstance(key, str)):
        raise _Refused("lease must hold item_id, index and lease_no as integers")
    return Lease(int(item_id), int(index), key, "", int(lease_no))  # type: ignore[arg-type]
