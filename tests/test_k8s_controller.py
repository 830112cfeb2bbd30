"""The GpuJob controller end to end: real client, API-server fake, the live store backend (SQLite store and
the real reconciler), kubernetes provider."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from orchestrator.k8s.kube import FINALIZER
from orchestrator.k8s.leader import LeaseSettings
from orchestrator.k8s.run import ControllerProcess, ControllerSettings
from orchestrator.k8s.store_backend import StoreBackend
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import upgrade
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests.http_fake import ManualMonotonic
from tests.kube_fake import KubeFake, now_iso
from vocab import SystemClock

NS = "lab"
CRD = "orch.dev/v1alpha1"
SPEC = {"command": ["python", "fold.py"], "schedule": {"estimated_hours": 2},
        "placement": {"providers": ["kubernetes"]}}


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Running:
    """A ControllerProcess on a thread, as `run_controller` runs it on the main one."""

    def __init__(self, kube: KubeFake, identity: str, backend: StoreBackend | None = None,
                 store_dir: Path | None = None, monotonic: Callable[[], float] | None = None) -> None:
        """`monotonic`: the clock this replica's elector measures lease expiry on (real time if None)."""
        api = client.ApiClient(client.Configuration(host=kube.url))
        provider = KubernetesProvider(api, KubernetesSettings(namespace=NS, instance_types=("p3.2xlarge",),
                                                              snapshot_ttl_s=0.0))
        if backend is None:
            assert store_dir is not None, "a controller needs a store"
            engine = make_engine(f"sqlite:///{store_dir / 'orch.db'}")
            upgrade(engine)
            clock = SystemClock()
            reconciler = Reconciler(Store(engine), {"kubernetes": provider}, clock, tick_seconds=0.05)
            backend = StoreBackend(reconciler.store, reconciler, checkpoint_root=(store_dir / "ckpt").as_uri())
        self.backend = backend
        settings = ControllerSettings(
            tick_s=0.05, watch_timeout_s=2, relist_s=60.0, health_host="127.0.0.1", health_port=0,
            lease=LeaseSettings(name="orch", namespace=NS, duration_s=1, renew_deadline_s=0.6,
                                retry_period_s=0.05))
        self.proc = ControllerProcess(self.backend, namespace=NS, api_client=api, identity=identity,
                                      settings=settings)
        if monotonic is not None:  # before start(): the elector thread reads it from its first round
            self.proc.elector.monotonic = monotonic
        self.code: int | None = None
        self.proc.start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.proc.run()

    def crash(self) -> None:
        """Stop without releasing the Lease, as a killed process would."""
        self.proc.stop.set()
        self.proc.wake.set()
        self.thread.join(5)
        self.proc.health.stop()

    def stop(self) -> None:
        self.proc.shutdown()
        self.thread.join(5)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.proc.health.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def ctl(kube: KubeFake, tmp_path: Path) -> Iterator[Running]:
    running = Running(kube, "replica-a", store_dir=tmp_path)
    yield running
    running.stop()


def create(kube: KubeFake, name: str = "fold", spec: dict[str, Any] | None = None) -> None:
    kube.put(CRD, "gpujobs", {"apiVersion": CRD, "kind": "GpuJob",
                              "metadata": {"name": name, "namespace": NS}, "spec": spec or SPEC})


def job(kube: KubeFake, name: str = "fold") -> dict[str, Any]:
    return kube.find(CRD, "gpujobs", NS, name) or {}


def status(kube: KubeFake, name: str = "fold") -> dict[str, Any]:
    return dict(job(kube, name).get("status") or {})


def pods(kube: KubeFake) -> list[dict[str, Any]]:
    return kube.objects_of("v1", "pods", NS)


def events(kube: KubeFake) -> list[str]:
    return [e["reason"] for e in kube.objects_of("v1", "events", NS)]


