"""A campaign GpuJob on the real API server and scheduler, as the chart's ServiceAccount with its RBAC only.

The items come from a ConfigMap in the GpuJob's namespace (read with the chart's `get configmaps`);
the real scheduler binds the worker pods to GPU nodes; the test plays the container runtime: each
pod the node sim has set running gets its container command (the real `orch agent` around
tests/k8s_campaign_worker.py) run as a local process with the pod's env as the API server stored
it, so the items flow over HTTP through the controller's item service with each pod's own token.
One spot node is taken away mid-campaign with its pod's processes killed; its items go back and the
new pod, bound to a new node, finishes. Every item once; no 403 in the audit log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.job.item_records import ItemCounts
from orchestrator.k8s.leader import LeaseSettings
from orchestrator.k8s.run import ControllerProcess, ControllerSettings
from orchestrator.k8s.store_backend import StoreBackend
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import upgrade
from orchestrator.store.item_service import ItemService
from orchestrator.store.item_source import ItemEndpoint
from orchestrator.store.items import ItemStore
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests.kube_fake import KubeFake
from tests.kube_real.chart import (
    apply_rbac,
    delete_cluster_scoped,
    denials,
    find_helm,
    render,
    requests_of,
    service_account_token,
)
from tests.kube_real.cluster import Cluster, kube_required
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import GROUP, PLURAL, VERSION, GpuJobs, eventually, new_namespace, release_namespace
from tests.test_k8s_campaign import _descendants
from vocab import SystemClock

pytestmark = pytest.mark.kube

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"kube-tier-campaign-secret-0123456789"
N = 40


@pytest.fixture
def helm() -> Path:
    found = find_helm()
    if found is None:
        why = "no helm (run `bash .ci/helm.sh`, which unpacks one into .tools/)"
        if kube_required():
            pytest.fail(why)
        pytest.skip(why)
    return found


@pytest.fixture
def watched(cluster: Cluster) -> Iterator[str]:
    name = f"w-{uuid.uuid4().hex[:10]}"
    new_namespace(cluster.api_client(), name)
    yield name
    with contextlib.suppress(Exception):
        release_namespace(cluster.api_client(), name)


class Runtime:
    """The container runtime of the node sim's kubelets: runs each running pod's command locally."""

    def __init__(self, api: Any, namespace: str, nodes: NodeSim) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.ns = namespace
        self.nodes = nodes
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.envs: dict[str, dict[str, str]] = {}
        self.node_of: dict[str, str] = {}
        self.gone: set[str] = set()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Runtime:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for name in list(self.procs):
            self.kill(name)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(Exception), self.lock:
                self._step()

    def _step(self) -> None:
        for pod in self.core.list_namespaced_pod(self.ns).items:
            name = pod.metadata.name
            if name in self.gone:
                continue
            if name not in self.procs and pod.status.phase == "Running" and not pod.metadata.deletion_timestamp:
                container = pod.spec.containers[0]
                env = {e.name: e.value for e in container.env}
                self.envs[name], self.node_of[name] = env, pod.spec.node_name
                self.procs[name] = subprocess.Popen(container.command, cwd=ROOT, start_new_session=True,
                                                    env={**env, "PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})
                continue
            proc = self.procs.get(name)
            if proc is not None and pod.status.phase == "Running":
                if pod.metadata.deletion_timestamp:
                    self.kill(name, signal.SIGTERM)
                code = proc.poll()
                if code is not None:
                    self.nodes.finish(self.ns, name, exit_code=code)
                    self.gone.add(name)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.procs[name]
        for pid in [proc.pid, *_descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig is signal.SIGKILL:
            proc.wait(10)

    def take_node_away(self) -> str:
        """A running pod's spot node goes: its processes die with it and the Node object is deleted."""
        with self.lock:
            name = next(n for n, p in self.procs.items() if p.poll() is None and n not in self.gone)
            self.gone.add(name)
            self.kill(name)
            self.nodes.remove_node(self.node_of[name])
            return name


