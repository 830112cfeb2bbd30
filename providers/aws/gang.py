"""A gang on EC2: one `RunInstances` of `MinCount = MaxCount = N` in a cluster placement group.

EC2 launches all N or none for such a request, so the gang is all or nothing by the cloud's own rule;
the cluster placement group puts the nodes on one low-latency network segment of one zone. The group
is named after the attempt (created idempotently, tagged like the nodes) and deleted once the gang's
nodes are gone (`release_gang`); EC2 refuses to delete a group still in use, which is the answer "not
yet". Every node boots from the same user data: its rank is its `AmiLaunchIndex` (0..N-1), which the
agent reads from the instance metadata and the listing reads from `DescribeInstances`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from providers.aws.errors import error_code
from providers.aws.launch import TAG_ATTEMPT, TAG_MANAGED, TAG_NODES, attempt_tags
from vocab import LaunchRequest

# One RunInstances of this many nodes at most (the spec's own limit is 128 nodes).
MAX_GANG_NODES = 128
GROUP_PREFIX = "orch-gang-"


def group_name(attempt_id: str) -> str:
    """The attempt's placement group: stable across retries, within EC2's 255 characters."""
    return GROUP_PREFIX + hashlib.sha256(attempt_id.encode()).hexdigest()[:32]


def ensure_group(ec2: Any, request: LaunchRequest, extra_tags: Mapping[str, str]) -> str:
    """Create the attempt's cluster placement group unless it exists (a retried launch)."""
    name = group_name(request.attempt_id)
    tags = [{"Key": k, "Value": v} for k, v in attempt_tags(request, extra_tags).items()]
    try:
        ec2.create_placement_group(GroupName=name, Strategy="cluster",
                                   TagSpecifications=[{"ResourceType": "placement-group", "Tags": tags}])
    except ClientError as exc:
        if error_code(exc) != "InvalidPlacementGroup.Duplicate":
            raise
    return name


def delete_group(ec2: Any, attempt_id: str) -> bool:
    """Delete the attempt's placement group: True once it is gone, False while EC2 says it is in use."""
    try:
        ec2.delete_placement_group(GroupName=group_name(attempt_id))
    except ClientError as exc:
        code = error_code(exc)
        if code == "InvalidPlacementGroup.InUse":
            return False
        if code != "InvalidPlacementGroup.Unknown":
            raise
    return True


def gang_params(params: dict[str, Any], request: LaunchRequest, group: str) -> dict[str, Any]:
    """`launch_params` of one node turned into the gang's single request."""
    out = dict(params, MinCount=request.nodes, MaxCount=request.nodes)
    placement = dict(out.get("Placement") or {})
    placement["GroupName"] = group
    out["Placement"] = placement
    nodes_tag = {"Key": TAG_NODES, "Value": str(request.nodes)}
    out["TagSpecifications"] = [{**spec, "Tags": [*spec["Tags"], nodes_tag]} for spec in params["TagSpecifications"]]
    return out


def find_gang(ec2: Any, attempt_id: str) -> list[dict[str, Any]]:
    """The attempt's nodes as EC2 lists them, one per launch index (a live one over an ended one)."""
    reply = ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_ATTEMPT}", "Values": [attempt_id]},
                                            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}])
    found = [i for r in reply.get("Reservations", []) for i in r.get("Instances", [])]
    found.sort(key=lambda i: i.get("State", {}).get("Name") not in ("shutting-down", "terminated"))
    by_rank = {int(i.get("AmiLaunchIndex") or 0): i for i in found}  # live ones sorted last: they win
    return [by_rank[r] for r in sorted(by_rank)]
