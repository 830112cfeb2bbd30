"""The kubernetes provider with the real client against the API-server fake over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from providers.base import Provider
from providers.kubernetes.pods import ANN_STOP, FINALIZER, Placement, pod_manifest, pod_name
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests.kube_fake import KubeFake
from vocab import (
    EndReason,
    InstanceState,
    LaunchRequest,
    Market,
    NoticeKind,
    Offer,
    PermanentError,
    QuotaError,
    Resources,
    TransientError,
)

NS = "jobs"


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


def make_provider(kube: KubeFake, **kw: Any) -> KubernetesProvider:
    api = client.ApiClient(client.Configuration(host=kube.url))
    settings = KubernetesSettings(namespace=NS, region="lab", snapshot_ttl_s=0.0, **kw)
    return KubernetesProvider(api, settings)


def add_node(kube: KubeFake, name: str, instance_type: str | None, gpus: int = 1, **labels: str) -> None:
    all_labels = {**labels, **({"node.kubernetes.io/instance-type": instance_type} if instance_type else {})}
    all_labels.setdefault("topology.kubernetes.io/zone", "zone-a")
    kube.put("v1", "nodes", {"metadata": {"name": name, "labels": all_labels},
                             "status": {"capacity": {"nvidia.com/gpu": str(gpus)}}})


def offer(market: Market = Market.SPOT, instance_type: str = "p3.2xlarge", source: str = "catalog") -> Offer:
    return Offer(provider="kubernetes", region="lab", zone=None, instance_type=instance_type, market=market,
                 price_per_hour=0.918, gpu="V100", gpu_count=1, gpu_memory_gb=16, architecture="volta",
                 on_demand_price_per_hour=3.06, price_source=source)


def request(attempt: str = "job1-t0-a0", market: Market = Market.SPOT, **kw: Any) -> LaunchRequest:
    return LaunchRequest(job_id="job1", task_id="job1-t0", attempt_id=attempt, attempt_number=0,
                         offer=offer(market), command=("python", "fold.py"), env={"MODE": "fast"},
                         checkpoint_uri="s3://b/job1/t0", grace_seconds=30, **kw)


STARTED = "2026-01-01T00:00:00Z"


def set_pod(kube: KubeFake, name: str, patch: dict[str, Any]) -> None:
    """Play kubelet; container statuses get the fields a real kubelet always fills in, and a pod it
    reports Running has its container running, as a real kubelet's has."""
    status = patch.get("status", {})
    if status.get("phase") == "Running" and "containerStatuses" not in status:
        status["containerStatuses"] = [{"name": "job", "state": {"running": {"startedAt": STARTED}}}]
    for c in status.get("containerStatuses", []):
        c.update({"image": "img", "imageID": "", "ready": False, "restartCount": 0} | c)
    kube.update("v1", "pods", NS, name, patch)


def test_the_provider_satisfies_the_protocol(kube: KubeFake) -> None:
    assert isinstance(make_provider(kube), Provider)


def test_launch_makes_one_pod_per_attempt_and_is_idempotent(kube: KubeFake) -> None:
    prov = make_provider(kube)
    first = prov.launch(request())
    again = prov.launch(request())  # a retry after a crash: 409 AlreadyExists -> the same pod
    assert first.instance_id == again.instance_id == pod_name("job1-t0-a0")
    pods = kube.objects_of("v1", "pods", NS)
    assert len(pods) == 1
    pod = pods[0]
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["orch", "agent", "--grace", "30", "--", "python", "fold.py"]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["ORCH_CHECKPOINT_URI"] == "s3://b/job1/t0" and env["ORCH_MARKET"] == "spot"
    assert env["ORCH_ATTEMPT"] == "0" and env["MODE"] == "fast"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 40
    assert pod["spec"]["nodeSelector"] == {"karpenter.sh/capacity-type": "spot",
                                           "node.kubernetes.io/instance-type": "p3.2xlarge"}
    assert pod["metadata"]["labels"]["orch.dev/managed"] == "true"
    assert pod["metadata"]["finalizers"] == [FINALIZER]
    assert first.state is InstanceState.PENDING and first.attempt_id == "job1-t0-a0"


def _manifest(market: Market, placement: Placement) -> dict[str, Any]:
    return pod_manifest(request(market=market), image="img", agent=("orch", "agent"), placement=placement,
                        with_instance_type=False, service_account=None)


