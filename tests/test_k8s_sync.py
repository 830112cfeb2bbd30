"""One GpuJob sync at a time: events from status changes, never twice; resubmission; spec changes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from kubernetes import client

from orchestrator.core.spec import JobSpec
from orchestrator.job.items_format import ParsedItem
from orchestrator.k8s.backend import GpuJobStatus, UnknownJob
from orchestrator.k8s.controller import GpuJobSync
from orchestrator.k8s.convert import gpujob_from_toml
from orchestrator.k8s.kube import GpuJobClient, KubeError, create_gpujob
from orchestrator.k8s.metrics import Metrics
from tests.kube_fake import KubeFake

CRD = "orch.dev/v1alpha1"


class ScriptedBackend:
    """A JobBackend whose job moves through statuses the test sets, to drive the controller's diffing."""

    def __init__(self) -> None:
        self.jobs: dict[str, GpuJobStatus] = {}
        self.submits: list[str] = []
        self.cancelled: list[str] = []

    def submit(self, spec: JobSpec, *, external_ref: str, items: Sequence[ParsedItem] = ()) -> str:
        self.submits.append(external_ref)
        job_id = f"j{len(self.submits)}"
        self.jobs[job_id] = GpuJobStatus("Pending")
        return job_id

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def status(self, job_id: str) -> GpuJobStatus:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise UnknownJob(job_id) from None

    def reconcile_once(self) -> None:
        pass


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


def setup(kube: KubeFake) -> tuple[GpuJobSync, ScriptedBackend, Metrics]:
    backend, metrics = ScriptedBackend(), Metrics()
    api = client.ApiClient(client.Configuration(host=kube.url))
    sync = GpuJobSync(GpuJobClient(api, "lab", component="test", identity="t"), backend, metrics)
    kube.put(CRD, "gpujobs", {"metadata": {"name": "fold", "namespace": "lab"},
                              "spec": {"command": ["x"], "schedule": {"estimated_hours": 1}}})
    return sync, backend, metrics


def current(kube: KubeFake) -> dict[str, Any]:
    obj = kube.find(CRD, "gpujobs", "lab", "fold")
    assert obj is not None
    return obj


def reasons(kube: KubeFake) -> list[str]:
    return sorted(e["reason"] for e in kube.objects_of("v1", "events", "lab"))


def test_events_follow_status_changes_once(kube: KubeFake) -> None:
    sync, backend, metrics = setup(kube)
    sync.sync(current(kube))
    assert reasons(kube) == ["Submitted"] and backend.submits == [current(kube)["metadata"]["uid"]]
    backend.jobs["j1"] = GpuJobStatus("Running", "spot", 0.1, 0.5, 3.0, attempts=1, live_attempts=1)
    sync.sync(current(kube))
    sync.sync(current(kube))  # nothing changed: no new event, no new status write
    assert reasons(kube) == ["Launched", "Submitted"]
    backend.jobs["j1"] = GpuJobStatus("Running", "on-demand", 0.3, 2.0, 5.0, preemptions=1, attempts=2)
    sync.sync(current(kube))
    assert reasons(kube) == ["Launched", "Launched", "MarketSwitched", "Preempted", "Submitted"]
    assert metrics.value("orch_preemptions_total") == 1
    backend.jobs["j1"] = GpuJobStatus("Succeeded", "on-demand", 1.0, 4.0, 4.0, preemptions=1, attempts=2)
    sync.sync(current(kube))
    sync.sync(current(kube))
    assert reasons(kube).count("Succeeded") == 1
    assert current(kube)["status"]["phase"] == "Succeeded" and current(kube)["status"]["cost"] == "$4.00"


def test_a_job_the_backend_lost_is_submitted_again(kube: KubeFake) -> None:
    sync, backend, _ = setup(kube)
    sync.sync(current(kube))
    backend.jobs.clear()
    sync.sync(current(kube))
    assert len(backend.submits) == 2 and current(kube)["status"]["jobId"] == "j2"


def test_a_spec_change_after_submission_is_reported(kube: KubeFake) -> None:
    sync, backend, _ = setup(kube)
    sync.sync(current(kube))
    kube.update(CRD, "gpujobs", "lab", "fold", {"spec": {"schedule": {"estimated_hours": 9}}})
    sync.sync(current(kube))
    st = current(kube)["status"]
    assert st["observedGeneration"] == 1 and "spec changed after submission (generation 2)" in st["message"]
    assert len(backend.submits) == 1


def test_deletion_waits_for_live_attempts(kube: KubeFake) -> None:
    sync, backend, _ = setup(kube)
    sync.sync(current(kube))
    backend.jobs["j1"] = GpuJobStatus("Running", "spot", live_attempts=1, attempts=1)
    client.CustomObjectsApi(client.ApiClient(client.Configuration(host=kube.url))).delete_namespaced_custom_object(
        "orch.dev", "v1alpha1", "lab", "gpujobs", "fold")
    sync.sync(current(kube))
    assert backend.cancelled == ["j1"] and current(kube)["status"]["phase"] == "Terminating"
    backend.jobs["j1"] = GpuJobStatus("Cancelled", "spot", live_attempts=0, attempts=1)
    sync.sync(current(kube))
    assert kube.find(CRD, "gpujobs", "lab", "fold") is None


def test_submit_a_job_file_as_a_gpujob(kube: KubeFake) -> None:
    text = 'name = "fold"\ncommand = ["python", "f.py"]\n[schedule]\nestimated_hours = 2\n'
    manifest = gpujob_from_toml(text, source="job.toml", namespace="lab")
    api = client.ApiClient(client.Configuration(host=kube.url))
    created = create_gpujob(api, manifest)
    assert created["metadata"]["uid"] and kube.find(CRD, "gpujobs", "lab", "fold") is not None
    with pytest.raises(KubeError) as err:
        create_gpujob(api, manifest)
    assert err.value.code == 409 and err.value.reason == "AlreadyExists"
