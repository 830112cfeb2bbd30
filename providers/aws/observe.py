"""Reading orch's instances back from EC2 and saying why each one ended.

One paginated `describe_instances` per region, filtered on the `orch:managed` tag, lists every orch
instance of every job: the cost of observing does not grow with the number of jobs. Why an instance
ended decides what the reconciler does next (resume elsewhere, count a failure, or nothing), so the
mapping from EC2's state reasons and spot request statuses to `EndReason` is kept here in one table.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from providers.aws.launch import TAG_ATTEMPT, TAG_JOB, TAG_MANAGED, TAG_NODES, TAG_TASK
from vocab import EndReason, Instance, InstanceState, Market

PROVIDER = "aws"
MANAGED_FILTER = {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}

STATES = {
    "pending": InstanceState.PENDING,
    "running": InstanceState.RUNNING,
    "shutting-down": InstanceState.STOPPING,
    "stopping": InstanceState.STOPPING,
    "stopped": InstanceState.TERMINATED,
    "terminated": InstanceState.TERMINATED,
}
SPOT_TERMINATION = "Server.SpotInstanceTermination"
# Spot request statuses that mean EC2 took the capacity back (the `*-by-user` ones mean a person did).
PREEMPTING_SPOT_STATUSES = frozenset(
    {
        "instance-terminated-by-price",
        "instance-terminated-no-capacity",
        "instance-terminated-capacity-oversubscribed",
        "instance-terminated-launch-group-constraint",
        "instance-stopped-by-price",
        "instance-stopped-no-capacity",
        "instance-stopped-capacity-oversubscribed",
        "marked-for-termination",
        "marked-for-stop",
    }
)
USER_INITIATED = frozenset({"Client.UserInitiatedShutdown", "Client.UserInitiatedHibernate"})
# The instance never ran the job: its volumes or capacity were not there at boot.
FAILED_TO_START = frozenset(
    {
        "Server.InsufficientInstanceCapacity",
        "Server.InternalError",
        "Client.VolumeLimitExceeded",
        "Client.InternalError",
        "Client.InvalidSnapshot.NotFound",
    }
)
_STAMP = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")


def describe_managed(ec2: Any, page_size: int) -> list[dict[str, Any]]:
    """Every orch-managed instance of the client's region, all pages of one listing."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[MANAGED_FILTER], PaginationConfig={"PageSize": page_size}
    )
    return [inst for page in pages for res in page.get("Reservations", []) for inst in res.get("Instances", [])]


def spot_request_ids_to_check(raws: Iterable[Mapping[str, Any]]) -> list[str]:
    """Spot requests whose status may explain an ended instance that EC2's state reason does not."""
    out = []
    for raw in raws:
        state = raw.get("State", {}).get("Name", "")
        reason = raw.get("StateReason", {}).get("Code", "")
        request_id = raw.get("SpotInstanceRequestId")
        if request_id and state in ("stopped", "terminated", "shutting-down") and reason != SPOT_TERMINATION:
            out.append(str(request_id))
    return out


def spot_request_statuses(ec2: Any, request_ids: list[str]) -> dict[str, str]:
    """Spot request id -> status code; requests EC2 has already forgotten are simply absent."""
    if not request_ids:
        return {}
    pages = ec2.get_paginator("describe_spot_instance_requests").paginate(
        Filters=[{"Name": "spot-instance-request-id", "Values": request_ids}]
    )
    return {
        str(req["SpotInstanceRequestId"]): str(req.get("Status", {}).get("Code", ""))
        for page in pages
        for req in page.get("SpotInstanceRequests", [])
    }


def end_reason(state: str, reason_code: str, spot_status: str | None) -> EndReason | None:
    """Why an instance ended; None while it has not (pending, running)."""
    if state in ("pending", "running"):
        return None
    if reason_code == SPOT_TERMINATION or (spot_status or "") in PREEMPTING_SPOT_STATUSES:
        return EndReason.PREEMPTED
    if state in ("stopping", "shutting-down") and not reason_code:
        return None  # on its way down, reason not yet known
    if reason_code in USER_INITIATED:
        return EndReason.TERMINATED
    if reason_code in FAILED_TO_START:
        return EndReason.FAILED_TO_START
    # The job ended by itself (the agent shut the instance down); its exit code is in the heartbeat.
    return EndReason.EXITED


def tags_of(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in raw.get("Tags", []) or []}


def ended_at(transition_reason: str) -> float | None:
    """EC2 says when an instance stopped only inside a sentence: 'User initiated (2026-… GMT)'."""
    match = _STAMP.search(transition_reason or "")
    if not match:
        return None
    return dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp()


def to_instance(raw: Mapping[str, Any], region: str, spot_statuses: Mapping[str, str]) -> Instance:
    tags = tags_of(raw)
    state_name = str(raw.get("State", {}).get("Name", ""))
    reason_code = str((raw.get("StateReason") or {}).get("Code", "") or "")
    spot_status = spot_statuses.get(str(raw.get("SpotInstanceRequestId") or ""))
    launched = raw.get("LaunchTime")
    state = STATES.get(state_name, InstanceState.TERMINATED)
    return Instance(
        provider=PROVIDER,
        region=region,
        zone=(raw.get("Placement") or {}).get("AvailabilityZone"),
        instance_id=str(raw["InstanceId"]),
        instance_type=str(raw.get("InstanceType", "")),
        market=Market.SPOT if raw.get("InstanceLifecycle") == "spot" else Market.ON_DEMAND,
        state=state,
        attempt_id=tags.get(TAG_ATTEMPT),
        job_id=tags.get(TAG_JOB),
        task_id=tags.get(TAG_TASK),
        launched_at=launched.timestamp() if isinstance(launched, dt.datetime) else None,
        ended_at=ended_at(str(raw.get("StateTransitionReason", ""))) if state is InstanceState.TERMINATED else None,
        exit_code=None,
        reason=end_reason(state_name, reason_code, spot_status),
        node_rank=int(raw.get("AmiLaunchIndex") or 0) if TAG_NODES in tags else 0,
    )
