"""Leader election with two controllers through a real `coordination.k8s.io/v1` Lease.

The real server decides who wins a race (409 on a stale resourceVersion) and stores the Lease's
MicroTime fields its own way; the fake tier cannot show either.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.kube_real.cluster import Cluster
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import Controller, GpuJobs, eventually

pytestmark = pytest.mark.kube


def lease(cluster: Cluster, namespace: str) -> dict[str, object]:
    from kubernetes import client

    api = cluster.api_client()
    spec = api.sanitize_for_serialization(client.CoordinationV1Api(api).read_namespaced_lease("orch", namespace))
    return dict(spec["spec"])


def test_one_leader_and_a_takeover_after_a_crash_without_a_duplicate_pod(
    cluster: Cluster, namespace: str, nodes: NodeSim, tmp_path: Path
) -> None:
    nodes.add_node(f"{namespace}-spot", market="spot")
    a = Controller(cluster.api_client(), namespace, "replica-a", store_dir=tmp_path)
    b: Controller | None = None
    try:
        eventually(lambda: a.proc.elector.is_leader, what="a first leader")
        b = Controller(cluster.api_client(), namespace, "replica-b", backend=a.backend)
        jobs = GpuJobs(cluster.api_client(), namespace)
        jobs.create()
        first = jobs.running_pod()
        eventually(lambda: b is not None and b.proc.elector.holder == "replica-a", what="b to see a's lease")
        assert a.proc.elector.is_leader and not b.proc.elector.is_leader and b.proc.ticks == 0
        a.crash()  # no release: b must wait for the lease to expire
        eventually(lambda: b is not None and b.proc.elector.is_leader, what="takeover")
        ticks = b.proc.ticks
        eventually(lambda: b is not None and b.proc.ticks > ticks + 5, what="the new leader to reconcile")
        held = lease(cluster, namespace)
        assert held["holderIdentity"] == "replica-b" and held["leaseTransitions"] == 1
        assert [p.metadata.name for p in jobs.live_pods()] == [first.metadata.name], "no second attempt"
        assert jobs.status()["attempts"] == 1
    finally:
        if b is not None:
            b.stop()
        a.stop()


def test_a_graceful_stop_hands_the_lease_over_at_once(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    a = Controller(cluster.api_client(), namespace, "replica-a", store_dir=tmp_path)
    eventually(lambda: a.proc.elector.is_leader, what="a first leader")
    b = Controller(cluster.api_client(), namespace, "replica-b", backend=a.backend)
    try:
        eventually(lambda: b.proc.elector.holder == "replica-a", what="b to see a's lease")
        a.stop()
        assert a.code == 0
        released = lease(cluster, namespace)  # released (no holder), or already b's: never a's
        assert released.get("holderIdentity") in (None, "", "replica-b"), f"a released the lease: {released}"
        eventually(lambda: b.proc.elector.is_leader, what="b to take the released lease")
    finally:
        b.stop()


def test_a_leader_whose_lease_is_taken_stops_and_exits_1(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """Another holder written into the Lease (a partitioned leader's lease given away): the old leader
    sees it at its next renewal and exits, so Kubernetes restarts it as a fresh candidate."""
    from kubernetes import client

    a = Controller(cluster.api_client(), namespace, "replica-a", store_dir=tmp_path)
    try:
        eventually(lambda: a.proc.elector.is_leader, what="a first leader")
        api = client.CoordinationV1Api(cluster.api_client())
        current = api.read_namespaced_lease("orch", namespace)
        current.spec.holder_identity = "someone-else"
        current.spec.renew_time = dt.datetime.now(dt.UTC)
        current.spec.lease_duration_seconds = 3600
        api.replace_namespaced_lease("orch", namespace, current)
        eventually(lambda: not a.thread.is_alive(), what="the old leader to exit")
        assert a.code == 1 and a.crashed is None and a.proc.metrics.value("orch_leader") == 0
    finally:
        a.proc.shutdown()
