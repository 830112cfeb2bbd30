"""A gang on Compute Engine: one `instances.bulkInsert` with `minCount = count = N` in one zone, under a
compact placement resource policy.

With `minCount` equal to `count` GCE creates all N VMs or none, by its own rule; the compact (COLLOCATED)
policy puts them close together on the network. The policy is regional, named after the attempt
(created idempotently) and deleted once the gang's VMs are gone (`release_gang`); GCE refuses to delete
a policy a VM still uses, which is the answer "not yet". Every VM gets the same properties, startup
script included, and its own name `<attempt's instance name>-r<rank>` (`perInstanceProperties`): the
agent reads its rank from that name in the metadata server, the listing from the VM's name.
"""

from __future__ import annotations

import hashlib
from typing import Any

from providers.catalog import InstanceType
from providers.gcp.launch import instance_body, instance_name
from providers.gcp.settings import GcpSettings
from vocab import LaunchRequest

MAX_GANG_NODES = 128
LABEL_NODES = "orch-nodes"  # on a gang's VMs: the gang's size
RANK_SUFFIX = "-r"


def policy_name(attempt_id: str) -> str:
    return "orch-gang-" + hashlib.sha256(attempt_id.encode()).hexdigest()[:20]


def node_name(attempt_id: str, rank: int) -> str:
    return f"{instance_name(attempt_id)}{RANK_SUFFIX}{rank}"


def rank_of(name: str) -> int:
    """The rank a gang VM's name carries (0 for a name without one)."""
    _, sep, rank = name.rpartition(RANK_SUFFIX)
    return int(rank) if sep and rank.isdigit() else 0


def policy_body(request: LaunchRequest) -> dict[str, Any]:
    """The compact placement policy (field names of `compute_v1.ResourcePolicy`) for the gang's N VMs."""
    return {
        "name": policy_name(request.attempt_id),
        "description": f"orch gang of attempt {request.attempt_id} ({request.nodes} nodes)",
        "group_placement_policy": {"collocation": "COLLOCATED", "vm_count": request.nodes},
    }


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def bulk_body(request: LaunchRequest, settings: GcpSettings, itype: InstanceType, policy_url: str) -> dict[str, Any]:
    """The `BulkInsertInstanceResource` for the gang: one VM's properties, N names, all or nothing.

    `instanceProperties` take short names (`a2-highgpu-1g`, not `zones/…/machineTypes/…`): the zone is
    the bulk request's own."""
    props = {k: v for k, v in instance_body(request, settings, itype).items() if k != "name"}
    props["machine_type"] = _short(props["machine_type"])
    for disk in props["disks"]:
        disk["initialize_params"]["disk_type"] = _short(disk["initialize_params"]["disk_type"])
    for accelerator in props.get("guest_accelerators", []):
        accelerator["accelerator_type"] = _short(accelerator["accelerator_type"])
    props["labels"] = {**props["labels"], LABEL_NODES: str(request.nodes)}
    props["resource_policies"] = [policy_url]
    names = [node_name(request.attempt_id, rank) for rank in range(request.nodes)]
    return {"count": request.nodes, "min_count": request.nodes, "instance_properties": props,
            "per_instance_properties": {name: {"name": name} for name in names}}
