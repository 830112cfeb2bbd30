"""Kubelets and a cloud's node pools, simulated against a real API server.

The real control plane has no kubelet and no controller-manager, so this plays what they would do,
and nothing more: GPU nodes appear (labels of a Karpenter, GKE or EKS pool, `nvidia.com/gpu` capacity,
the GPU taint); a pod the real scheduler bound to one of them starts running; a pod being deleted on a
live node is stopped and removed as a kubelet would; tests end pods and take nodes back on demand.
Everything else (binding, admission, finalizers, watches, status subresources) is the server's own.

It polls instead of watching, so an API-server restart costs it nothing; every write is retried by
the next poll, and a failed one is only logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
GPU = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
# Node labels per placement preset and market (what providers/kubernetes/pods.py selects on).
POOL_LABELS: dict[str, dict[str, dict[str, str]]] = {
    "karpenter": {"spot": {"karpenter.sh/capacity-type": "spot"},
                  "on-demand": {"karpenter.sh/capacity-type": "on-demand"}},
    "eks": {"spot": {"eks.amazonaws.com/capacityType": "SPOT"},
            "on-demand": {"eks.amazonaws.com/capacityType": "ON_DEMAND"}},
    "gke": {"spot": {"cloud.google.com/gke-spot": "true"}, "on-demand": {}},
}
NOTICE_TAINT = "karpenter.sh/disrupted"  # what Karpenter puts on a node it is about to take back


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeSim:
    """Nodes it made and the pods on them, in `namespaces`. `start()` runs the kubelet loop on a thread."""

    def __init__(self, api_client: ApiClient, namespaces: tuple[str, ...], *, period_s: float = 0.1) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespaces = namespaces
        self.period_s = period_s
        self.nodes: set[str] = set()
        self.held: set[str] = set()  # pods left Pending although bound (an image pull that takes long)
        self.slow_stop: set[str] = set()  # pods that use their whole grace period (saving a checkpoint)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()  # one writer of pod status at a time: the kubelet round or a test

    # --- the cloud's side ---------------------------------------------------------------------

    def add_node(self, name: str, *, instance_type: str = "p3.2xlarge", market: str = "spot", gpus: int = 1,
                 preset: str = "karpenter", zone: str = "zone-a") -> None:
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                  "node.kubernetes.io/instance-type": instance_type, "topology.kubernetes.io/zone": zone,
                  **POOL_LABELS[preset][market]}
        taints = [GPU_TAINT]
        if preset == "gke" and market == "spot":
            taints.append({"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"})
        self.core.create_node({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
        self.nodes.add(name)
        capacity = {"cpu": "8", "memory": "61Gi", "pods": "110", GPU: str(gpus)}
        status = {"capacity": capacity, "allocatable": capacity,
                  "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                  "lastHeartbeatTime": now_iso(), "lastTransitionTime": now_iso()}],
                  "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                  "nodeInfo": {"kubeletVersion": "v1.20.2", "architecture": "amd64", "operatingSystem": "linux",
                               "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "",
                               "kubeProxyVersion": "", "machineID": "", "osImage": "", "systemUUID": ""}}
        self.core.patch_node_status(name, {"status": status})
        # The TaintNodesByCondition admission plugin gave the new node `node.kubernetes.io/not-ready`;
        # the node lifecycle controller lifts it once the kubelet reports Ready. That is done here.
        self.core.patch_node(name, {"spec": {"taints": taints}})

    def announce_reclaim(self, node: str) -> None:
        """The notice: the node gets Karpenter's disruption taint before it goes."""
        body = self.core.read_node(node)
        taints = [t.to_dict() for t in body.spec.taints or []]
        taints.append({"key": NOTICE_TAINT, "effect": "NoSchedule"})
        self.core.patch_node(node, {"spec": {"taints": taints}})

    def remove_node(self, node: str) -> None:
        """The cloud takes the machine: the Node object goes. No pod GC runs here (no controller-manager),
        so its pods stay bound to a node that no longer exists, which is what orch must read as lost
        capacity (a real cluster's pod GC later deletes them; the pods' finalizer holds them)."""
        with contextlib.suppress(Exception):
            self.core.delete_node(node, grace_period_seconds=0)
        self.nodes.discard(node)

    def disrupt(self, namespace: str, pod: str, reason: str = "TerminationByKubelet") -> None:
        """The kubelet's graceful node shutdown (or an eviction): DisruptionTarget, then the pod fails."""
        status = {"phase": "Failed", "reason": "Terminated", "message": "node is shutting down",
                  "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": reason,
                                  "lastTransitionTime": now_iso()}],
                  "containerStatuses": [self._terminated(pod, 143, "Error")]}
        with self.lock:  # not in the middle of a kubelet round that read the pod as it was
            self.core.patch_namespaced_pod_status(pod, namespace, {"status": status})

    # --- the kubelet's side -------------------------------------------------------------------

    def finish(self, namespace: str, pod: str, exit_code: int = 0) -> None:
        """The job's process ends with `exit_code`."""
        status = {"phase": "Succeeded" if exit_code == 0 else "Failed",
                  "containerStatuses": [self._terminated(pod, exit_code, "Completed" if exit_code == 0 else "Error")]}
        with self.lock:
            self.core.patch_namespaced_pod_status(pod, namespace, {"status": status})

    @staticmethod
    def _terminated(pod: str, code: int, reason: str) -> dict[str, Any]:
        return {"name": "job", "image": "img", "imageID": "", "ready": False, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": now_iso(),
                                         "finishedAt": now_iso()}}}

    def _run_pod(self, namespace: str, name: str) -> None:
        started = now_iso()
        status = {"phase": "Running", "startTime": started, "hostIP": "10.0.0.1", "podIP": "10.1.0.2",
                  "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started}],
                  "containerStatuses": [{"name": "job", "image": "img", "imageID": "", "ready": True,
                                         "restartCount": 0, "started": True,
                                         "state": {"running": {"startedAt": started}}}]}
        self.core.patch_namespaced_pod_status(name, namespace, {"status": status})

    def _stop_pod(self, namespace: str, pod: Any) -> None:
        """A graceful delete on a live node: the container gets SIGTERM, exits 143, the kubelet removes
        the pod (grace 0). A finalizer still on it keeps the object, as on a real node."""
        name = pod.metadata.name
        if pod.status.phase not in ("Succeeded", "Failed"):
            self.core.patch_namespaced_pod_status(name, namespace, {"status": {
                "phase": "Failed", "containerStatuses": [self._terminated(name, 143, "Error")]}})
        self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def step(self) -> None:
        """One kubelet round over every pod in the namespaces."""
        from kubernetes.client.exceptions import ApiException

        live = {n.metadata.name for n in self.core.list_node().items}
        for ns in self.namespaces:
            for pod in self.core.list_namespaced_pod(ns).items:
                node = pod.spec.node_name
                if not node or node not in live or pod.metadata.name in self.held:
                    continue
                try:
                    if pod.metadata.deletion_timestamp and pod.metadata.deletion_grace_period_seconds != 0:
                        if pod.metadata.name not in self.slow_stop:
                            self._stop_pod(ns, pod)
                    elif pod.status.phase == "Pending" and not pod.metadata.deletion_timestamp:
                        self._run_pod(ns, pod.metadata.name)
                except ApiException as exc:
                    if exc.status not in (404, 409):
                        log.warning("node sim: %s/%s: %s %s", ns, pod.metadata.name, exc.status, exc.reason)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                with self.lock:
                    self.step()
            except Exception as exc:  # the API server may be restarting; the next round retries
                log.info("node sim round failed: %s", exc)

    def start(self) -> NodeSim:
        self._thread = threading.Thread(target=self._loop, name="node-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def cleanup(self) -> None:
        """Remove the nodes it made (the cluster is shared by the session's tests)."""
        for node in list(self.nodes):
            self.remove_node(node)