def test_a_campaign_gpujob_runs_on_real_scheduled_pods_as_the_charts_service_account(
        cluster: Cluster, namespace: str, watched: str, nodes: NodeSim, helm: Path, tmp_path: Path) -> None:
    from kubernetes import client

    admin = cluster.api_client()
    made = list(apply_rbac(admin, render(helm, namespace, {"watchNamespace": watched})))
    user = f"system:serviceaccount:{namespace}:orch"
    api = cluster.api_client(service_account_token(admin, namespace, "orch"))
    engine = make_engine(f"sqlite:///{tmp_path / 'orch.db'}")
    upgrade(engine)
    store = Store(engine)
    provider = KubernetesProvider(api, KubernetesSettings(namespace=namespace, instance_types=("p3.2xlarge",),
                                                          snapshot_ttl_s=0.0,
                                                          agent=(sys.executable, "-m", "orchestrator.job.agent")))
    service = ItemService(store, secret=SECRET, host="127.0.0.1", port=0)
    reconciler = Reconciler(store, {"kubernetes": provider}, SystemClock(), tick_seconds=0.2,
                            item_endpoint=ItemEndpoint(f"http://127.0.0.1:{service.port}", SECRET))
    backend = StoreBackend(store, reconciler, checkpoint_root=(tmp_path / "ckpt").as_uri())
    proc = ControllerProcess(backend, namespace=watched, api_client=api, identity="orch-0", item_service=service,
                             settings=ControllerSettings(
                                 tick_s=0.2, watch_timeout_s=30, relist_s=300.0, health_host="127.0.0.1",
                                 health_port=0, lease=LeaseSettings(name="orch", namespace=namespace, duration_s=4,
                                                                    renew_deadline_s=3.0, retry_period_s=0.3)))
    for n in ("a", "b"):
        nodes.add_node(f"{namespace}-spot-{n}", market="spot")
    client.CoreV1Api(admin).create_namespaced_config_map(watched, {"metadata": {"name": "squares"}, "data": {
        "items.jsonl": "".join(json.dumps({"id": f"n{i}", "n": i}) + "\n" for i in range(N))}})
    wins = tmp_path / "wins"
    jobs = GpuJobs(admin, watched)
    runtime = Runtime(admin, namespace, nodes)
    proc.start()
    thread = threading.Thread(target=proc.run, daemon=True)
    thread.start()
    try:
        runtime.start()
        jobs.create("squares", {"command": [sys.executable, "-m", "tests.k8s_campaign_worker"],
                                "env": {"WINS": str(wins)}, "schedule": {"estimated_hours": 1},
                                "placement": {"providers": ["kubernetes"]},
                                "array": {"workers": 2, "items_from": {"config_map": "squares", "key": "items.jsonl"}}})
        job_id = eventually(lambda: jobs.status("squares").get("jobId"), what="the campaign submitted")
        items = ItemStore(engine)
        eventually(lambda: items.counts(job_id).done >= 5, what="items done over HTTP")
        nodes.add_node(f"{namespace}-spot-c", market="spot")
        runtime.take_node_away()
        eventually(lambda: jobs.status("squares").get("phase") == "Succeeded", timeout=180,
                   what=f"the campaign to finish ({jobs.status('squares')}, {items.counts(job_id)})")
    finally:
        runtime.stop()
        proc.shutdown()
        thread.join(15)
        delete_cluster_scoped(admin, made)
        with contextlib.suppress(Exception):
            GpuJobs(admin, watched).custom.patch_namespaced_custom_object(
                GROUP, VERSION, watched, PLURAL, "squares", {"metadata": {"finalizers": None}})

    assert items.counts(job_id) == ItemCounts(done=N)
    results = list(items.results(job_id))
    assert [r.index for r in results] == list(range(N))
    assert all(json.loads(r.result or "null") == {"square": r.index ** 2} for r in results)
    noted = [int(line.split()[0]) for line in wins.read_text().splitlines()]
    assert len(noted) == len(set(noted)), "an item was committed twice"
    st = jobs.status("squares")
    assert (st["itemsTotal"], st["itemsDone"], st["itemsQuarantined"], st["progressFraction"]) == (N, N, 0, 1.0), st
    assert st["preemptions"] >= 1 and st["attempts"] >= 3, st
    assert len({env["ORCH_ITEMS_TOKEN"] for env in runtime.envs.values()}) == len(runtime.envs) >= 3
    assert all("ORCH_ITEMS_URL" not in env for env in runtime.envs.values())
    seen = requests_of(cluster.audit(), user)
    assert any("configmaps/squares" in r for r in seen), "the controller read the items' ConfigMap"
    assert denials(cluster.audit(), user) == []


