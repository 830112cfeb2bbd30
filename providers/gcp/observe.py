"""Reading orch's instances back from GCE and saying why each one ended.

One paginated `instances.aggregatedList` per call, filtered on the `orch-managed` label, lists every
orch instance of every zone of the project: observing costs the same for one job or a thousand.

Preemption is the part GCE makes indirect. A SPOT instance orch starts is deleted when reclaimed
(`instanceTerminationAction = DELETE`), so it may simply be gone from the next listing. What stays is
the zone operation GCE records when it reclaims capacity, `operationType = compute.instances.preempted`,
whose `targetLink` names the instance. So an ended or vanished SPOT instance is looked up among its
zone's preemption operations (one `zoneOperations.list` per zone that has such an instance, none in
a quiet tick). Without such an operation an ended instance stopped itself (the agent shuts it down
when the job exits) and its exit code is in the job's heartbeat.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from providers.gcp.gang import LABEL_NODES, rank_of
from providers.gcp.launch import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_MANAGED,
    LABEL_TASK,
    META_ATTEMPT,
    META_JOB,
    META_TASK,
    META_TYPE,
)
from vocab import EndReason, Instance, InstanceState, Market

PROVIDER = "gcp"
MANAGED_FILTER = f'labels.{LABEL_MANAGED} = "true"'
PREEMPTED_OPERATION = "compute.instances.preempted"
PREEMPTED_FILTER = f'operationType = "{PREEMPTED_OPERATION}"'

STATES = {
    "PROVISIONING": InstanceState.PENDING,
    "STAGING": InstanceState.PENDING,
    "RUNNING": InstanceState.RUNNING,
    "REPAIRING": InstanceState.RUNNING,  # GCE is fixing the host; the instance comes back by itself
    "PENDING_STOP": InstanceState.STOPPING,
    "STOPPING": InstanceState.STOPPING,
    "SUSPENDING": InstanceState.STOPPING,
    "STOPPED": InstanceState.TERMINATED,
    "SUSPENDED": InstanceState.TERMINATED,
    "TERMINATED": InstanceState.TERMINATED,
}


def basename(link: str) -> str:
    """The last path segment of a GCE resource link ('.../zones/us-central1-a' -> 'us-central1-a')."""
    return link.rstrip("/").rsplit("/", 1)[-1]


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def list_managed(client: Any, project: str, page_size: int, timeout: float) -> list[Any]:
    """Every orch-managed instance of the project: all pages of one aggregated listing."""
    from google.cloud import compute_v1

    request = compute_v1.AggregatedListInstancesRequest(
        project=project, filter=MANAGED_FILTER, max_results=page_size
    )
    pager = client.aggregated_list(request=request, retry=None, timeout=timeout)
    return [inst for _, scoped in pager for inst in scoped.instances]


def preempted_names(client: Any, project: str, zone: str, timeout: float) -> dict[str, float | None]:
    """Instance name -> when GCE reclaimed it, for the zone's recorded preemptions (all pages)."""
    from google.cloud import compute_v1

    request = compute_v1.ListZoneOperationsRequest(project=project, zone=zone, filter=PREEMPTED_FILTER)
    out: dict[str, float | None] = {}
    for op in client.list(request=request, retry=None, timeout=timeout):
        if op.operation_type == PREEMPTED_OPERATION and op.target_link:  # the filter is trusted, not relied on
            out[basename(op.target_link)] = timestamp(op.end_time or op.insert_time)
    return out


def timestamp(value: str) -> float | None:
    """GCE's RFC 3339 times ('2026-11-01T12:00:00.000-07:00') as epoch seconds; None if unreadable."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def metadata_of(raw: Any) -> dict[str, str]:
    return {str(item.key): str(item.value) for item in raw.metadata.items} if raw.metadata else {}


def is_spot(raw: Any) -> bool:
    return bool(raw.scheduling and (raw.scheduling.provisioning_model == "SPOT" or raw.scheduling.preemptible))


def needs_preemption_check(raw: Any) -> bool:
    """A SPOT instance that is no longer alive may have been reclaimed: its zone's operations say."""
    return is_spot(raw) and STATES.get(raw.status, InstanceState.TERMINATED) not in (
        InstanceState.PENDING,
        InstanceState.RUNNING,
    )


def end_reason(state: InstanceState, preempted: bool) -> EndReason | None:
    """Why an instance ended; None while it has not, or while it stops for a reason not yet known."""
    if preempted:
        return EndReason.PREEMPTED
    if state is InstanceState.TERMINATED:
        # The agent stopped the instance when the job exited; the exit code is in the heartbeat.
        return EndReason.EXITED
    return None


def to_instance(raw: Any, preemptions: Mapping[str, float | None]) -> Instance:
    """One GCE instance as orch sees it; `preemptions` are the reclaimed names of its zone."""
    meta = metadata_of(raw)
    labels = dict(raw.labels)
    zone = basename(raw.zone)
    state = STATES.get(raw.status, InstanceState.TERMINATED)
    preempted = raw.name in preemptions
    ended = preemptions.get(raw.name) if preempted else None
    if state is InstanceState.TERMINATED and ended is None:
        ended = timestamp(raw.last_stop_timestamp)
    return Instance(
        provider=PROVIDER,
        region=region_of(zone),
        zone=zone,
        instance_id=str(raw.name),
        instance_type=meta.get(META_TYPE) or basename(raw.machine_type),
        market=Market.SPOT if is_spot(raw) else Market.ON_DEMAND,
        state=InstanceState.TERMINATED if preempted and state is InstanceState.STOPPING else state,
        attempt_id=meta.get(META_ATTEMPT) or labels.get(LABEL_ATTEMPT),
        job_id=meta.get(META_JOB) or labels.get(LABEL_JOB),
        task_id=meta.get(META_TASK) or labels.get(LABEL_TASK),
        launched_at=timestamp(raw.creation_timestamp),
        ended_at=ended if state is not InstanceState.RUNNING else None,
        exit_code=None,
        reason=end_reason(state, preempted),
        node_rank=rank_of(str(raw.name)) if LABEL_NODES in labels else 0,
    )


def vanished_preempted(remembered: Instance, ended_at: float | None) -> Instance:
    """A reclaimed SPOT instance GCE has already deleted, rebuilt from what orch last saw of it."""
    return replace(remembered, state=InstanceState.TERMINATED, ended_at=ended_at, reason=EndReason.PREEMPTED)


def zones_to_check(raws: Iterable[Any], vanished: Iterable[Instance]) -> set[str]:
    zones = {basename(raw.zone) for raw in raws if needs_preemption_check(raw)}
    zones |= {inst.zone for inst in vanished if inst.zone and inst.market is Market.SPOT}
    return zones
