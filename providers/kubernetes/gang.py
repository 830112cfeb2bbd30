"""A gang in a cluster: N pods that run together or not at all.

Where the cluster serves the scheduler-plugins coscheduling API (`PodGroup`, scheduling.x-k8s.io/
v1alpha1), the gang is a PodGroup with `minMember = N` and N pods labelled with it: the coscheduling
plugin binds all of them or none. Elsewhere nothing in the cluster knows the pods belong together, so
orch enforces it: N plain pods, and if they are not all bound to nodes within `gang_bind_timeout_s`
of their creation, every one of them is deleted (`overdue_gangs`), so no half-gang holds GPUs waiting
for nodes that will not come. Pure functions here; the provider makes the calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.kubernetes.pods import (
    ANN_ATTEMPT,
    LABEL_MANAGED,
    LABEL_NODES,
    LABEL_RANK,
    dns_name,
    label_value,
    ts,
)
from vocab import LaunchRequest

PODGROUP_GROUP, PODGROUP_VERSION, PODGROUP_PLURAL = "scheduling.x-k8s.io", "v1alpha1", "podgroups"
LABEL_POD_GROUP = "scheduling.x-k8s.io/pod-group"  # what the coscheduling plugin reads on a pod
MAX_GANG_NODES = 128


def group_name(attempt_id: str) -> str:
    return dns_name("orch-", attempt_id)


def gang_pod_name(attempt_id: str, rank: int) -> str:
    return f"{dns_name('orch-', attempt_id, limit=57)}-r{rank}"


def podgroup_manifest(request: LaunchRequest, schedule_timeout_s: float) -> dict[str, Any]:
    """The PodGroup the coscheduling plugin admits the gang by: all `nodes` pods or none."""
    return {
        "apiVersion": f"{PODGROUP_GROUP}/{PODGROUP_VERSION}", "kind": "PodGroup",
        "metadata": {"name": group_name(request.attempt_id),
                     "labels": {LABEL_MANAGED: "true", "orch.dev/attempt": label_value(request.attempt_id)},
                     "annotations": {ANN_ATTEMPT: request.attempt_id}},
        "spec": {"minMember": request.nodes, "scheduleTimeoutSeconds": int(schedule_timeout_s)},
    }


def as_gang_pod(pod: dict[str, Any], request: LaunchRequest, rank: int, *, pod_group: str | None,
                scheduler_name: str | None) -> dict[str, Any]:
    """One node's pod: its own name and rank label, the gang's size, and the PodGroup's label."""
    meta = pod["metadata"]
    meta["name"] = gang_pod_name(request.attempt_id, rank)
    meta["labels"] = {**meta["labels"], LABEL_RANK: str(rank), LABEL_NODES: str(request.nodes)}
    if pod_group is not None:
        meta["labels"][LABEL_POD_GROUP] = pod_group
        if scheduler_name:
            pod["spec"]["schedulerName"] = scheduler_name
    return pod


def overdue_gangs(pods: Sequence[Mapping[str, Any]], *, now: float, timeout_s: float) -> dict[str, list[str]]:
    """Gangs without a PodGroup whose pods are not all bound `timeout_s` after the first was created:
    attempt id -> the names of its pods still there (to delete, all of them)."""
    gangs: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if LABEL_NODES not in labels or LABEL_POD_GROUP in labels or meta.get("deletionTimestamp"):
            continue
        gangs.setdefault(str((meta.get("annotations") or {}).get(ANN_ATTEMPT)), []).append(pod)
    out: dict[str, list[str]] = {}
    for attempt, members in gangs.items():
        nodes = int((members[0].get("metadata") or {}).get("labels", {}).get(LABEL_NODES, "0") or 0)
        bound = sum(1 for p in members if (p.get("spec") or {}).get("nodeName"))
        created = min((ts((p.get("metadata") or {}).get("creationTimestamp")) or now) for p in members)
        if bound < nodes and now - created >= timeout_s:
            out[attempt] = sorted(str((p.get("metadata") or {}).get("name")) for p in members)
    return out
