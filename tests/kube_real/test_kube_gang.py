"""Gangs of pods against the real API server and scheduler (the `kube` tier).

Without the coscheduling API the cluster knows nothing of gangs: orch creates N pods and, when they are
not all bound within `gang_bind_timeout_s`, deletes every one of them (here: three pods, two nodes of
one GPU each). With the PodGroup CRD installed (tests/kube_real/podgroup-crd.yaml) orch creates a
PodGroup of `minMember = N` and labels its pods with it; the tier runs the default scheduler, not the
coscheduling plugin, so what is checked there is what orch hands the plugin, and that the group goes
with the gang.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from providers.base import launch_nodes
from providers.kubernetes.gang import (
    LABEL_POD_GROUP,
    PODGROUP_GROUP,
    PODGROUP_PLURAL,
    PODGROUP_VERSION,
    group_name,
)
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests.kube_real.cluster import Cluster
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import eventually
from vocab import LaunchRequest, Market, Resources

pytestmark = pytest.mark.kube

PODGROUP_CRD = Path(__file__).with_name("podgroup-crd.yaml")
CRD_NAME = "podgroups.scheduling.x-k8s.io"


def _podgroups_served(api: Any, namespace: str) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CustomObjectsApi(api).list_namespaced_custom_object(PODGROUP_GROUP, PODGROUP_VERSION, namespace,
                                                                   PODGROUP_PLURAL)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _remove_crd(api: Any, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    with contextlib.suppress(ApiException):
        client.ApiextensionsV1Api(api).delete_custom_resource_definition(CRD_NAME)
    eventually(lambda: not _podgroups_served(api, namespace), what="podgroups to be no longer served")


@pytest.fixture
def podgroup_crd(cluster: Cluster, namespace: str) -> Iterator[None]:
    """The PodGroup API served for this test only (CRDs are cluster-wide; the next test must not see it)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = cluster.api_client()
    try:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(yaml.safe_load(PODGROUP_CRD.read_text()))
    except ApiException as exc:
        if exc.status != 409:
            raise
    eventually(lambda: _podgroups_served(api, namespace), what="podgroups to be served")
    yield
    _remove_crd(api, namespace)


def provider(cluster: Cluster, namespace: str, **kw: Any) -> KubernetesProvider:
    settings = KubernetesSettings(namespace=namespace, region="lab", price_region="us-east-1", snapshot_ttl_s=0.0,
                                  **kw)
    return KubernetesProvider(cluster.api_client(), settings)


def gang_request(p: KubernetesProvider, attempt: str, nodes: int) -> LaunchRequest:
    offer = next(o for o in p.offers(Resources(gpus=("V100",)), ["lab"])
                 if o.market is Market.SPOT and o.instance_type == "p3.2xlarge")
    return LaunchRequest(job_id="gang-job", task_id="gang-task", attempt_id=attempt, attempt_number=0, offer=offer,
                         command=("python3", "train.py"), env={}, checkpoint_uri="s3://b/gang", grace_seconds=5.0,
                         nodes=nodes)


def pods_of(cluster: Cluster, namespace: str, attempt: str) -> list[Any]:
    from kubernetes import client

    pods = client.CoreV1Api(cluster.api_client()).list_namespaced_pod(namespace).items
    return [p for p in pods if (p.metadata.annotations or {}).get("orch.dev/attempt-id") == attempt]


def test_without_podgroups_a_gang_not_all_bound_is_deleted_whole(cluster: Cluster, namespace: str,
                                                                  nodes: NodeSim) -> None:
    _remove_crd(cluster.api_client(), namespace)  # a cluster without the coscheduling API
    nodes.add_node(f"{namespace}-v100-a", instance_type="p3.2xlarge", market="spot")
    nodes.add_node(f"{namespace}-v100-b", instance_type="p3.2xlarge", market="spot")
    p = provider(cluster, namespace, gang_bind_timeout_s=5.0)
    short = launch_nodes(p, gang_request(p, "short-gang", 3))
    assert [i.node_rank for i in short] == [0, 1, 2]
    assert all(LABEL_POD_GROUP not in (pod.metadata.labels or {}) for pod in pods_of(cluster, namespace, "short-gang"))
    # The scheduler binds two of the three (one GPU per node); the third waits for a node that never comes.
    eventually(lambda: sum(1 for pod in pods_of(cluster, namespace, "short-gang") if pod.spec.node_name) == 2,
               what="two of the gang's pods bound")
    time.sleep(5.0)

    def rolled_back() -> bool:
        p.instances()  # the listing enforces the timeout
        return not pods_of(cluster, namespace, "short-gang")

    eventually(rolled_back, what="the half-bound gang's pods all deleted")
    # With the GPUs free again, a gang that fits binds whole and stays past the timeout.
    fits = launch_nodes(p, gang_request(p, "fitting-gang", 2))
    eventually(lambda: all(pod.spec.node_name for pod in pods_of(cluster, namespace, "fitting-gang"))
               and len(pods_of(cluster, namespace, "fitting-gang")) == 2, what="the fitting gang bound")
    time.sleep(5.0)
    p.instances()
    assert len(pods_of(cluster, namespace, "fitting-gang")) == 2
    for inst in fits:
        p.terminate(inst)


def test_with_podgroups_the_gang_is_one_group_of_min_member_n(cluster: Cluster, namespace: str, nodes: NodeSim,
                                                               podgroup_crd: None) -> None:
    from kubernetes import client

    nodes.add_node(f"{namespace}-v100-a", instance_type="p3.2xlarge", market="spot")
    nodes.add_node(f"{namespace}-v100-b", instance_type="p3.2xlarge", market="spot")
    p = provider(cluster, namespace)
    req = gang_request(p, "grouped-gang", 2)
    gang = launch_nodes(p, req)
    custom = client.CustomObjectsApi(cluster.api_client())
    group = custom.get_namespaced_custom_object(PODGROUP_GROUP, PODGROUP_VERSION, namespace, PODGROUP_PLURAL,
                                                group_name("grouped-gang"))
    assert group["spec"]["minMember"] == 2
    pods = pods_of(cluster, namespace, "grouped-gang")
    assert sorted(int(pod.metadata.labels["orch.dev/rank"]) for pod in pods) == [0, 1]
    assert {pod.metadata.labels[LABEL_POD_GROUP] for pod in pods} == {group_name("grouped-gang")}
    eventually(lambda: all(pod.spec.node_name for pod in pods_of(cluster, namespace, "grouped-gang")),
               what="the gang's pods bound")
    assert p.release_gang(req) is False
    for inst in gang:
        p.terminate(inst)
    eventually(lambda: p.release_gang(req), what="the gang's pods gone and its PodGroup deleted")
    left = custom.list_namespaced_custom_object(PODGROUP_GROUP, PODGROUP_VERSION, namespace, PODGROUP_PLURAL)
    assert left.get("items") == []