def campaign_calls(api: Any, ns: str) -> list[tuple[str, Any]]:
    """The calls a campaign adds (a ConfigMap read, missing and present, data and binaryData; a GpuJob
    whose item_list holds nested objects), and what orch reads of each answer."""
    from kubernetes import client

    from orchestrator.k8s.kube import GpuJobClient

    reader = GpuJobClient(api, ns, component="parity", identity="parity")
    out: list[tuple[str, Any]] = [("missing configmap", reader.config_map(ns, "nope"))]
    client.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {"name": "items"}, "data": {"a.txt": "x\ny\n"},
                                                            "binaryData": {"b.txt": "eg=="}})
    found = reader.config_map(ns, "items")
    out.append(("configmap", None if found is None else (dict(found.data), dict(found.binary_data))))
    entries = [{"id": "a", "nested": {"x": [1, 2.5, None], "s": "t"}}, {"id": 7, "empty": {}}]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "GpuJob", "metadata": {"name": "inline", "namespace": ns},
            "spec": {"command": ["x"], "schedule": {"estimated_hours": 1},
                     "array": {"workers": 2, "item_list": entries}}}
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "inline")
    out.append(("item_list kept whole", stored["spec"]["array"]["item_list"] == entries))
    return out


def test_the_fake_and_the_real_server_agree_on_a_campaigns_calls(cluster: Cluster, namespace: str) -> None:
    from kubernetes import client

    fake = KubeFake().start()
    try:
        mocked = campaign_calls(client.ApiClient(client.Configuration(host=fake.url)), namespace)
    finally:
        fake.stop()
    real = campaign_calls(cluster.api_client(), namespace)
    assert real == mocked
    assert real[0] == ("missing configmap", None) and real[-1] == ("item_list kept whole", True)


def test_the_charts_item_service_objects_pass_the_servers_validation(
        cluster: Cluster, namespace: str, helm: Path) -> None:
    """kubernetes-validate is not always at hand; the API server's own validation (a dry-run create) is
    the stricter check of the Secret, the Service and the Deployment's env and ports."""
    from kubernetes import utils

    docs = {d["kind"]: d for d in render(helm, namespace, {}) if d["kind"] in ("Secret", "Service", "Deployment")
            and d["metadata"]["name"].endswith(("-items", "orch"))}
    assert set(docs) == {"Secret", "Service", "Deployment"}
    secret, service, deployment = docs["Secret"], docs["Service"], docs["Deployment"]
    assert len(secret["data"]["secret"]) >= 64  # 48 random characters, base64
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert service["spec"]["ports"] == [{"name": "items", "port": 8081, "targetPort": "items", "protocol": "TCP"}]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["ORCH_K8S_ITEMS_URL"]["value"] == f"http://orch-items.{namespace}.svc:8081"
    assert env["ORCH_K8S_ITEMS_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "orch-items", "key": "secret"}
    assert {"name": "items", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    for doc in docs.values():
        utils.create_from_dict(cluster.api_client(), doc, dry_run="All")
