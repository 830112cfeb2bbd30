"""`orch controller --kubernetes`: leader election, the watch, the reconcile loop, probes, shutdown.

Threads, each with one job: the elector renews the Lease; the informer keeps the GpuJob cache; the
control loop (the caller's thread) ticks the backend and syncs every GpuJob while this replica leads;
the health server answers probes and scrapes. SIGTERM (or `stop`) ends the loop, releases the Lease
so the standby takes over at once, and returns 0. Losing the Lease while leading returns 1: the
process exits and Kubernetes restarts it as a fresh candidate, as client-go controllers do, rather
than trusting a cache and backend state built while it was leader.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import TYPE_CHECKING

from orchestrator.k8s.backend import JobBackend
from orchestrator.k8s.controller import GpuJobSync
from orchestrator.k8s.informer import Informer
from orchestrator.k8s.kube import GpuJobClient, default_api_client
from orchestrator.k8s.leader import LeaderElector, LeaseSettings
from orchestrator.k8s.metrics import HealthServer, Metrics

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from orchestrator.store.item_service import ItemService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    tick_s: float = 5.0  # reconcile period; a GpuJob change wakes the loop early
    watch_timeout_s: int = 300
    relist_s: float = 600.0
    lease: LeaseSettings = field(default_factory=LeaseSettings)
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    stale_after_s: float = 60.0  # /healthz fails when the control loop has not run for this long


def default_identity() -> str:
    """The pod name (HOSTNAME in a pod) and pid: unique per replica and readable in the Lease."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


class ControllerProcess:
    """Everything `run_controller` starts, exposed so tests can run two in one process."""

    def __init__(self, backend: JobBackend, *, namespace: str | None, api_client: ApiClient,
                 identity: str, settings: ControllerSettings,
                 policies: Callable[[str], bool] | None = None, item_service: ItemService | None = None) -> None:
        """`item_service`: served by every replica, leader or not (the items are in the shared store), so
        campaign pods keep working through a failover; without one, campaign GpuJobs are refused."""
        self.backend = backend
        self.item_service = item_service
        self.settings = settings
        self.identity = identity
        self.metrics = Metrics()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.client = GpuJobClient(api_client, namespace, component="orch-controller", identity=identity)
        self.informer = Informer(self.client, on_change=self.wake.set, metrics=self.metrics,
                                 watch_timeout_s=settings.watch_timeout_s, relist_s=settings.relist_s)
        self.elector = LeaderElector(api_client, settings.lease, identity=identity,
                                     on_change=lambda lead: self.metrics.set("orch_leader", float(lead)))
        self.sync = GpuJobSync(self.client, backend, self.metrics, policies, remember=self.informer.remember,
                               campaigns=item_service is not None)
        self.health = HealthServer(host=settings.health_host, port=settings.health_port, metrics=self.metrics,
                                   healthz=self._healthz, readyz=self._readyz)
        self.ticks = 0
        self._last_loop = time.monotonic()
        self._informer_thread: threading.Thread | None = None

    def _healthz(self) -> tuple[bool, str]:
        idle = time.monotonic() - self._last_loop
        return idle < self.settings.stale_after_s, f"control loop ran {idle:.1f} s ago"

    def _readyz(self) -> tuple[bool, str]:
        """Ready: a standby that reaches the API server, or a leader whose cache is synced."""
        if self.elector.is_leader:
            ok = self.informer.synced.is_set()
            return ok, "leader, cache synced" if ok else "leader, cache not synced yet"
        return self.elector.healthy, "standby" if self.elector.healthy else "cannot reach the API server"

    def start(self) -> None:
        self.health.start()
        if self.item_service is not None:
            self.item_service.start()
        threading.Thread(target=self.elector.run, args=(self.stop,), name="orch-elector", daemon=True).start()

    def run(self) -> int:
        """The control loop; returns the process exit code."""
        while not self.stop.is_set():
            self._last_loop = time.monotonic()
            if self.elector.lost.is_set():
                log.error("leadership lost; exiting so the pod restarts as a candidate")
                return 1
            if not self.elector.is_leader:
                self.stop.wait(min(self.settings.lease.retry_period_s, self.settings.tick_s))
                continue
            self._ensure_informer()
            if self.informer.synced.is_set():
                self.tick()
            self.wake.wait(self.settings.tick_s)
            self.wake.clear()
        return 0

    def tick(self) -> None:
        started = time.monotonic()
        try:
            self.backend.reconcile_once()
        except Exception:  # the next tick retries; the loop must survive a bad tick
            log.exception("backend reconcile failed")
        self.sync.sync_all(self.informer.snapshot())
        self.metrics.observe("orch_reconcile_duration_seconds", time.monotonic() - started)
        self.ticks += 1

    def _ensure_informer(self) -> None:
        if self._informer_thread is None:
            self._informer_thread = threading.Thread(target=self.informer.run, args=(self.stop,),
                                                     name="orch-informer", daemon=True)
            self._informer_thread.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
        self.elector.release()
        self.health.stop()
        if self.item_service is not None:
            self.item_service.stop()


def run_controller(
    backend: JobBackend,
    *,
    namespace: str | None,
    api_client: ApiClient | None = None,
    identity: str | None = None,
    settings: ControllerSettings | None = None,
    policies: Callable[[str], bool] | None = None,
    install_signal_handlers: bool = True,
    item_service: ItemService | None = None,
) -> int:
    """Run the GpuJob controller until SIGTERM/SIGINT (0) or a lost leadership (1). Blocks.

    `namespace` None watches GpuJobs in every namespace (needs the ClusterRole). The Lease lives in
    `settings.lease.namespace`, by default the pod's own namespace (POD_NAMESPACE).
    """
    settings = settings or ControllerSettings()
    if settings.lease.namespace == "default" and os.environ.get("POD_NAMESPACE"):
        settings = replace(settings, lease=replace(settings.lease, namespace=os.environ["POD_NAMESPACE"]))
    proc = ControllerProcess(backend, namespace=namespace, api_client=api_client or default_api_client(),
                             identity=identity or default_identity(), settings=settings, policies=policies,
                             item_service=item_service)
    if install_signal_handlers:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: shutting down", signum)
            proc.stop.set()
            proc.wake.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    proc.start()
    try:
        return proc.run()
    finally:
        proc.shutdown()
