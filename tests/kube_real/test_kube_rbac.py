"""The controller as the chart's ServiceAccount, with the chart's RBAC only: a whole job without one 403.

Least privilege is easy to get wrong in both directions; the fake answers every call. Here the real
RBAC authorizer decides, and the API server's audit log (every ServiceAccount request, with its
answer) is the evidence. Both variants of the chart run: GpuJobs cluster-wide (ClusterRole) and in
one watched namespace (Role).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube_real.chart import (
    apply_rbac,
    delete_cluster_scoped,
    denials,
    find_helm,
    render,
    requests_of,
    service_account_token,
)
from tests.kube_real.cluster import Cluster, kube_required
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import Controller, GpuJobs, eventually, new_namespace, release_namespace

pytestmark = pytest.mark.kube


@pytest.fixture
def helm() -> Path:
    found = find_helm()
    if found is None:
        why = "no helm (run `bash .ci/helm.sh`, which unpacks one into .tools/)"
        if kube_required():
            pytest.fail(why)
        pytest.skip(why)
    return found


@pytest.fixture
def watched(cluster: Cluster) -> Iterator[str]:
    """A second namespace, where users create GpuJobs (the release's own holds the pods and Lease)."""
    name = f"w-{uuid.uuid4().hex[:10]}"
    new_namespace(cluster.api_client(), name)
    yield name
    with contextlib.suppress(Exception):
        release_namespace(cluster.api_client(), name)


@pytest.mark.parametrize("scope", ["cluster-wide", "one-namespace"])
def test_a_job_runs_to_the_end_as_the_charts_service_account_without_a_403(
    scope: str, cluster: Cluster, namespace: str, watched: str, nodes: NodeSim, helm: Path, tmp_path: Path
) -> None:
    admin = cluster.api_client()
    values = {} if scope == "cluster-wide" else {"watchNamespace": watched}
    made = list(apply_rbac(admin, render(helm, namespace, values)))
    try:
        assert {kind for kind, _, _ in made} >= {"ServiceAccount", "ClusterRole", "Role", "RoleBinding"}
        user = f"system:serviceaccount:{namespace}:orch"
        token = service_account_token(admin, namespace, "orch")
        ctl = Controller(cluster.api_client(token), namespace, "orch-0", store_dir=tmp_path,
                         watch=None if scope == "cluster-wide" else watched)
        nodes.add_node(f"{namespace}-spot-a", market="spot")
        jobs = GpuJobs(admin, watched)
        try:
            jobs.create()
            pods = GpuJobs(admin, namespace)  # pods go to the release namespace
            first = pods.running_pod()
            eventually(lambda: jobs.status().get("phase") == "Running", what="phase Running")
            nodes.add_node(f"{namespace}-spot-b", market="spot")
            nodes.remove_node(f"{namespace}-spot-a")  # a reclamation: node list, pod delete, a new pod
            eventually(lambda: jobs.status().get("attempts") == 2, what="a second attempt")
            second = pods.running_pod()
            assert second.metadata.name != first.metadata.name
            jobs.delete()  # cancel, pod deletion, finalizer removal
            eventually(lambda: not jobs.get(), what="the GpuJob to go")
        finally:
            ctl.stop()
        assert ctl.crashed is None and ctl.code == 0
        seen = requests_of(cluster.audit(), user)
        assert len(seen) > 20, f"the audit log shows the ServiceAccount's requests: {seen}"
        assert denials(cluster.audit(), user) == []
    finally:
        delete_cluster_scoped(admin, made)


def test_the_audit_log_does_catch_a_403(cluster: Cluster, namespace: str) -> None:
    """The evidence above is only worth something if a denial would show: a ServiceAccount with no
    role asks for pods."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    admin = cluster.api_client()
    client.CoreV1Api(admin).create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = service_account_token(admin, namespace, "nobody")
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(cluster.api_client(token)).list_namespaced_pod(namespace)
    assert refused.value.status == 403
    user = f"system:serviceaccount:{namespace}:nobody"
    eventually(lambda: denials(cluster.audit(), user), what="the denial in the audit log")
    assert os.path.getsize(cluster.audit_log) > 0
