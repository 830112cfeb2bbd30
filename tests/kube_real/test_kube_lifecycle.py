"""A GpuJob's whole life against a real kube-apiserver and kube-scheduler: launch, run, finish,
reclamation (node taken away, or the pod disrupted), cancel, delete.

The controller, store, reconciler and kubernetes provider are the shipped ones; the only stand-in is
`NodeSim` for the kubelets. Pods are bound by the real scheduler, so a wrong node selector or a
missing toleration leaves the pod Pending and the test fails on the wait, not on a fake's leniency.
"""

from __future__ import annotations

import time

import pytest

from orchestrator.core.model import TaskState
from orchestrator.k8s.kube import FINALIZER
from providers.kubernetes.pods import FINALIZER as POD_FINALIZER
from tests.kube_real.cluster import Cluster
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import Controller, GpuJobs, describe, eventually

pytestmark = pytest.mark.kube


@pytest.fixture
def jobs(cluster: Cluster, namespace: str) -> GpuJobs:
    return GpuJobs(cluster.api_client(), namespace)


def phase(jobs: GpuJobs, name: str = "fold") -> str:
    return str(jobs.status(name).get("phase") or "")


def test_a_gpujob_runs_on_the_spot_node_the_scheduler_picks_and_succeeds(
    namespace: str, nodes: NodeSim, ctl: Controller, jobs: GpuJobs
) -> None:
    nodes.add_node(f"{namespace}-od", market="on-demand")
    nodes.add_node(f"{namespace}-spot", market="spot")
    jobs.create()
    pod = jobs.running_pod()
    assert pod.spec.node_name == f"{namespace}-spot", "the spot selector and the GPU toleration reached the scheduler"
    assert POD_FINALIZER in pod.metadata.finalizers and pod.metadata.labels["orch.dev/market"] == "spot"
    st = eventually(lambda: phase(jobs) == "Running" and jobs.status(), what="phase Running")
    assert st["market"] == "spot" and st["attempts"] == 1 and st["jobId"]
    assert st["costUsd"] >= 0 and st["projected"].startswith("$")
    assert FINALIZER in jobs.get()["metadata"]["finalizers"]
    assert eventually(lambda: {"Submitted", "Launched"} <= set(jobs.events()), what="the events")

    nodes.finish(namespace, pod.metadata.name, exit_code=0)
    eventually(lambda: phase(jobs) == "Succeeded", what="phase Succeeded")
    (task,) = ctl.store.tasks(st["jobId"])
    assert task.state is TaskState.SUCCEEDED
    assert eventually(lambda: "Succeeded" in jobs.events(), what="the Succeeded event")


def test_a_reclaimed_spot_node_is_a_preemption_and_the_job_resumes_elsewhere(
    namespace: str, nodes: NodeSim, ctl: Controller, jobs: GpuJobs
) -> None:
    nodes.add_node(f"{namespace}-spot-a", market="spot")
    jobs.create()
    first = jobs.running_pod()
    eventually(lambda: phase(jobs) == "Running", what="phase Running")
    nodes.announce_reclaim(f"{namespace}-spot-a")  # Karpenter's taint: the notice
    nodes.add_node(f"{namespace}-spot-b", market="spot")
    nodes.remove_node(f"{namespace}-spot-a")  # the machine is gone; its pod stays bound to it
    st = eventually(lambda: (s := jobs.status()).get("preemptions") == 1 and s.get("attempts") == 2 and s,
                    what="a preemption and a second attempt")
    second = jobs.running_pod()
    assert second.metadata.name != first.metadata.name and second.spec.node_name == f"{namespace}-spot-b"
    eventually(lambda: phase(jobs) == "Running", what="phase Running again")
    assert eventually(lambda: "Preempted" in jobs.events() and jobs.events().count("Launched") == 2,
                      what="the Preempted and second Launched events")
    # orch let go of the lost pod: its finalizer removed and deletion asked (a real cluster's pod GC
    # then removes a pod whose node is gone; here no controller-manager runs to do it).
    old = next(p for p in jobs.pods() if p.metadata.name == first.metadata.name)
    assert POD_FINALIZER not in (old.metadata.finalizers or []) and old.metadata.deletion_timestamp
    assert ctl.proc.metrics.value("orch_preemptions_total") == 1 and st["market"] == "spot"


