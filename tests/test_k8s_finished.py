"""A finished GpuJob stays finished: its `.status` is the record, even for a controller with an empty store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from orchestrator.k8s.backend import GpuJobStatus
from tests.kube_fake import KubeFake
from tests.test_k8s_controller import NS, Running, eventually, job, pods, start_running, status
from tests.test_k8s_sync import current, setup


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


def succeed(kube: KubeFake, pod: str) -> None:
    """Play kubelet: the job's container exited 0 and the pod is done."""
    terminated = {"exitCode": 0, "startedAt": "2024-01-01T00:00:00Z", "finishedAt": "2024-01-01T00:10:00Z"}
    kube.update("v1", "pods", NS, pod, {"status": {"phase": "Succeeded", "containerStatuses": [
        {"name": "job", "image": "img", "imageID": "", "ready": False, "restartCount": 0,
         "state": {"terminated": terminated}}]}})


def test_a_controller_with_an_empty_store_leaves_a_succeeded_gpujob_alone(kube: KubeFake, tmp_path: Path) -> None:
    first = Running(kube, "replica-a", store_dir=tmp_path / "a")
    try:
        succeed(kube, start_running(kube))
        eventually(lambda: status(kube).get("phase") == "Succeeded", what="the job to succeed")
        eventually(lambda: not pods(kube), what="the finished pod to be released")
    finally:
        first.stop()
    record = status(kube)
    fresh = Running(kube, "replica-b", store_dir=tmp_path / "b")  # a new store: it has never heard of the job
    try:
        eventually(lambda: fresh.proc.elector.is_leader and fresh.proc.informer.synced.is_set()
                   and fresh.proc.ticks > 5, what="the new leader to list the GpuJobs and tick")
        # It has seen the GpuJob; a handful more ticks would have started its pod.
        seen = fresh.proc.ticks
        eventually(lambda: fresh.proc.ticks >= seen + 5, what="five more ticks")
        assert pods(kube) == [], "a finished job must not start a pod again"
        assert status(kube) == record
        assert fresh.backend.store.jobs() == []
        assert fresh.proc.metrics.value("orch_gpujobs", phase="Succeeded") == 1
        client.CustomObjectsApi(client.ApiClient(client.Configuration(host=kube.url))).delete_namespaced_custom_object(
            "orch.dev", "v1alpha1", NS, "gpujobs", "fold")
        eventually(lambda: not job(kube), what="the finished GpuJob to be released on deletion")
    finally:
        fresh.stop()


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Cancelled", "BudgetExceeded"])
def test_a_terminal_phase_is_never_submitted_again(kube: KubeFake, phase: str) -> None:
    sync, backend, _ = setup(kube)
    sync.sync(current(kube))
    backend.jobs["j1"] = GpuJobStatus(phase, "spot", 1.0, 4.0, 4.0, attempts=1)
    sync.sync(current(kube))
    record: dict[str, Any] = current(kube)["status"]
    backend.jobs.clear()  # the store was wiped
    sync.sync(current(kube))
    sync.sync(current(kube))
    assert backend.submits == [current(kube)["metadata"]["uid"]]
    assert current(kube)["status"] == record


def test_a_live_backend_job_for_a_finished_gpujob_is_cancelled_not_shown(kube: KubeFake) -> None:
    """A store restored from an old backup thinks the job still runs: the GpuJob's record wins."""
    sync, backend, _ = setup(kube)
    sync.sync(current(kube))
    backend.jobs["j1"] = GpuJobStatus("Succeeded", "spot", 1.0, 4.0, 4.0, attempts=1)
    sync.sync(current(kube))
    record = current(kube)["status"]
    backend.jobs["j1"] = GpuJobStatus("Running", "spot", 0.5, 2.0, 4.0, attempts=1, live_attempts=1)
    sync.sync(current(kube))
    assert backend.cancelled == ["j1"] and current(kube)["status"] == record
    backend.jobs["j1"] = GpuJobStatus("Cancelled", "spot", 0.5, 2.0, 4.0, attempts=1)
    sync.sync(current(kube))
    assert current(kube)["status"] == record and len(backend.submits) == 1