def kubelet(kube: KubeFake, pod: str, phase: str, **status: Any) -> None:
    """Bind the pod to n1 and report `phase`; a Running pod's container runs, as a real kubelet reports."""
    if phase == "Running":
        status.setdefault("containerStatuses", [{"name": "job", "image": "img", "imageID": "", "ready": True,
                                                 "restartCount": 0, "state": {"running": {"startedAt": now_iso()}}}])
    kube.update("v1", "pods", NS, pod, {"spec": {"nodeName": "n1"}, "status": {"phase": phase, **status}})


def start_running(kube: KubeFake) -> str:
    kube.put("v1", "nodes", {"metadata": {"name": "n1", "labels": {
        "node.kubernetes.io/instance-type": "p3.2xlarge", "topology.kubernetes.io/zone": "z1"}}})
    create(kube)
    (pod,) = eventually(lambda: pods(kube), what="the attempt's pod")
    kubelet(kube, pod["metadata"]["name"], "Running")
    eventually(lambda: status(kube).get("phase") == "Running", what="phase Running")
    return str(pod["metadata"]["name"])


def test_create_launches_a_pod_and_reports_cost(kube: KubeFake, ctl: Running) -> None:
    start_running(kube)
    obj, st = job(kube), status(kube)
    assert FINALIZER in obj["metadata"]["finalizers"]
    assert st["market"] == "spot" and st["progress"] == "0.0%"
    # p3.2xlarge spot is $0.918/h in the catalog; one minute minimum billing: $0.0153.
    assert st["cost"] == "$0.02" and st["costUsd"] == pytest.approx(0.918 / 60, abs=1e-3)
    # 2 h of work and one restart (0.1 h) at $0.918/h, plus what it spent.
    assert st["projected"].startswith("$1.9") and st["attempts"] == 1 and st["jobId"]
    assert st["observedGeneration"] == 1
    assert eventually(lambda: {"Submitted", "Launched"} <= set(events(kube)), what="events")
    pod = pods(kube)[0]
    assert pod["metadata"]["labels"]["orch.dev/job"] == st["jobId"]
    text = eventually(lambda: (m := ctl.get("/metrics"))[0] == 200 and 'orch_gpujobs{phase="Running"} 1' in m[1]
                      and m[1], what="metrics of the running job")
    assert 'orch_cost_usd{market="spot"}' in text and "orch_reconcile_duration_seconds_count" in text
    assert ctl.get("/healthz")[0] == 200 and ctl.get("/readyz") == (200, "leader, cache synced\n")


