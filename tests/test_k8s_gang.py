"""A gang of pods with the real client against the API-server fake: under a coscheduling PodGroup where
the cluster serves one, else plain pods deleted whole when not all bound in time; never half a gang."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client

from providers.base import launch_nodes
from providers.kubernetes.gang import LABEL_POD_GROUP, gang_pod_name, group_name, overdue_gangs
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests.http_fake import ManualClock
from tests.kube_fake import KubeFake
from tests.test_k8s_provider import NS, request
from vocab import PermanentError, TransientError

PODGROUPS = ("scheduling.x-k8s.io/v1alpha1", "podgroups")


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


def provider(kube: KubeFake, clock: ManualClock | None = None, **kw: Any) -> KubernetesProvider:
    api = client.ApiClient(client.Configuration(host=kube.url))
    return KubernetesProvider(api, KubernetesSettings(namespace=NS, region="lab", snapshot_ttl_s=0.0, **kw),
                              clock=clock)


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def test_a_gang_under_a_podgroup_of_min_member_n(kube: KubeFake) -> None:
    p = provider(kube, gang_scheduler_name="scheduler-plugins-scheduler")
    req = request(nodes=3)
    gang = launch_nodes(p, req)
    assert [i.node_rank for i in gang] == [0, 1, 2]
    assert [i.instance_id for i in gang] == [gang_pod_name(req.attempt_id, r) for r in range(3)]
    [group] = kube.objects_of(*PODGROUPS, NS)
    assert group["metadata"]["name"] == group_name(req.attempt_id)
    assert group["spec"] == {"minMember": 3, "scheduleTimeoutSeconds": 600}
    for rank in range(3):
        pod = kube.find("v1", "pods", NS, gang_pod_name(req.attempt_id, rank))
        assert pod is not None
        assert pod["metadata"]["labels"][LABEL_POD_GROUP] == group_name(req.attempt_id)
        assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"
        env = env_of(pod)
        assert (env["ORCH_NODE_RANK"], env["NODE_RANK"], env["NNODES"]) == (str(rank), str(rank), "3")
        assert "MASTER_ADDR" not in env  # rank 0's agent publishes its pod's address (rendezvous)
    listed = sorted((i for i in p.instances() if i.attempt_id == req.attempt_id), key=lambda i: i.node_rank)
    assert [(i.instance_id, i.node_rank) for i in listed] == [(i.instance_id, i.node_rank) for i in gang]
    again = launch_nodes(p, req)  # a retried launch: the same pods, no second group
    assert [i.instance_id for i in again] == [i.instance_id for i in gang]
    assert len(kube.objects_of("v1", "pods", NS)) == 3 and len(kube.objects_of(*PODGROUPS, NS)) == 1
    assert p.release_gang(req) is False  # its pods are still there
    for inst in gang:
        p.terminate(inst)
    assert p.release_gang(req) is True and kube.objects_of(*PODGROUPS, NS) == []


def test_without_a_podgroup_api_a_gang_not_all_bound_in_time_is_deleted_whole(kube: KubeFake) -> None:
    kube.missing_apis.add(PODGROUPS[0])
    clock = ManualClock()  # wall time (the fake stamps creation with it) plus what the test advances
    p = provider(kube, clock, gang_bind_timeout_s=120.0)
    bound = launch_nodes(p, request("bound-gang", nodes=2))
    short = launch_nodes(p, request("short-gang", nodes=3))
    assert kube.objects_of(*PODGROUPS, NS) == []
    assert all(LABEL_POD_GROUP not in (kube.find("v1", "pods", NS, i.instance_id) or {})["metadata"]["labels"]
               for i in bound + short)
    kube.put("v1", "nodes", {"metadata": {"name": "n-1", "labels": {}},
                             "status": {"capacity": {"nvidia.com/gpu": "8"}}})
    for inst in [*bound, short[0], short[1]]:  # the scheduler found nodes for two of the three
        kube.update("v1", "pods", NS, inst.instance_id, {"spec": {"nodeName": "n-1"}})
    clock.advance(60.0)
    assert len([i for i in p.instances() if i.alive]) == 5  # within the timeout: waiting is fine
    clock.advance(120.0)
    p.instances()
    left = {pod["metadata"]["name"] for pod in kube.objects_of("v1", "pods", NS)}
    assert left == {i.instance_id for i in bound}, "the half-bound gang must go whole, the bound one stay"
    assert p.release_gang(request("short-gang", nodes=3)) is True


def test_a_pod_that_cannot_be_made_takes_the_gang_down(kube: KubeFake) -> None:
    p = provider(kube)
    req = request(nodes=3)
    # Rank 2's pod exists from an earlier try, but reading it back keeps failing.
    kube.put("v1", "pods", {"metadata": {"name": gang_pod_name(req.attempt_id, 2), "namespace": NS}, "spec": {}})
    kube.fail("GET", f"/pods/{gang_pod_name(req.attempt_id, 2)}", 500, times=100)
    with pytest.raises(TransientError):
        launch_nodes(p, req)
    names = {pod["metadata"]["name"] for pod in kube.objects_of("v1", "pods", NS)}
    assert names == {gang_pod_name(req.attempt_id, 2)}, "ranks 0 and 1 were left running"
    assert kube.objects_of(*PODGROUPS, NS) == []


def test_a_gang_past_the_limit_or_of_another_cluster_is_refused(kube: KubeFake) -> None:
    p = provider(kube)
    with pytest.raises(PermanentError, match="kubernetes cannot launch 129 nodes as one gang"):
        launch_nodes(p, request(nodes=129))
    with pytest.raises(PermanentError, match="not an offer of this cluster"):
        p.launch_gang(replace(request(nodes=2), offer=replace(request().offer, region="other")))
    assert kube.objects_of("v1", "pods", NS) == []


def test_overdue_gangs_reads_only_gangs_without_a_group() -> None:
    def pod(name: str, attempt: str, nodes: int, node: str | None, group: str | None = None) -> dict[str, Any]:
        labels = {"orch.dev/nodes": str(nodes), **({LABEL_POD_GROUP: group} if group else {})}
        return {"metadata": {"name": name, "labels": labels, "annotations": {"orch.dev/attempt-id": attempt},
                             "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"nodeName": node}}

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    pods = [pod("a0", "a", 2, "n"), pod("a1", "a", 2, None), pod("b0", "b", 2, None, "g"), pod("b1", "b", 2, None, "g"),
            pod("c0", "c", 2, "n"), pod("c1", "c", 2, "n")]
    assert overdue_gangs(pods, now=t0 + 599, timeout_s=600) == {}
    assert overdue_gangs(pods, now=t0 + 600, timeout_s=600) == {"a": ["a0", "a1"]}
