"""The API server restarts under a running controller: no traceback, no lost job, no second attempt.

A restart closes every watch and refuses connections for a few seconds (here the process is really
stopped and started again on the same etcd, as in a control-plane upgrade). An outage shorter than
the lease's renew deadline keeps the leader; a longer one makes it exit 1, and the restarted controller
carries on from the store and the GpuJob's status. The chart's timings (15 s / 10 s / 2 s, client-go's
defaults) ride out an outage of about 6 s: last renewal up to 2 s before it, first retry up to 2 s after.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.k8s.leader import LeaseSettings
from tests.kube_real.cluster import Cluster
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import Controller, GpuJobs, eventually

pytestmark = pytest.mark.kube


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records that carry a traceback: an outage is logged in one line, never as a crash."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.fixture
def outage_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING)
    yield caplog


def start_job(cluster: Cluster, namespace: str, nodes: NodeSim) -> tuple[GpuJobs, str]:
    nodes.add_node(f"{namespace}-spot", market="spot")
    jobs = GpuJobs(cluster.api_client(), namespace)
    jobs.create()
    pod = jobs.running_pod()
    eventually(lambda: jobs.status().get("phase") == "Running", what="phase Running")
    return jobs, str(pod.metadata.name)


def test_a_short_restart_keeps_the_leader_and_the_job(
    cluster: Cluster, namespace: str, nodes: NodeSim, tmp_path: Path, outage_log: pytest.LogCaptureFixture
) -> None:
    # A restart here takes 5-8 s (stop, start, ready) on 2 busy cores: the chart's 10 s renew deadline
    # with a 2 s retry period is too close to call, so this lease leaves room for it.
    roomy = LeaseSettings(name="orch", namespace=namespace, duration_s=45, renew_deadline_s=30.0, retry_period_s=1.0)
    ctl = Controller(cluster.api_client(), namespace, "replica-a", store_dir=tmp_path, lease=roomy)
    try:
        jobs, pod = start_job(cluster, namespace, nodes)
        restarts = ctl.proc.informer.lists
        cluster.restart_apiserver()
        eventually(lambda: ctl.proc.informer.lists > restarts, what="the informer to list again")
        assert ctl.thread.is_alive() and ctl.proc.elector.is_leader, "a restart shorter than the lease keeps it"
        nodes.finish(namespace, pod, exit_code=0)
        eventually(lambda: jobs.status().get("phase") == "Succeeded", what="phase Succeeded after the restart")
        st = jobs.status()
        assert st["attempts"] == 1 and st["preemptions"] == 0
        assert len(ctl.store.jobs()) == 1
    finally:
        ctl.stop()
    assert ctl.crashed is None and ctl.code == 0
    assert tracebacks(outage_log) == []


def test_a_long_outage_ends_the_leader_and_its_successor_carries_on(
    cluster: Cluster, namespace: str, nodes: NodeSim, tmp_path: Path, outage_log: pytest.LogCaptureFixture
) -> None:
    ctl = Controller(cluster.api_client(), namespace, "replica-a", store_dir=tmp_path)  # 4 s / 3 s lease
    jobs, pod = start_job(cluster, namespace, nodes)
    cluster.stop_apiserver()
    eventually(lambda: not ctl.thread.is_alive(), what="the leader to give up once it cannot renew")
    assert ctl.code == 1 and ctl.crashed is None, "a lost lease is exit 1 (Kubernetes restarts the pod)"
    ctl.proc.shutdown()
    cluster.start_apiserver()
    after = Controller(cluster.api_client(), namespace, "replica-a-restarted", backend=ctl.backend)
    try:
        eventually(lambda: after.proc.elector.is_leader, what="the restarted controller to lead")
        nodes.finish(namespace, pod, exit_code=0)
        eventually(lambda: jobs.status().get("phase") == "Succeeded", what="phase Succeeded")
        assert jobs.status()["attempts"] == 1 and len(after.store.jobs()) == 1
    finally:
        after.stop()
    assert tracebacks(outage_log) == []