def test_presets_place_pods_on_the_right_capacity() -> None:
    gke_spot = _manifest(Market.SPOT, Placement("gke"))["spec"]
    assert gke_spot["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in gke_spot["tolerations"]
    gke_od = _manifest(Market.ON_DEMAND, Placement("gke"))["spec"]
    terms = gke_od["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["operator"] == "NotIn"
    eks = _manifest(Market.ON_DEMAND, Placement("eks"))["spec"]
    assert eks["nodeSelector"] == {"eks.amazonaws.com/capacityType": "ON_DEMAND"}
    own = _manifest(Market.SPOT, Placement("labels", spot_labels={"pool": "cheap"}, node_selector={"gpu": "yes"},
                                           tolerations=({"key": "t", "operator": "Exists"},)))["spec"]
    assert own["nodeSelector"] == {"pool": "cheap", "gpu": "yes"}
    assert {"key": "t", "operator": "Exists"} in own["tolerations"]


def test_long_ids_make_valid_distinct_names() -> None:
    a, b = pod_name("X" * 80 + "1"), pod_name("X" * 80 + "2")
    assert a != b and len(a) <= 63 and a == a.lower()


def test_request_options_override_the_preset(kube: KubeFake) -> None:
    prov = make_provider(kube)
    prov.launch(request(options={"preset": "eks"}))
    assert kube.objects_of("v1", "pods", NS)[0]["spec"]["nodeSelector"]["eks.amazonaws.com/capacityType"] == "SPOT"
    with pytest.raises(PermanentError, match=r"unknown placement\.options\.kubernetes keys"):
        prov.launch(request("a2", options={"presett": "eks"}))


def _observe(prov: KubernetesProvider) -> dict[str, Any]:
    return {i.instance_id: i for i in prov.instances()}


def test_pod_phases_become_instance_states(kube: KubeFake) -> None:
    prov = make_provider(kube)
    add_node(kube, "n1", "p3.2xlarge")
    names = [prov.launch(request(f"a{i}")).instance_id for i in range(4)]
    set_pod(kube, names[0], {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    set_pod(kube, names[1], {"status": {"phase": "Succeeded", "containerStatuses": [
        {"name": "job", "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-01T00:00:00Z"}}}]}})
    set_pod(kube, names[2], {"status": {"phase": "Failed", "containerStatuses": [
        {"name": "job", "state": {"terminated": {"exitCode": 3}}}]}})
    set_pod(kube, names[3], {"status": {"phase": "Pending", "containerStatuses": [
        {"name": "job", "state": {"waiting": {"reason": "InvalidImageName"}}}]}})
    seen = _observe(prov)
    running = seen[names[0]]
    assert (running.state, running.zone, running.instance_type) == (InstanceState.RUNNING, "zone-a", "p3.2xlarge")
    assert (seen[names[1]].reason, seen[names[1]].exit_code) == (EndReason.EXITED, 0)
    assert seen[names[1]].ended_at is not None
    assert (seen[names[2]].reason, seen[names[2]].exit_code) == (EndReason.EXITED, 3)
    assert seen[names[3]].reason is EndReason.FAILED_TO_START


@pytest.mark.parametrize("patch", [
    {"status": {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
                                                   "reason": "PreemptionByScheduler"}]}},
    {"status": {"phase": "Failed", "reason": "Evicted", "message": "node low on memory"}},
    {"status": {"phase": "Failed", "reason": "Preempting"}},
])
def test_disruption_and_eviction_read_as_preemption(kube: KubeFake, patch: dict[str, Any]) -> None:
    prov = make_provider(kube)
    name = prov.launch(request()).instance_id
    set_pod(kube, name, {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    set_pod(kube, name, patch)
    inst = _observe(prov)[name]
    assert (inst.state, inst.reason) == (InstanceState.TERMINATED, EndReason.PREEMPTED)


def test_node_loss_is_a_preemption_and_a_reclaim_taint_a_notice(kube: KubeFake) -> None:
    prov = make_provider(kube)
    add_node(kube, "spot-1", "p3.2xlarge")
    name = prov.launch(request()).instance_id
    set_pod(kube, name, {"spec": {"nodeName": "spot-1"}, "status": {"phase": "Running"}})
    assert prov.notices() == []
    kube.update("v1", "nodes", "", "spot-1", {"spec": {"taints": [
        {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}]}})
    (notice,) = prov.notices()
    assert (notice.kind, notice.attempt_id) == (NoticeKind.INTERRUPTION, "job1-t0-a0")
    kube.remove("v1", "nodes", "", "spot-1")
    inst = _observe(prov)[name]
    assert (inst.state, inst.reason) == (InstanceState.TERMINATED, EndReason.PREEMPTED)


def test_an_evicted_pod_stays_readable_until_orch_terminates_it(kube: KubeFake) -> None:
    """The pod finalizer keeps an evicted pod's record, so the end reads as preemption, not loss."""
    prov = make_provider(kube)
    name = prov.launch(request()).instance_id
    set_pod(kube, name, {"status": {"phase": "Running"}})
    kube.update("v1", "pods", NS, name, {"status": {"conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]}})
    client.CoreV1Api(client.ApiClient(client.Configuration(host=kube.url))).delete_namespaced_pod(name, NS)
    (notice,) = prov.notices()
    assert notice.deadline is not None
    set_pod(kube, name, {"status": {"phase": "Failed"}})
    inst = _observe(prov)[name]
    assert inst.reason is EndReason.PREEMPTED
    prov.terminate(inst)
    assert kube.objects_of("v1", "pods", NS) == []
    prov.terminate(inst)  # idempotent: already gone


def test_terminate_marks_the_pod_as_orchs_doing(kube: KubeFake) -> None:
    prov = make_provider(kube)
    inst = prov.launch(request())
    set_pod(kube, inst.instance_id, {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    kube.update("v1", "pods", NS, inst.instance_id, {"metadata": {"finalizers": [FINALIZER, "other/keep"]}})
    prov.terminate(inst)
    pod = kube.find("v1", "pods", NS, inst.instance_id)
    assert pod is not None and pod["metadata"]["annotations"][ANN_STOP] == "true"
    assert pod["metadata"]["finalizers"] == ["other/keep"] and pod["metadata"]["deletionTimestamp"]
    set_pod(kube, inst.instance_id, {"status": {"phase": "Failed", "reason": "Evicted"}})
    assert _observe(prov)[inst.instance_id].reason is EndReason.TERMINATED


def test_offers_priced_by_the_catalog_or_marked_unknown(kube: KubeFake) -> None:
    add_node(kube, "a", "p3.2xlarge")
    add_node(kube, "b", "dgx-on-prem", gpus=8, **{"nvidia.com/gpu.product": "A100", "nvidia.com/gpu.memory": "81920"})
    add_node(kube, "cpu", "m5.large", gpus=0)
    offers = make_provider(kube).offers(Resources(), [])
    by_type = {(o.instance_type, o.market): o for o in offers}
    assert set(by_type) == {(t, m) for t in ("p3.2xlarge", "dgx-on-prem") for m in Market}
    spot = by_type[("p3.2xlarge", Market.SPOT)]
    assert (spot.price_per_hour, spot.on_demand_price_per_hour, spot.price_source) == (0.918, 3.06, "catalog")
    prem = by_type[("dgx-on-prem", Market.ON_DEMAND)]
    assert (prem.price_per_hour, prem.price_source, prem.gpu, prem.gpu_count) == (0.0, "unknown", "A100", 8)
    assert prem.gpu_memory_gb == 80.0
    assert [o.instance_type for o in make_provider(kube).offers(Resources(gpus=("A100",)), [])] == ["dgx-on-prem"] * 2
    assert make_provider(kube).offers(Resources(), ["elsewhere"]) == []
    fixed = make_provider(kube, instance_types=("g5.xlarge",)).offers(Resources(), [])
    assert {o.instance_type for o in fixed} == {"g5.xlarge"}


@pytest.mark.parametrize(("code", "reason", "message", "error"), [
    (429, "TooManyRequests", "slow down", TransientError),
    (500, "InternalError", "etcd", TransientError),
    (403, "Forbidden", 'pods "x" is forbidden: exceeded quota: gpu-quota', QuotaError),
    (403, "Forbidden", "cannot create pods", PermanentError),
    (422, "Invalid", "spec.containers[0].image: Required", PermanentError),
])
def test_api_errors_become_base_errors(kube: KubeFake, code: int, reason: str, message: str,
                                       error: type[Exception]) -> None:
    kube.fail("POST", "/pods", code, reason=reason, message=message)
    with pytest.raises(error) as err:
        make_provider(kube).launch(request())
    assert type(err.value) is error and message in str(err.value)


def test_connection_refused_is_transient() -> None:
    cfg = client.Configuration(host="http://127.0.0.1:9")
    cfg.retries = 0
    with pytest.raises(TransientError):
        KubernetesProvider(client.ApiClient(cfg), KubernetesSettings(namespace=NS)).instances()


def test_relaunch_of_a_running_attempt_returns_it_running(kube: KubeFake) -> None:
    """The 409 path reads the pod without a node list: a bound pod must not look like node loss."""
    prov = make_provider(kube)
    add_node(kube, "n1", "p3.2xlarge")
    name = prov.launch(request()).instance_id
    set_pod(kube, name, {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    again = prov.launch(request())
    assert (again.instance_id, again.state, again.reason) == (name, InstanceState.RUNNING, None)


def test_a_pod_that_finished_before_its_node_went_is_not_a_preemption() -> None:
    """Karpenter removes the emptied node after the job ended: the outcome is the job's own."""
    from providers.kubernetes.pods import _state
    from vocab import EndReason

    def finished(phase: str, code: int) -> dict[str, object]:
        return {"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"nodeName": "gone-node"},
                "status": {"phase": phase, "containerStatuses": [
                    {"name": "job", "state": {"terminated": {"exitCode": code}}}]}}

    for phase, code in (("Succeeded", 0), ("Failed", 1)):
        _, reason, exit_code = _state(finished(phase, code), {}, 1e9, 600.0)
        assert (reason, exit_code) == (EndReason.EXITED, code), phase
