"""A pod that never started its job (no node, an image never pulled, refused by the kubelet) is not running
and ends as failed-to-start, which the loop never bills; a GpuJob waiting for capacity shows `Launching`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from orchestrator.core.cost import attempt_cost, attempt_seconds
from orchestrator.core.model import AttemptState, Outcome, TaskState
from orchestrator.job_files import load_spec
from orchestrator.k8s.store_backend import StoreBackend
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests.http_fake import ManualClock
from tests.kube_fake import KubeFake
from tests.test_k8s_controller import NS as CTL_NS
from tests.test_k8s_controller import Running, create, eventually, kubelet, pods, status
from tests.test_k8s_provider import NS, add_node, make_provider, request, set_pod
from vocab import EndReason, InstanceState, SystemClock


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


def seen(prov: KubernetesProvider, name: str) -> tuple[InstanceState, EndReason | None, int | None]:
    inst = next(i for i in prov.instances() if i.instance_id == name)
    return inst.state, inst.reason, inst.exit_code


def test_a_pod_without_a_node_is_pending_not_running(kube: KubeFake) -> None:
    prov = make_provider(kube)
    add_node(kube, "n1", "p3.2xlarge")
    name = prov.launch(request()).instance_id
    assert seen(prov, name)[0] is InstanceState.PENDING and prov.started(name) is False
    set_pod(kube, name, {"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                                    "reason": "Unschedulable"}]}})
    assert seen(prov, name)[0] is InstanceState.PENDING
    # Bound, image still pulling: holds no running job yet.
    set_pod(kube, name, {"spec": {"nodeName": "n1"}, "status": {"containerStatuses": [
        {"name": "job", "state": {"waiting": {"reason": "ContainerCreating"}}}]}})
    assert seen(prov, name)[0] is InstanceState.PENDING and prov.started(name) is False
    set_pod(kube, name, {"status": {"phase": "Running"}})
    assert seen(prov, name)[0] is InstanceState.RUNNING and prov.started(name) is True
    assert prov.started("no-such-pod") is None


@pytest.mark.parametrize(("case", "patch"), [
    ("deleted by someone while pending", None),
    ("refused by the kubelet", {"spec": {"nodeName": "n1"}, "status": {
        "phase": "Failed", "reason": "UnexpectedAdmissionError", "message": "Allocate failed"}}),
    ("evicted before its container started", {"spec": {"nodeName": "n1"}, "status": {
        "phase": "Failed", "reason": "Evicted", "conditions": [
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]}}),
    ("the runtime could not start the process", {"spec": {"nodeName": "n1"}, "status": {
        "phase": "Failed", "containerStatuses": [{"name": "job", "state": {"terminated": {
            "exitCode": 128, "reason": "StartError", "startedAt": "1970-01-01T00:00:00Z"}}}]}}),
])
def test_a_pod_that_ended_before_its_job_started_failed_to_start(kube: KubeFake, case: str,
                                                               patch: dict[str, Any] | None) -> None:
    prov = make_provider(kube)
    add_node(kube, "n1", "p3.2xlarge")
    name = prov.launch(request()).instance_id
    if patch is None:
        client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.url))).delete_namespaced_pod(name, NS)
    else:
        set_pod(kube, name, patch)
    assert seen(prov, name) == (InstanceState.TERMINATED, EndReason.FAILED_TO_START, None), case


def test_a_bound_pod_whose_node_went_before_the_job_started_failed_to_start(kube: KubeFake) -> None:
    prov = make_provider(kube)
    add_node(kube, "spot-1", "p3.2xlarge")
    name = prov.launch(request()).instance_id
    set_pod(kube, name, {"spec": {"nodeName": "spot-1"}, "status": {"containerStatuses": [
        {"name": "job", "state": {"waiting": {"reason": "ContainerCreating"}}}]}})
    kube.remove("v1", "nodes", "", "spot-1")
    assert seen(prov, name) == (InstanceState.TERMINATED, EndReason.FAILED_TO_START, None)


def test_orch_stopping_a_pending_pod_is_not_a_billed_termination(kube: KubeFake) -> None:
    prov = make_provider(kube)
    inst = prov.launch(request())
    kube.update("v1", "pods", NS, inst.instance_id, {"metadata": {"finalizers": ["orch.dev/attempt-tracking",
                                                                             "other/keep"]}})
    prov.terminate(inst)  # marked and deleted; another finalizer keeps it readable
    assert seen(prov, inst.instance_id)[1] is EndReason.FAILED_TO_START


@pytest.fixture
def live(kube: KubeFake, sqlite_store: Store, tmp_path: Path) -> Iterator[tuple[Running, Store]]:
    api = client.ApiClient(client.Configuration(host=kube.url))
    provider = KubernetesProvider(api, KubernetesSettings(namespace=CTL_NS, instance_types=("p3.2xlarge",),
                                                          snapshot_ttl_s=0.0))
    reconciler = Reconciler(sqlite_store, {"kubernetes": provider}, SystemClock(), tick_seconds=0.05)
    backend = StoreBackend(sqlite_store, reconciler, checkpoint_root=(tmp_path / "ckpt").as_uri())
    running = Running(kube, "replica-a", backend=backend)
    yield running, sqlite_store
    running.stop()


def test_a_gpujob_waiting_for_a_node_is_launching_and_its_unstarted_pod_costs_nothing(
    kube: KubeFake, live: tuple[Running, Store]
) -> None:
    _, store = live
    create(kube)
    (pod,) = eventually(lambda: pods(kube), what="the attempt's pod")
    name = pod["metadata"]["name"]
    st = eventually(lambda: status(kube).get("attempts") == 1 and status(kube))
    assert st["phase"] == "Launching" and st["market"] == "spot"
    # Someone removes the pod that never got a node: nothing ran, nothing is billed.
    client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.url))).delete_namespaced_pod(name, CTL_NS)
    (job,) = store.jobs()
    first = eventually(lambda: next((a for a in store.attempts(job.id) if a.number == 0 and a.ended_at), None),
                       what="the first attempt to end")
    assert first.unbilled and attempt_cost(first, first.ended_at or 0.0) == 0.0
    # The next attempt's pod gets a node and starts: now the job runs.
    (second,) = eventually(lambda: [p for p in pods(kube) if p["metadata"]["name"] != name], what="a new pod")
    kube.put("v1", "nodes", {"metadata": {"name": "n1", "labels": {  # the node the kubelet binds it to
        "node.kubernetes.io/instance-type": "p3.2xlarge", "topology.kubernetes.io/zone": "z1"}}})
    kubelet(kube, second["metadata"]["name"], "Running")
    eventually(lambda: status(kube).get("phase") == "Running", what="phase Running once the pod started")


K8S_JOB = """
name = "pending-pod"
command = ["python", "fold.py"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 2
market = "spot"
[checkpoint]
uri = "{uri}"
[placement]
providers = ["kubernetes"]
"""


def _loop_job(kube: KubeFake, store: Store, tmp_path: Path) -> tuple[Reconciler, ManualClock, str]:
    clock = ManualClock()
    api = client.ApiClient(client.Configuration(host=kube.url))
    provider = KubernetesProvider(api, KubernetesSettings(namespace=NS, region="lab", instance_types=("p3.2xlarge",),
                                                          snapshot_ttl_s=0.0), clock=clock)
    path = tmp_path / "job.toml"
    path.write_text(K8S_JOB.format(uri=(tmp_path / "ckpt").as_uri()))
    spec = load_spec(path, submitted_at=clock.now())
    job_id = store.submit(spec, source=str(path), now=clock.now(), checkpoint_uri=(tmp_path / "ckpt").as_uri())
    return Reconciler(store, {"kubernetes": provider}, clock, tick_seconds=5.0), clock, job_id


def test_a_pod_is_billed_from_when_it_runs_not_from_when_it_was_asked_for(
    kube: KubeFake, sqlite_store: Store, tmp_path: Path
) -> None:
    r, clock, job_id = _loop_job(kube, sqlite_store, tmp_path)
    r.tick()
    (a,) = sqlite_store.attempts(job_id)
    assert a.state is AttemptState.LAUNCHING and a.instance_id is not None
    for _ in range(10):  # ten minutes without a node: still launching, nothing billed
        clock.advance(60.0)
        r.tick()
    (a,) = sqlite_store.attempts(job_id)
    assert a.state is AttemptState.LAUNCHING and attempt_cost(a, clock.now()) == 0.0
    assert sqlite_store.tasks(job_id)[0].state is TaskState.LAUNCHING

    add_node(kube, "n1", "p3.2xlarge")
    set_pod(kube, a.instance_id or "", {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    r.tick()
    started = clock.now()
    (a,) = sqlite_store.attempts(job_id)
    assert a.state is AttemptState.RUNNING and a.started_at == pytest.approx(started, abs=1.0)
    clock.advance(3600.0)
    assert attempt_seconds(a, clock.now()) == pytest.approx(3600.0, abs=1.0), "the pending 10 min are not billed"


def test_cancelling_a_job_whose_pod_waits_for_a_node_bills_nothing(
    kube: KubeFake, sqlite_store: Store, tmp_path: Path
) -> None:
    r, clock, job_id = _loop_job(kube, sqlite_store, tmp_path)
    r.tick()
    clock.advance(120.0)
    sqlite_store.request_cancel(job_id, clock.now())
    r.tick()
    (a,) = sqlite_store.attempts(job_id)
    assert a.outcome is Outcome.CANCELLED and a.unbilled and attempt_cost(a, clock.now()) == 0.0
    assert sqlite_store.tasks(job_id)[0].state is TaskState.CANCELLED
    left = kube.objects_of("v1", "pods", NS)
    assert left == [] or all(p["metadata"].get("deletionTimestamp") for p in left)
