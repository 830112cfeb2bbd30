"""How a campaign worker reaches its items: `worker_environment` (what the loop puts in an attempt's
environment) and `SqlItemSource`, a worker's `ItemSource` (orchestrator/job/worker/sources.py) straight on
orch's database.

Two transports, chosen per provider:

- **The database** (ORCH_ITEMS_URL), for workers that can reach the database orch itself uses: the
  local provider's processes, on the same machine as the embedded SQLite file or the PostgreSQL
  server. The URL is never given to a pod or a cloud instance (it would carry the database's
  password into a pod spec or user data).
- **The item service** (ORCH_ITEMS_ENDPOINT + ORCH_ITEMS_TOKEN, `orchestrator.store.item_service`),
  for pods: a small HTTP endpoint the controller serves. Each attempt gets a token that lets it act
  as that one worker of that one job and nothing else: an HMAC of the job and attempt ids under the
  controller's secret (`attempt_token`), so nothing is stored per attempt and every replica that
  shares the secret checks it the same way.
- **The job's bucket** (ORCH_ITEMS_BUCKET + ORCH_ITEMS_TOKEN, `orchestrator.job.worker.bucket_source`),
  for cloud instances whose controller has no address they could reach: requests and results as
  objects under the job's checkpoint URI, written with conditional writes, applied to the store by
  the controller each tick (`orchestrator.loop.campaign_bucket`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from sqlalchemy import select

from orchestrator.job.item_records import Lease
from orchestrator.store.engine import make_engine
from orchestrator.store.items import ItemStore
from orchestrator.store.tables import JobRow

DEFAULT_MAX_FAILURES = 3
# Providers whose workers run beside the controller, where the database is already reachable. A cloud
# instance or a pod never gets the URL: it would carry the database's password into user data or a
# pod spec, and the database would have to accept connections from outside (docs/campaigns.md).
DIRECT_PROVIDERS = frozenset({"local"})


_TOKEN_CONTEXT = b"orch-items/v1"


def attempt_token(secret: bytes, job_id: str, attempt_id: str) -> str:
    """The bearer token of one attempt (one worker) of one job: HMAC-SHA256 under the controller's secret.

    Derived, not stored: no table holds tokens, a restarted or standby controller with the same secret
    accepts the tokens of pods already running, and a token names exactly one (job, attempt) pair.
    """
    msg = b"\0".join((_TOKEN_CONTEXT, job_id.encode(), attempt_id.encode()))
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ItemEndpoint:
    """Where workers on `providers` reach the item service, and the secret their tokens are signed with.

    `url` is the address as the workers see it (in a cluster, the chart's Service:
    `http://<release>-orch-items.<namespace>.svc:8081`), not the address the service listens on.
    """

    url: str
    secret: bytes = field(repr=False)
    providers: frozenset[str] = frozenset({"kubernetes"})
    # Providers whose workers reach the items through the job's bucket instead (no address to reach).
    bucket_providers: frozenset[str] = frozenset()
    # The PEM of the certificate an https:// `url` presents (public): workers verify the service with it.
    ca_pem: str | None = None

    def token(self, job_id: str, attempt_id: str) -> str:
        return attempt_token(self.secret, job_id, attempt_id)

    def transport(self, provider: str) -> str | None:
        """How a campaign's workers on `provider` reach their items: "service", "bucket", or None."""
        if provider in self.providers:
            return "service"
        return "bucket" if provider in self.bucket_providers else None


BUCKETS = ("s3://", "gs://")  # object stores with conditional writes a cloud worker can reach


def items_uri(checkpoint_uri: str) -> str:
    """Where a campaign's bucket transport keeps its objects: under the job's own checkpoint URI."""
    return f"{checkpoint_uri.rstrip('/')}/_orch/items"


