"""What one `instances.insert` carries: its name, request id, labels, scheduling and startup script.

Idempotency comes from two things derived from the attempt id alone: the `requestId` (GCE wants a
UUID, so uuid5 of the attempt id), which makes GCE answer a retried insert with the first one's
operation, and the instance name, unique per zone, so an insert that slipped past the request id
window fails with 409 alreadyExists instead of making a second instance.

The instance learns its job only through the `startup-script` metadata item: the boot script of
`providers.startup`, which exports the attempt's environment and runs `orch agent` around the job's
command, every value quoted. Credentials are refused outright: an instance gets Google access from
its service account, never from a job. Labels are for filtering and billing and must follow GCE's rules
(lowercase, 63 characters), so the exact ids travel in metadata items too.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

from providers.catalog import InstanceType
from providers.gcp.network import WORKER_TAG
from providers.gcp.settings import GcpSettings
from providers.startup import StartupRules, agent_script
from vocab import LaunchRequest, Market, PermanentError

PROVIDER = "gcp"
LABEL_MANAGED, LABEL_JOB, LABEL_TASK, LABEL_ATTEMPT = "orch-managed", "orch-job", "orch-task", "orch-attempt"
# Metadata keys holding the exact ids (labels may have had to shorten or lowercase them).
META_JOB, META_TASK, META_ATTEMPT, META_TYPE = "orch-job-id", "orch-task-id", "orch-attempt-id", "orch-instance-type"
STARTUP_SCRIPT = "startup-script"
METADATA_VALUE_LIMIT = 256 * 1024  # bytes per metadata value
GCE_GRACE_SECONDS = 30.0  # between the preemption notice and the hard stop
# A namespace of our own, so request ids never collide with another tool's uuid5 of the same string.
REQUEST_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/orch/orch/gce-request-id")
CREDENTIAL_VARIABLES = frozenset(
    {
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        "GOOGLE_API_KEY",
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
        "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    }
)
STARTUP = StartupRules(
    provider=PROVIDER,
    cloud="GCP",
    credential_variables=CREDENTIAL_VARIABLES,
    credentials_advice="credentials are never passed to instances; "
    "grant access to the service account named in the GCP settings",
    script_name="startup script",
    size_limit=METADATA_VALUE_LIMIT,
    limit_owner="GCE",
    too_large_code="StartupScriptTooLarge",
)
# N1 machines get their GPU attached; the catalog names them "<machine type>-<gpu>".
N1_ACCELERATORS = {
    "T4": "nvidia-tesla-t4",
    "V100": "nvidia-tesla-v100",
    "P100": "nvidia-tesla-p100",
    "P4": "nvidia-tesla-p4",
    "K80": "nvidia-tesla-k80",
}
_LABEL_BAD = re.compile(r"[^a-z0-9_-]")


def instance_name(attempt_id: str) -> str:
    """A valid GCE name that only this attempt maps to: 'orch-' and 20 hex digits of its sha256."""
    return "orch-" + hashlib.sha256(attempt_id.encode()).hexdigest()[:20]


def request_id(attempt_id: str) -> str:
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, attempt_id))


def label_value(value: str) -> str:
    """`value` made a legal label value; a shortened one ends in a digest so it stays distinct."""
    clean = _LABEL_BAD.sub("-", value.lower())
    if clean == value and len(clean) <= 63:
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{clean[:54]}-{digest}"


def attempt_labels(request: LaunchRequest, extra: Mapping[str, str]) -> dict[str, str]:
    return {
        **extra,
        LABEL_MANAGED: "true",
        LABEL_JOB: label_value(request.job_id),
        LABEL_TASK: label_value(request.task_id),
        LABEL_ATTEMPT: label_value(request.attempt_id),
    }


def machine_shape(instance_type: InstanceType) -> tuple[str, list[dict[str, Any]]]:
    """GCE machine type and attached accelerators of a catalog type (A2, A3, G2 carry theirs built in)."""
    name = instance_type.name
    if name.startswith("n1-"):
        accelerator = N1_ACCELERATORS.get(instance_type.gpu.upper())
        suffix = f"-{instance_type.gpu.lower()}"
        if accelerator is None or not name.endswith(suffix):
            raise PermanentError(f"catalog type {name!r}: cannot tell its N1 GPU", provider=PROVIDER)
        return name[: -len(suffix)], [{"accelerator": accelerator, "count": instance_type.gpu_count}]
    return name, []


def startup_script(request: LaunchRequest, settings: GcpSettings) -> str:
    """The boot script; the agent polls the metadata server and gets at most GCE's 30 s of grace.
    With `shutdown_on_exit` it ends in a shutdown: a stopped instance bills its disk, not the GPU."""
    return agent_script(
        request,
        STARTUP,
        agent_command=settings.agent_command,
        notice_source=("--gce-metadata", settings.metadata_url),
        grace_seconds=min(request.grace_seconds, GCE_GRACE_SECONDS),
        shutdown_on_exit=settings.shutdown_on_exit,
    )


def scheduling(market: Market) -> dict[str, Any]:
    """SPOT instances are deleted when reclaimed; neither kind restarts by itself.

    An automatic restart would run the job a second time beside the attempt orch already started
    to replace it, so GCE is told never to restart; GPUs also require TERMINATE on host maintenance.
    """
    out: dict[str, Any] = {"on_host_maintenance": "TERMINATE", "automatic_restart": False}
    if market is Market.SPOT:
        out.update(provisioning_model="SPOT", instance_termination_action="DELETE")
    else:
        out["provisioning_model"] = "STANDARD"
    return out


def instance_body(request: LaunchRequest, settings: GcpSettings, instance_type: InstanceType) -> dict[str, Any]:
    """The Instance resource (field names of `compute_v1.Instance`) for one attempt."""
    offer = request.offer
    zone = offer.zone
    if not zone:
        raise PermanentError(f"offer {offer.key} has no zone: GCE instances live in a zone", provider=PROVIDER)
    machine, accelerators = machine_shape(instance_type)
    region = settings.region(offer.region)
    interface: dict[str, Any] = {"network": settings.network}
    if region.subnetwork:
        interface["subnetwork"] = region.subnetwork
    if settings.external_ip:
        interface["access_configs"] = [{"name": "external-nat", "type_": "ONE_TO_ONE_NAT"}]
    body: dict[str, Any] = {
        "name": instance_name(request.attempt_id),
        "machine_type": f"zones/{zone}/machineTypes/{machine}",
        "labels": attempt_labels(request, settings.labels),
        "scheduling": scheduling(offer.market),
        "disks": [
            {
                "boot": True,
                "auto_delete": True,
                "initialize_params": {
                    "source_image": settings.image,
                    "disk_size_gb": settings.boot_disk_gb,
                    "disk_type": f"zones/{zone}/diskTypes/{settings.boot_disk_type}",
                    "labels": {LABEL_MANAGED: "true"},
                },
            }
        ],
        "network_interfaces": [interface],
        "metadata": {
            "items": [
                {"key": STARTUP_SCRIPT, "value": startup_script(request, settings)},
                {"key": META_JOB, "value": request.job_id},
                {"key": META_TASK, "value": request.task_id},
                {"key": META_ATTEMPT, "value": request.attempt_id},
                {"key": META_TYPE, "value": instance_type.name},
            ]
        },
    }
    if accelerators:
        body["guest_accelerators"] = [
            {"accelerator_type": f"zones/{zone}/acceleratorTypes/{a['accelerator']}", "accelerator_count": a["count"]}
            for a in accelerators
        ]
    if settings.item_service is not None:  # the firewall rule admits the item service's port from this tag only
        body["tags"] = {"items": [WORKER_TAG]}
    if settings.service_account:
        body["service_accounts"] = [{"email": settings.service_account, "scopes": list(settings.scopes)}]
    return body
