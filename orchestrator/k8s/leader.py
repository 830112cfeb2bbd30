"""Leader election through a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

Only the leader reconciles; the other replica waits warm. A candidate takes the Lease when it is
free (no holder) or when its record has not changed for `duration_s` as measured on the candidate's
own clock since it last saw the record change, so clock skew between nodes cannot shorten a lease.
Writes are `replace` with the read resourceVersion: of two candidates racing, the API server accepts
one and answers 409 to the other. A leader that cannot renew within `renew_deadline_s` stops
leading before the lease could be taken by someone else, because `renew_deadline_s < duration_s`.

Lease calls go through their own `ApiClient` with urllib3's retries off and a short timeout each:
the client's default retries (three, on every read timeout of a GET or PUT) would stretch one call
past the renew deadline, and a healthy leader behind one stalled connection would lose its lease.
A failed call is retried by the election loop itself, `retry_period_s` later, on a fresh connection.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.k8s.kube import KubeError, translate

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    name: str = "orch-controller"
    namespace: str = "default"
    duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.duration_s > self.renew_deadline_s > self.retry_period_s > 0:
            raise ValueError("need lease duration > renew deadline > retry period > 0")


def lease_api_client(api_client: ApiClient) -> ApiClient:
    """A client for lease calls only: the same server and credentials, no urllib3 retries."""
    from kubernetes import client

    configuration = copy.deepcopy(api_client.configuration)
    configuration.retries = False  # one try per call; the election loop is the retry
    return client.ApiClient(configuration)


def _micro_time(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api_client: ApiClient, settings: LeaseSettings, *, identity: str,
                 on_change: Callable[[bool], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        from kubernetes import client

        lease_client = lease_api_client(api_client)
        self.api = client.CoordinationV1Api(lease_client)
        self._sanitize = lease_client.sanitize_for_serialization
        self.settings = settings
        self.identity = identity
        self.on_change = on_change
        self.monotonic = monotonic
        self.lost = threading.Event()  # set when leadership, once held, is lost
        self._leader = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._last_attempt_ok = False
        self.holder = ""  # the holder seen on the last read

    @property
    def is_leader(self) -> bool:
        """Leader only while the last renewal is recent: a lease call that hangs (a half-open
        connection) must not leave this replica acting after a standby has taken over."""
        return self._leader and self.monotonic() - self._renewed_at <= self.settings.renew_deadline_s

    @property
    def healthy(self) -> bool:
        """The last attempt reached the API server (leader or not)."""
        return self._last_attempt_ok

    def _read(self) -> dict[str, Any] | None:
        s = self.settings
        try:
            with translate("read lease"):
                lease = self.api.read_namespaced_lease(s.name, s.namespace, _request_timeout=self._timeout())
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise
        return dict(self._sanitize(lease))  # type: ignore[no-untyped-call]

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the lease afterwards."""
        from kubernetes.client import V1Lease

        s = self.settings
        now_mono, now = self.monotonic(), dt.datetime.now(dt.UTC)
        lease = self._read()
        mine = {"holderIdentity": self.identity, "leaseDurationSeconds": s.duration_s,
                "renewTime": _micro_time(now)}
        if lease is None:
            body = {"metadata": {"name": s.name, "namespace": s.namespace},
                    "spec": {**mine, "acquireTime": _micro_time(now), "leaseTransitions": 0}}
            return self._write(lambda: self.api.create_namespaced_lease(s.namespace, V1Lease.model_validate(body),
                                                                        _request_timeout=self._timeout()))
        spec = dict(lease.get("spec") or {})
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, now_mono
        holder = spec.get("holderIdentity") or ""
        self.holder = holder
        duration = float(spec.get("leaseDurationSeconds") or s.duration_s)
        if holder and holder != self.identity and now_mono - self._observed_at < duration:
            return False
        if holder != self.identity:
            spec.update(acquireTime=_micro_time(now), leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1)
        spec.update(mine)
        lease["spec"] = spec
        return self._write(lambda: self.api.replace_namespaced_lease(s.name, s.namespace,
                                                                     V1Lease.model_validate(lease),
                                                                     _request_timeout=self._timeout()))

    def _timeout(self) -> float:
        """Seconds one lease call may take. A renewal is a read and a write, and a failed one is tried
        again `retry_period_s` later: each call gets half of what is left of the renew deadline after
        that wait, so a stalled call fails, and the next round renews, before the deadline passes."""
        s = self.settings
        return max(0.05, (s.renew_deadline_s - s.retry_period_s) / 2)

    def _write(self, call: Callable[[], Any]) -> bool:
        try:
            with translate("write lease"):
                call()
        except KubeError as exc:
            if exc.code == 409:
                return False  # another candidate wrote first
            raise
        return True

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        while not stop.is_set():
            try:
                held = self.try_acquire_or_renew()
                self._last_attempt_ok = True
            except Exception as exc:  # any failure is a failed renewal, never a dead elector thread
                log.warning("leader election: %s", exc)
                held, self._last_attempt_ok = False, False
            now = self.monotonic()
            if held:
                self._renewed_at = now
                self._set(True)
            elif self._leader and (self.holder not in ("", self.identity)
                                   or now - self._renewed_at > s.renew_deadline_s):
                log.error("lost the lease (holder %r, last renewed %.1f s ago); stepping down",
                          self.holder, now - self._renewed_at)
                self._set(False)
                self.lost.set()
            elif not self._leader:
                self._set(False)
            stop.wait(s.retry_period_s)

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            log.info("%s %s the leader lease %s/%s", self.identity, "holds" if leader else "does not hold",
                     self.settings.namespace, self.settings.name)
            self._leader = leader
            if self.on_change:
                self.on_change(leader)

    def release(self) -> None:
        """Give the lease up on a clean shutdown, so the standby takes over at once."""
        if not self._leader:
            return
        from kubernetes.client import V1Lease

        self._set(False)
        try:
            lease = self._read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            self._write(lambda: self.api.replace_namespaced_lease(
                self.settings.name, self.settings.namespace, V1Lease.model_validate(lease),
                _request_timeout=self._timeout()))
        except KubeError as exc:
            log.warning("could not release the lease: %s", exc)
