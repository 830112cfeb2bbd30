"""The GpuJob controller over the live backend: real store, real reconciler, kubernetes provider, API fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from orchestrator.core.model import Outcome, TaskState
from orchestrator.k8s.store_backend import StoreBackend
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests.kube_fake import KubeFake
from tests.test_k8s_controller import NS, Running, eventually, job, kubelet, pods, start_running, status
from vocab import SystemClock


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def live(kube: KubeFake, sqlite_store: Store, tmp_path: Path) -> Iterator[tuple[Running, Store]]:
    api = client.ApiClient(client.Configuration(host=kube.url))
    provider = KubernetesProvider(api, KubernetesSettings(namespace=NS, instance_types=("p3.2xlarge",),
                                                          snapshot_ttl_s=0.0))
    clock = SystemClock()
    reconciler = Reconciler(sqlite_store, {"kubernetes": provider}, clock, tick_seconds=0.05)
    backend = StoreBackend(sqlite_store, reconciler, checkpoint_root=(tmp_path / "ckpt").as_uri())
    running = Running(kube, "replica-a", backend=backend)  # type: ignore[arg-type]
    yield running, sqlite_store
    running.stop()


def test_a_gpujob_runs_through_the_store_and_reports_the_ledger_cost(
    kube: KubeFake, live: tuple[Running, Store]
) -> None:
    _, store = live
    start_running(kube)
    st = status(kube)
    (mirrored,) = store.jobs()
    assert st["jobId"] == mirrored.id and mirrored.external_ref
    assert st["market"] == "spot" and st["attempts"] == 1 and st["liveAttempts"] == 1
    # The same ledger as `orch status`: one minute minimum at the catalog's $0.918/h.
    assert st["costUsd"] == pytest.approx(0.918 / 60, abs=2e-3)
    assert store.tasks(mirrored.id)[0].state is TaskState.RUNNING


def test_a_disrupted_pod_is_a_preemption_in_the_store_and_a_new_attempt(
    kube: KubeFake, live: tuple[Running, Store]
) -> None:
    _, store = live
    first = start_running(kube)
    kubelet(kube, first, "Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                                "reason": "PreemptionByScheduler"}])
    eventually(lambda: status(kube).get("preemptions") == 1 and status(kube).get("attempts") == 2,
               what="a second attempt")
    (mirrored,) = store.jobs()
    outcomes = [a.outcome for a in store.attempts(mirrored.id) if not a.unbilled]
    assert outcomes[0] is Outcome.PREEMPTED and outcomes[1] is None
    eventually(lambda: [p["metadata"]["name"] for p in pods(kube)] not in ([], [first]), what="a new pod")


def test_deleting_the_gpujob_cancels_the_job_and_removes_its_pods(
    kube: KubeFake, live: tuple[Running, Store]
) -> None:
    _, store = live
    start_running(kube)
    client.CustomObjectsApi(client.ApiClient(client.Configuration(host=kube.url))).delete_namespaced_custom_object(
        "orch.dev", "v1alpha1", NS, "gpujobs", "fold")
    eventually(lambda: not job(kube), timeout=10, what="the GpuJob to go")
    assert pods(kube) == []
    (mirrored,) = store.jobs()
    assert store.tasks(mirrored.id)[0].state is TaskState.CANCELLED
