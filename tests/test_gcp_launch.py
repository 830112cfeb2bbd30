"""What a GCE insert carries, and how Google's errors are classified: pure functions, no server."""

from __future__ import annotations

import shlex
import uuid

import pytest
from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from providers.catalog import load_catalog
from providers.gcp.errors import classify, operation_error, translate
from providers.gcp.launch import (
    META_ATTEMPT,
    STARTUP_SCRIPT,
    instance_body,
    instance_name,
    label_value,
    machine_shape,
    request_id,
)
from providers.gcp.settings import parse_gcp_settings
from vocab import CapacityError, LaunchRequest, Market, Offer, PermanentError, QuotaError, TransientError

SETTINGS = parse_gcp_settings(
    {
        "project": "orch-test",
        "image": "projects/orch-test/global/images/family/orch",
        "regions": ["us-central1"],
        "service_account": "vm@orch-test.iam.gserviceaccount.com",
        "region": {"us-central1": {"subnetwork": "regions/us-central1/subnetworks/orch"}},
    }
)


def offer(instance_type: str = "g2-standard-4", market: Market = Market.SPOT) -> Offer:
    return Offer("gcp", "us-central1", "us-central1-a", instance_type, market, 0.28, "L4", 1, 24.0, "ada", 0.71)


def request(**changes: object) -> LaunchRequest:
    fields: dict[str, object] = {
        "job_id": "Job_One", "task_id": "task-0", "attempt_id": "3f0c6a9e-attempt", "attempt_number": 2,
        "offer": offer(), "command": ("python", "fold.py", "--name", "it's; rm -rf /"),
        "env": {"FOLD_MODEL": "v2 $(reboot)"}, "checkpoint_uri": "gs://ckpt/jobs/one", "grace_seconds": 120.0,
    }
    fields.update(changes)
    return LaunchRequest(**fields)  # type: ignore[arg-type]


def body_for(req: LaunchRequest) -> dict[str, object]:
    itype = load_catalog().get("gcp", req.offer.instance_type)
    assert itype is not None
    return instance_body(req, SETTINGS, itype)


def test_name_and_request_id_depend_on_the_attempt_only() -> None:
    name = instance_name("3f0c6a9e-attempt")
    assert name == instance_name("3f0c6a9e-attempt") != instance_name("3f0c6a9e-attempt2")
    assert name.startswith("orch-") and len(name) <= 63 and name == name.lower()
    rid = request_id("3f0c6a9e-attempt")
    assert uuid.UUID(rid).version == 5 and rid == request_id("3f0c6a9e-attempt")


def test_label_values_follow_gce_rules_and_stay_distinct() -> None:
    assert label_value("task-0") == "task-0"
    long = "Job/" + "x" * 80
    assert len(label_value(long)) <= 63 and label_value(long) != label_value(long + "y")
    assert label_value("Job_One") != "job_one"  # changed values carry a digest, not a lookalike


def test_spot_body_is_deleted_on_reclaim_and_never_restarts() -> None:
    body = body_for(request())
    scheduling = body["scheduling"]
    assert scheduling == {"on_host_maintenance": "TERMINATE", "automatic_restart": False,
                          "provisioning_model": "SPOT", "instance_termination_action": "DELETE"}
    on_demand = body_for(request(offer=offer(market=Market.ON_DEMAND)))["scheduling"]
    assert on_demand["provisioning_model"] == "STANDARD"  # type: ignore[index]
    assert "instance_termination_action" not in on_demand  # type: ignore[operator]
    labels = body["labels"]
    assert labels["orch-managed"] == "true" and labels["orch-task"] == "task-0"  # type: ignore[index]
    assert body["service_accounts"][0]["email"] == "vm@orch-test.iam.gserviceaccount.com"  # type: ignore[index]
    # It is a valid compute_v1 resource, not just a dict that looks like one.
    resource = compute_v1.Instance(body)
    assert resource.network_interfaces[0].subnetwork.endswith("subnetworks/orch")
    assert {i.key: i.value for i in resource.metadata.items}[META_ATTEMPT] == "3f0c6a9e-attempt"