def test_a_disrupted_pod_is_a_preemption(namespace: str, nodes: NodeSim, ctl: Controller, jobs: GpuJobs) -> None:
    nodes.add_node(f"{namespace}-spot", market="spot")
    jobs.create()
    first = jobs.running_pod()
    nodes.disrupt(namespace, first.metadata.name)  # DisruptionTarget, phase Failed, exit 143
    eventually(lambda: jobs.status().get("preemptions") == 1 and jobs.status().get("attempts") == 2,
               what="a preemption and a second attempt")
    second = jobs.running_pod()
    assert second.metadata.name != first.metadata.name
    (task,) = ctl.store.tasks(jobs.status()["jobId"])
    assert task.state in (TaskState.RUNNING, TaskState.LAUNCHING)


def test_deleting_a_gpujob_cancels_it_and_its_pod_is_stopped(
    namespace: str, nodes: NodeSim, ctl: Controller, jobs: GpuJobs
) -> None:
    nodes.add_node(f"{namespace}-spot", market="spot")
    jobs.create()
    jobs.running_pod()
    job_id = eventually(lambda: jobs.status().get("jobId"), what="the job id")
    jobs.delete()
    eventually(lambda: not jobs.get(), what="the GpuJob to go")
    eventually(lambda: jobs.pods() == [], what="the pod to be stopped and removed")
    assert "CleanedUp" in eventually(lambda: jobs.events(), what="events")
    assert ctl.store.tasks(job_id)[0].state is TaskState.CANCELLED


def test_a_deleted_gpujob_stays_until_its_pod_has_stopped(
    namespace: str, nodes: NodeSim, ctl: Controller, jobs: GpuJobs
) -> None:
    nodes.add_node(f"{namespace}-spot", market="spot")
    jobs.create()
    pod = jobs.running_pod()
    eventually(lambda: jobs.status().get("jobId"), what="the job id")
    nodes.slow_stop.add(pod.metadata.name)  # the job saves a checkpoint for its whole grace period
    jobs.delete()
    eventually(lambda: any(p.metadata.deletion_timestamp for p in jobs.pods()), what="the pod's deletion")
    ticks = ctl.proc.ticks
    eventually(lambda: ctl.proc.ticks >= ticks + 10 or not jobs.get(), what="ten controller ticks")
    assert jobs.get(), "the GpuJob went while its pod was still running: " + str([describe(p) for p in jobs.pods()])
    assert jobs.status().get("phase") == "Terminating" and jobs.status().get("liveAttempts") == 1
    nodes.slow_stop.clear()
    eventually(lambda: not jobs.get(), what="the GpuJob to go once the pod stopped")


def test_cancel_through_the_store_ends_the_pod_and_shows_cancelled(
    namespace: str, nodes: NodeSim, ctl: Controller, jobs: GpuJobs
) -> None:
    nodes.add_node(f"{namespace}-spot", market="spot")
    jobs.create()
    jobs.running_pod()
    job_id = eventually(lambda: jobs.status().get("jobId"), what="the job id")
    ctl.store.request_cancel(job_id, time.time())  # what `orch cancel` does
    eventually(lambda: phase(jobs) == "Cancelled", what="phase Cancelled")
    eventually(lambda: jobs.pods() == [], what="the pod to be stopped and removed")
    assert jobs.get()["metadata"]["finalizers"] == [FINALIZER], "the resource stays, with its record"


def test_a_pod_waiting_for_a_node_is_launching_and_runs_once_a_node_comes(
    namespace: str, nodes: NodeSim, ctl: Controller, jobs: GpuJobs
) -> None:
    jobs.create()
    pod = eventually(lambda: jobs.pods(), what="the attempt's pod")[0]
    assert not pod.spec.node_name, "no GPU node yet: the scheduler cannot bind it"
    eventually(lambda: phase(jobs) == "Launching", what="phase Launching")
    assert jobs.status().get("costUsd", 0) == 0, "a pod without a node costs nothing"
    nodes.add_node(f"{namespace}-spot", market="spot")  # Karpenter made one
    jobs.running_pod()
    eventually(lambda: phase(jobs) == "Running", what="phase Running")