def worker_environment(url: str, *, provider: str, gpu_memory_gb: float | None = None,
                       lease_seconds: float | None = None, endpoint: ItemEndpoint | None = None,
                       job_id: str = "", attempt_id: str = "", checkpoint_uri: str | None = None) -> dict[str, str]:
    """The ORCH_ITEMS_* variables a campaign worker on `provider` gets, beside ORCH_JOB_ID and
    ORCH_ATTEMPT_ID (which name the job and the lease owner): the database URL for local workers,
    the item service's address and this attempt's token for the providers `endpoint` serves, the
    job's items bucket (under `checkpoint_uri`, the job's) and the token for its bucket providers, and
    nothing for the others. The loop adds them to the attempt's LaunchRequest.env."""
    transport = endpoint.transport(provider) if endpoint is not None and job_id and attempt_id else None
    if provider in DIRECT_PROVIDERS:
        env = {"ORCH_ITEMS_URL": url}
    elif endpoint is not None and transport == "service":
        env = {"ORCH_ITEMS_ENDPOINT": endpoint.url, "ORCH_ITEMS_TOKEN": endpoint.token(job_id, attempt_id)}
        if endpoint.ca_pem:
            env["ORCH_ITEMS_CA"] = endpoint.ca_pem
    elif endpoint is not None and transport == "bucket" and checkpoint_uri and checkpoint_uri.startswith(BUCKETS):
        env = {"ORCH_ITEMS_BUCKET": items_uri(checkpoint_uri), "ORCH_ITEMS_TOKEN": endpoint.token(job_id, attempt_id)}
    else:
        return {}
    if gpu_memory_gb is not None:
        env["ORCH_GPU_MEMORY_GB"] = f"{gpu_memory_gb:g}"
    if lease_seconds is not None:
        env["ORCH_ITEMS_LEASE_SECONDS"] = f"{lease_seconds:g}"
    return env


class SqlItemSource:
    """One worker (`owner`, its attempt id) of one campaign (`job_id`), on the database at `url`."""

    def __init__(self, url: str, *, job_id: str, owner: str, gpu_memory_gb: float | None = None,
                 lease_seconds: float = 120.0, now: Callable[[], float] = time.time) -> None:
        self.engine = make_engine(url)
        self.store = ItemStore(self.engine)
        self.job_id, self.owner = job_id, owner
        self.gpu_memory_gb = gpu_memory_gb
        self.lease_seconds = lease_seconds
        self.now = now
        self.max_failures = self._max_failures()

    def _max_failures(self) -> int:
        """The job's `[retry] max_failures`, the same bound for an item as for a task."""
        with self.engine.connect() as conn:
            spec = conn.execute(select(JobRow.spec).where(JobRow.id == self.job_id)).scalar()
        if spec is None:
            raise LookupError(f"no job {self.job_id} in the items database")
        return int(spec.get("retry", {}).get("max_failures", DEFAULT_MAX_FAILURES))

    def lease(self, n: int) -> list[Lease]:
        return self.store.lease(self.job_id, self.owner, n, now=self.now(), lease_seconds=self.lease_seconds,
                                gpu_memory_gb=self.gpu_memory_gb)

    def start(self, lease: Lease) -> bool:
        return self.store.start(self.job_id, self.owner, lease, now=self.now())

    def renew(self, leases: Collection[Lease]) -> set[int]:
        return self.store.renew(self.job_id, self.owner, [x.item_id for x in leases], now=self.now(),
                                lease_seconds=self.lease_seconds)

    def complete(self, lease: Lease, *, result: str | None, result_uri: str | None, work_seconds: float) -> bool:
        return self.store.complete(self.job_id, self.owner, lease, now=self.now(), result=result,
                                   result_uri=result_uri, work_seconds=work_seconds)

    def fail(self, lease: Lease, *, reason: str, oom: bool) -> str | None:
        state = self.store.fail(self.job_id, self.owner, lease, reason=reason, now=self.now(),
                                max_failures=self.max_failures, oom=oom, gpu_memory_gb=self.gpu_memory_gb)
        return None if state is None else str(state)

    def release(self, leases: Collection[Lease]) -> None:
        self.store.release(self.job_id, self.owner, [x.item_id for x in leases], now=self.now())

    def close(self) -> None:
        self.engine.dispose()