def test_startup_script_quotes_everything_and_runs_the_agent() -> None:
    items = {i["key"]: i["value"] for i in body_for(request())["metadata"]["items"]}  # type: ignore[index]
    script = items[STARTUP_SCRIPT]
    assert "export FOLD_MODEL='v2 $(reboot)'" in script
    assert "export ORCH_ATTEMPT=2" in script and "export ORCH_MARKET=spot" in script
    agent_line = next(line for line in script.splitlines() if line.startswith("orch agent"))
    argv = shlex.split(agent_line)
    assert argv[:6] == ["orch", "agent", "--gce-metadata", "http://metadata.google.internal", "--grace", "30"]
    assert argv[6:] == ["--", "python", "fold.py", "--name", "it's; rm -rf /"]
    assert script.rstrip().endswith("exit $status") and "shutdown -h now" in script


@pytest.mark.parametrize("name", ["GOOGLE_APPLICATION_CREDENTIALS", "aws_secret_access_key"])
def test_credentials_in_the_job_env_are_refused(name: str) -> None:
    with pytest.raises(PermanentError, match="never passed"):
        body_for(request(env={name: "x"}))


def test_n1_types_get_their_gpu_attached() -> None:
    itype = load_catalog().get("gcp", "n1-standard-8-v100")
    assert itype is not None
    assert machine_shape(itype) == ("n1-standard-8", [{"accelerator": "nvidia-tesla-v100", "count": 1}])
    body = body_for(request(offer=offer("n1-standard-8-v100")))
    assert body["machine_type"] == "zones/us-central1-a/machineTypes/n1-standard-8"
    accel = body["guest_accelerators"][0]  # type: ignore[index]
    assert accel["accelerator_type"] == "zones/us-central1-a/acceleratorTypes/nvidia-tesla-v100"


# --- error classification ----------------------------------------------------------------------


def http_error(status: int, reason: str, message: str) -> gexc.GoogleAPICallError:
    error: gexc.GoogleAPICallError = gexc.from_http_status(  # type: ignore[no-untyped-call]
        status, message, errors=[{"reason": reason, "message": message}]
    )
    return error


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (http_error(503, "resourceExhausted", "zone does not have enough resources"), CapacityError),
        (http_error(403, "quotaExceeded", "Quota 'NVIDIA_L4_GPUS' exceeded. Limit: 0.0"), QuotaError),
        (http_error(403, "rateLimitExceeded", "Rate Limit Exceeded"), TransientError),
        (http_error(429, "resourceExhausted", "too many requests"), TransientError),
        (http_error(500, "backendError", "oops"), TransientError),
        (gexc.DeadlineExceeded("slow"), TransientError),  # type: ignore[no-untyped-call]
        (http_error(403, "forbidden", "Required 'compute.instances.create' permission"), PermanentError),
        (http_error(400, "invalid", "Invalid value for field 'resource.machineType'"), PermanentError),
    ],
)
def test_http_errors_are_translated_by_meaning(exc: Exception, kind: type[Exception]) -> None:
    translated = translate(exc, operation="instances.insert", where="orch-test/us-central1-a")
    assert type(translated) is kind
    assert "instances.insert in orch-test/us-central1-a" in str(translated)


def test_operation_errors_are_classified_like_http_ones() -> None:
    op = compute_v1.Operation(
        name="operation-1", status="DONE", http_error_status_code=503,
        error={"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "no L4 left"}]},
    )
    error = operation_error(op, operation="instances.insert", where="z", capacity_retry_after=42.0)
    assert isinstance(error, CapacityError) and error.retry_after == 42.0  # capacity wins over the 503
    assert operation_error(compute_v1.Operation(name="ok", status="DONE"), operation="x", where="z") is None
    quota = classify("x", status=None, codes=["QUOTA_EXCEEDED"], message="", capacity_retry_after=1.0)
    assert isinstance(quota, QuotaError)
