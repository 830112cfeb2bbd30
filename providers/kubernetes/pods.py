"""Pods for attempts, and attempts read back from pods: the pure half of the kubernetes provider.

No API calls here: `pod_manifest` builds the dict the provider creates, `read_pod` turns a pod (as the
API serves it, camelCase dict) plus the node list into an `Instance`. Keeping both pure keeps the
rules (placement presets, what counts as a preemption) testable on plain dicts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vocab import EndReason, Instance, InstanceState, LaunchRequest, Market, Notice, NoticeKind

PROVIDER = "kubernetes"
LABEL_MANAGED = "orch.dev/managed"
LABEL_JOB = "orch.dev/job"
LABEL_TASK = "orch.dev/task"
LABEL_ATTEMPT = "orch.dev/attempt"
LABEL_MARKET = "orch.dev/market"
LABEL_RANK = "orch.dev/rank"  # a gang's pods: the node's rank (providers.kubernetes.gang)
LABEL_NODES = "orch.dev/nodes"  # a gang's pods: the gang's size
ANN_ATTEMPT = "orch.dev/attempt-id"  # full ids; label values are cut to 63 characters
ANN_JOB = "orch.dev/job-id"
ANN_TASK = "orch.dev/task-id"
ANN_TYPE = "orch.dev/instance-type"
ANN_STOP = "orch.dev/stop-requested"
# Holds an ended pod until orch has seen how it ended: without it an evicted pod vanishes and a
# preemption would read as a lost instance.
FINALIZER = "orch.dev/attempt-tracking"
CONTAINER = "job"
GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
ZONE_LABEL = "topology.kubernetes.io/zone"
# Seconds beyond the job's grace that the pod keeps, so the agent can write its last heartbeat.
AGENT_MARGIN_S = 10

# Pod status reasons and DisruptionTarget reasons that mean the capacity was taken away.
PREEMPTION_REASONS = frozenset({
    "Evicted", "Preempting", "NodeLost", "Shutdown", "NodeShutdown", "Terminated",
    "DeletionByTaintManager", "DeletionByPodGC", "TerminationByKubelet", "EvictionByEvictionAPI",
    "PreemptionByScheduler",
})
# Node taints that announce a reclamation (Karpenter, GKE, the AWS node termination handler).
RECLAIM_TAINTS = frozenset({
    "karpenter.sh/disrupted", "karpenter.sh/disruption", "cloud.google.com/impending-node-termination",
    "aws-node-termination-handler/spot-itn", "aws-node-termination-handler/rebalance-recommendation",
})
# Container waiting reasons that will not fix themselves.
FATAL_WAITING = frozenset({"InvalidImageName", "CreateContainerConfigError", "ErrImageNeverPull"})

PRESETS = ("karpenter", "gke", "eks", "labels")
_PRESET_LABELS: dict[str, dict[Market, dict[str, str]]] = {
    "karpenter": {Market.SPOT: {"karpenter.sh/capacity-type": "spot"},
                  Market.ON_DEMAND: {"karpenter.sh/capacity-type": "on-demand"}},
    "eks": {Market.SPOT: {"eks.amazonaws.com/capacityType": "SPOT"},
            Market.ON_DEMAND: {"eks.amazonaws.com/capacityType": "ON_DEMAND"}},
    "gke": {Market.SPOT: {"cloud.google.com/gke-spot": "true"}, Market.ON_DEMAND: {}},
}


@dataclass(frozen=True, slots=True)
class Placement:
    """How pods reach spot or on-demand nodes: a preset, or labels the user gives per market."""

    preset: str = "karpenter"
    spot_labels: Mapping[str, str] = field(default_factory=dict)
    on_demand_labels: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()


def dns_name(prefix: str, value: str, limit: int = 63) -> str:
    """A DNS-1123 label from an id; long or mangled ids keep a hash so two never collide."""
    clean = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    name = f"{prefix}{clean}"
    if len(name) <= limit and clean == value:
        return name
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    return dns_name("", value) if value else ""


def pod_name(attempt_id: str) -> str:
    return dns_name("orch-", attempt_id)


def placement_for(market: Market, placement: Placement) -> dict[str, Any]:
    """nodeSelector, affinity and tolerations of one market under one preset."""
    selector: dict[str, str] = {}
    tolerations: list[Mapping[str, Any]] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    affinity: dict[str, Any] | None = None
    if placement.preset == "labels":
        selector.update(placement.spot_labels if market is Market.SPOT else placement.on_demand_labels)
    else:
        selector.update(_PRESET_LABELS[placement.preset][market])
    if placement.preset == "gke" and market is Market.SPOT:
        tolerations.append({"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
                            "effect": "NoSchedule"})
    if placement.preset == "gke" and market is Market.ON_DEMAND:
        # On-demand GKE nodes carry no gke-spot label at all; NotIn matches a missing label too.
        term = {"key": "cloud.google.com/gke-spot", "operator": "NotIn", "values": ["true"]}
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [term]}]}}}
    selector.update(placement.node_selector)
    tolerations.extend(placement.tolerations)
    out: dict[str, Any] = {"nodeSelector": selector, "tolerations": tolerations}
    if affinity:
        out["affinity"] = affinity
    return out


def attempt_env(request: LaunchRequest, rank: int = 0) -> list[dict[str, str]]:
    """The attempt's environment (`LaunchRequest.environment`) as a container's env list."""
    return [{"name": k, "value": v} for k, v in request.environment(rank).items()]


def pod_manifest(request: LaunchRequest, *, image: str, agent: Sequence[str], placement: Placement,
                 with_instance_type: bool, service_account: str | None, rank: int = 0) -> dict[str, Any]:
    """The pod for one attempt (for a gang: for its node `rank`, see `providers.kubernetes.gang`). The
    agent wraps the command; an image-only job runs unwrapped."""
    offer = request.offer
    grace = max(0, math.ceil(request.grace_seconds))
    command = [*agent, "--grace", f"{request.grace_seconds:g}", "--", *request.command] if request.command else None
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": request.image or image,
        "env": attempt_env(request, rank),
        "resources": {"limits": {GPU_RESOURCE: str(offer.gpu_count)},
                      "requests": {GPU_RESOURCE: str(offer.gpu_count)}},
    }
    if command:
        container["command"] = command
    if request.workdir:
        container["workingDir"] = request.workdir
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": grace + AGENT_MARGIN_S,
        "enableServiceLinks": False,
        "containers": [container],
        **placement_for(offer.market, placement),
    }
    if with_instance_type:
        spec["nodeSelector"][INSTANCE_TYPE_LABEL] = offer.instance_type
    if service_account:
        spec["serviceAccountName"] = service_account
    labels = {LABEL_MANAGED: "true", LABEL_JOB: label_value(request.job_id), LABEL_TASK: label_value(request.task_id),
              LABEL_ATTEMPT: label_value(request.attempt_id), LABEL_MARKET: offer.market.value}
    annotations = {ANN_ATTEMPT: request.attempt_id, ANN_JOB: request.job_id, ANN_TASK: request.task_id,
                   ANN_TYPE: offer.instance_type}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name(request.attempt_id), "labels": labels, "annotations": annotations,
                         "finalizers": [FINALIZER]},
            "spec": spec}


# --- reading pods back ---------------------------------------------------------------------------

def ts(value: Any) -> float | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return dict(c)
    return None


# Container termination reasons that mean the runtime could not start the process: nothing ran.
NOT_STARTED = frozenset({"StartError", "ContainerCannotRun"})


def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if c.get("name") == CONTAINER:
            return dict(c.get("state") or {})
    return {}


def started(pod: Mapping[str, Any]) -> bool:
    """Whether the job's container ever started: from then on the pod holds GPUs on a node it is bound to.

    Billing and the "running" state start here, not at creation: a pod waiting for a node (or for
    Karpenter to make one) holds nothing and costs nothing. Phase Running or Succeeded, or a container
    state that is running, or terminated after its process ran (a StartError exit is the runtime's,
    with startedAt at the epoch), says it started; a container can only start on a bound pod.
    """
    if (pod.get("status") or {}).get("phase") in ("Running", "Succeeded"):
        return True
    state = _container(pod)
    if state.get("running"):
        return True
    terminated = state.get("terminated") or {}
    if not terminated or terminated.get("reason") in NOT_STARTED:
        return False
    began = ts(terminated.get("startedAt"))
    return began is None or began > 0


Nodes = Mapping[str, Mapping[str, Any]] | None  # None: the node list is not known (no node-loss check)


def _node_gone(pod: Mapping[str, Any], nodes: Nodes) -> bool:
    node = (pod.get("spec") or {}).get("nodeName")
    return bool(node) and nodes is not None and node not in nodes


def was_preempted(pod: Mapping[str, Any], nodes: Nodes) -> bool:
    if _node_gone(pod, nodes):
        return True
    disruption = _condition(pod, "DisruptionTarget")
    return disruption is not None or (pod.get("status") or {}).get("reason") in PREEMPTION_REASONS


def _state(pod: Mapping[str, Any], nodes: Nodes, now: float,
           schedule_timeout_s: float) -> tuple[InstanceState, EndReason | None, int | None]:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    phase = status.get("phase", "Pending")
    terminated = _container(pod).get("terminated")
    stop_requested = (meta.get("annotations") or {}).get(ANN_STOP) == "true"
    code = terminated.get("exitCode") if terminated else None
    ended = phase in ("Succeeded", "Failed") or terminated is not None or (
        bool(meta.get("deletionTimestamp")) and phase == "Pending")
    if _node_gone(pod, nodes):
        ended = True  # the node is gone and so is everything that ran on it
    if ended and not started(pod):
        # Deleted, stopped, evicted, refused by the kubelet or left without its node before the job
        # ran: nothing ran, so nothing is billed (the loop bills no failed-to-start attempt).
        return InstanceState.TERMINATED, EndReason.FAILED_TO_START, None
    if not ended:
        waiting = (_container(pod).get("waiting") or {}).get("reason")
        created = ts(meta.get("creationTimestamp")) or now
        if phase == "Pending" and (waiting in FATAL_WAITING or now - created > schedule_timeout_s):
            return InstanceState.TERMINATED, EndReason.FAILED_TO_START, None
        if meta.get("deletionTimestamp"):
            return InstanceState.STOPPING, None, None
        return (InstanceState.RUNNING if phase == "Running" else InstanceState.PENDING), None, None
    if stop_requested:
        return InstanceState.TERMINATED, EndReason.TERMINATED, code
    if phase == "Succeeded":
        # Finished: a node reclaimed afterwards (consolidation of an empty node) changes nothing.
        return InstanceState.TERMINATED, EndReason.EXITED, 0 if code is None else code
    disrupted = _condition(pod, "DisruptionTarget") is not None or status.get("reason") in PREEMPTION_REASONS
    if code is not None and not disrupted:
        return InstanceState.TERMINATED, EndReason.EXITED, code  # it ended by itself before any node loss
    if was_preempted(pod, nodes):
        return InstanceState.TERMINATED, EndReason.PREEMPTED, code
    if phase == "Succeeded":
        return InstanceState.TERMINATED, EndReason.EXITED, 0 if code is None else code
    if code is not None:
        return InstanceState.TERMINATED, EndReason.EXITED, code
    return InstanceState.TERMINATED, EndReason.LOST, None


def read_pod(pod: Mapping[str, Any], nodes: Nodes, *, region: str, now: float,
             schedule_timeout_s: float) -> Instance:
    """An `Instance` for one orch pod; the node supplies the real instance type and zone."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    node = (nodes or {}).get(spec.get("nodeName") or "") or {}
    node_labels = (node.get("metadata") or {}).get("labels") or {}
    state, reason, code = _state(pod, nodes, now, schedule_timeout_s)
    terminated = _container(pod).get("terminated") or {}
    ended_at = None
    if state is InstanceState.TERMINATED:
        ended_at = ts(terminated.get("finishedAt")) or ts(meta.get("deletionTimestamp")) or now
    market = Market.ON_DEMAND if labels.get(LABEL_MARKET) == Market.ON_DEMAND.value else Market.SPOT
    return Instance(
        provider=PROVIDER, region=region, zone=node_labels.get(ZONE_LABEL),
        instance_id=str(meta.get("name")), instance_type=node_labels.get(INSTANCE_TYPE_LABEL) or ann.get(ANN_TYPE, ""),
        market=market, state=state, attempt_id=ann.get(ANN_ATTEMPT), job_id=ann.get(ANN_JOB),
        task_id=ann.get(ANN_TASK), launched_at=ts(meta.get("creationTimestamp")), ended_at=ended_at,
        exit_code=code, reason=reason, node_rank=int(labels.get(LABEL_RANK, "0") or 0),
    )


def read_notice(pod: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]], *, now: float) -> Notice | None:
    """An interruption notice for a pod still running whose capacity is being taken back."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed") or (meta.get("annotations") or {}).get(ANN_STOP) == "true":
        return None
    node = nodes.get((pod.get("spec") or {}).get("nodeName") or "") or {}
    taints = {t.get("key") for t in (node.get("spec") or {}).get("taints") or []}
    deleting = ts(meta.get("deletionTimestamp"))
    if _condition(pod, "DisruptionTarget") is None and deleting is None and not taints & RECLAIM_TAINTS:
        return None
    return Notice(provider=PROVIDER, instance_id=str(meta.get("name")),
                  attempt_id=(meta.get("annotations") or {}).get(ANN_ATTEMPT), kind=NoticeKind.INTERRUPTION,
                  at=now, deadline=deleting)