def test_pod_disruption_starts_a_new_attempt(kube: KubeFake, ctl: Running) -> None:
    first = start_running(kube)
    kubelet(kube, first, "Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                                "reason": "PreemptionByScheduler"}])
    eventually(lambda: status(kube).get("preemptions") == 1 and status(kube).get("attempts") == 2,
               what="a second attempt")
    names = [p["metadata"]["name"] for p in eventually(lambda: len(pods(kube)) == 1 and pods(kube))]
    assert names != [first], "the preempted pod is released and a new one made"
    eventually(lambda: events(kube).count("Launched") == 2 and "Preempted" in events(kube), what="events")
    assert ctl.proc.metrics.value("orch_preemptions_total") == 1


def test_delete_stops_pods_before_the_resource_goes(kube: KubeFake, ctl: Running) -> None:
    start_running(kube)
    client.CustomObjectsApi(client.ApiClient(client.Configuration(host=kube.url))).delete_namespaced_custom_object(
        "orch.dev", "v1alpha1", NS, "gpujobs", "fold")
    eventually(lambda: not job(kube), what="the GpuJob to go")
    assert pods(kube) == []
    order = [(kind, obj["kind"]) for _, _, kind, obj in kube.history if kind == "DELETED"]
    assert order.index(("DELETED", "Pod")) < order.index(("DELETED", "GpuJob"))
    eventually(lambda: "CleanedUp" in events(kube), what="the CleanedUp event")


def test_watch_expiry_relists_and_sees_new_jobs(kube: KubeFake, ctl: Running) -> None:
    eventually(lambda: ctl.proc.informer.synced.is_set(), what="the first list")
    lists = ctl.proc.informer.lists
    kube.expire_watches()
    create(kube, "after-gone")
    eventually(lambda: status(kube, "after-gone").get("jobId"), what="the new job to be submitted")
    assert ctl.proc.informer.lists > lists
    assert ctl.proc.metrics.value("orch_watch_restarts_total", reason="gone") >= 1


def test_an_invalid_spec_is_reported_not_submitted(kube: KubeFake, ctl: Running) -> None:
    create(kube, "bad", {"command": ["x"], "schedule": {"estimated_hours": 1, "market": "cheap"}})
    st = eventually(lambda: status(kube, "bad").get("phase") == "Invalid" and status(kube, "bad"))
    assert "schedule.market" in st["message"] and "GpuJob lab/bad" in st["message"]
    assert "InvalidSpec" in eventually(lambda: events(kube))
    assert ctl.backend.store.jobs() == []


def lease_rounds(kube: KubeFake, more: int) -> None:
    """Wait until `more` further lease reads have reached the API server (every candidate reads once
    a round): what a standby decides, it has then decided several times over."""
    def reads() -> int:
        return sum(1 for method, _ in kube.lease_requests() if method == "GET")

    target = reads() + more
    eventually(lambda: reads() >= target, what=f"{more} more lease rounds")


def test_two_controllers_one_leader_and_takeover(kube: KubeFake, tmp_path: Path) -> None:
    a = Running(kube, "replica-a", store_dir=tmp_path)
    eventually(lambda: a.proc.elector.is_leader, what="a first leader")
    b_clock = ManualMonotonic()  # b's lease expiry moves only when the test says
    b = Running(kube, "replica-b", backend=a.backend, monotonic=b_clock)
    try:
        create(kube)
        eventually(lambda: pods(kube), what="a pod")
        eventually(lambda: b.proc.elector.holder == "replica-a", what="b to see a's lease")
        lease_rounds(kube, 6)
        assert a.proc.elector.is_leader and not b.proc.elector.is_leader
        assert b.proc.ticks == 0 and b.get("/readyz") == (200, "standby\n")
        a.crash()  # no release: b must wait for the lease to expire
        lease_rounds(kube, 6)  # b has read a's last renewal, and reads it unchanged since
        assert not b.proc.elector.is_leader, "b took a lease that had not expired on its clock"
        b_clock.advance(1.0)  # the lease's duration_s, on b's clock, since b saw it last change
        eventually(lambda: b.proc.elector.is_leader, what="takeover")
        eventually(lambda: b.proc.ticks > 0, what="the new leader to reconcile")
        lease = kube.find("coordination.k8s.io/v1", "leases", NS, "orch")
        assert lease is not None and lease["spec"]["holderIdentity"] == "replica-b"
        assert lease["spec"]["leaseTransitions"] == 1
        assert len(pods(kube)) == 1, "no duplicate attempt after failover"
    finally:
        b.stop()


def test_graceful_shutdown_hands_over_at_once(kube: KubeFake, tmp_path: Path) -> None:
    a = Running(kube, "replica-a", store_dir=tmp_path)
    eventually(lambda: a.proc.elector.is_leader)
    b = Running(kube, "replica-b", backend=a.backend, monotonic=ManualMonotonic())  # b's clock stands still
    try:
        a.stop()
        assert a.code == 0
        # No lease could expire on b's clock: b takes over because a released it.
        eventually(lambda: b.proc.elector.is_leader, what="takeover before expiry")
    finally:
        b.stop()


def test_a_leader_that_loses_the_lease_exits(kube: KubeFake, tmp_path: Path) -> None:
    a = Running(kube, "replica-a", store_dir=tmp_path)
    try:
        eventually(lambda: a.proc.elector.is_leader)
        kube.fail("PUT", "/leases/orch", 500, times=1000)
        kube.fail("GET", "/leases/orch", 500, times=1000)
        a.thread.join(5)
        assert a.code == 1 and a.proc.metrics.value("orch_leader") == 0
    finally:
        a.proc.shutdown()
