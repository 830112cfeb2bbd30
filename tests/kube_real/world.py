"""The real-server half of the controller tests: the chart's CRD, namespaces, a controller on a thread.

`Controller` is the fake tier's `tests.test_k8s_controller.Running` with the two things a real server
changes: a TLS client with a bearer token, and timings that leave room for a 2-core CI machine (the
fake answers in microseconds, the real server in milliseconds, and it shares the cores with etcd).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestrator.k8s.leader import LeaseSettings
from orchestrator.k8s.run import ControllerProcess, ControllerSettings
from orchestrator.k8s.store_backend import StoreBackend
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import upgrade
from providers.kubernetes.pods import Placement
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from vocab import SystemClock

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "helm" / "orch" / "crds" / "gpujob.yaml"
GROUP, VERSION, PLURAL = "orch.dev", "v1alpha1", "gpujobs"
SPEC = {"command": ["python", "fold.py"], "schedule": {"estimated_hours": 2},
        "placement": {"providers": ["kubernetes"]}}
WAIT_S = 60.0  # generous: a loaded 2-core machine; a passing test returns as soon as the state shows


def eventually(check: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    """Poll until `check()` is truthy; never a timed assert, only an upper bound on waiting."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def chart_crd() -> dict[str, Any]:
    loaded = yaml.safe_load(CRD_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def install_crd(api: ApiClient) -> dict[str, Any]:
    """Apply the chart's CRD and wait until GpuJobs are served; returns the CRD as the server keeps it."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(api)
    body = chart_crd()
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> dict[str, Any] | None:
        crd = api.sanitize_for_serialization(ext.read_custom_resource_definition(body["metadata"]["name"]))
        conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        return crd if conditions.get("Established") == "True" else None

    crd: dict[str, Any] = eventually(established, what="the GpuJob CRD to be established")

    def served() -> bool:
        try:
            client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    eventually(served, what="gpujobs to be served")
    return crd


def new_namespace(api: ApiClient, name: str) -> None:
    """A namespace and its `default` ServiceAccount (no controller-manager here makes one), without a
    token to mount: the ServiceAccount admission plugin stays on, as in a real cluster."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_service_account(name, {"metadata": {"name": "default"},
                                                  "automountServiceAccountToken": False})


def release_namespace(api: ApiClient, namespace: str) -> None:
    """Teardown: drop every finalizer and object a test left (no controller runs any more to do it)."""
    from kubernetes import client

    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    for obj in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL).get("items") or []:
        name = obj["metadata"]["name"]
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                              {"metadata": {"finalizers": None}})
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    for pod in core.list_namespaced_pod(namespace).items:
        core.patch_namespaced_pod(pod.metadata.name, namespace, {"metadata": {"finalizers": None}})
        core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)


class Controller:
    """A ControllerProcess on a thread, as `run_controller` runs it, over a real API server."""

    def __init__(self, api: ApiClient, namespace: str, identity: str, *, store_dir: Path | None = None,
                 backend: StoreBackend | None = None, lease_namespace: str | None = None,
                 lease_name: str = "orch", lease: LeaseSettings | None = None,
                 watch: str | None = "", preset: str = "karpenter") -> None:
        """Pods go to `namespace`; GpuJobs are watched there (`watch` ""), in another namespace, or in
        all of them (None). `lease` replaces the short test lease (4 s) with, e.g., the chart's."""
        provider = KubernetesProvider(api, KubernetesSettings(namespace=namespace, instance_types=("p3.2xlarge",),
                                                              placement=Placement(preset=preset), snapshot_ttl_s=0.0))
        if backend is None:
            assert store_dir is not None, "a controller needs a store"
            engine = make_engine(f"sqlite:///{store_dir / 'orch.db'}")
            upgrade(engine)
            reconciler = Reconciler(Store(engine), {"kubernetes": provider}, SystemClock(), tick_seconds=0.2)
            backend = StoreBackend(reconciler.store, reconciler, checkpoint_root=(store_dir / "ckpt").as_uri())
        self.backend = backend
        settings = ControllerSettings(
            tick_s=0.2, watch_timeout_s=30, relist_s=300.0, health_host="127.0.0.1", health_port=0,
            lease=lease or LeaseSettings(name=lease_name, namespace=lease_namespace or namespace, duration_s=4,
                                         renew_deadline_s=3.0, retry_period_s=0.3))
        watched = namespace if watch == "" else watch
        self.proc = ControllerProcess(self.backend, namespace=watched, api_client=api, identity=identity,
                                      settings=settings)
        self.code: int | None = None
        self.crashed: BaseException | None = None
        self.proc.start()
        self.thread = threading.Thread(target=self._run, name=f"controller-{identity}", daemon=True)
        self.thread.start()

    @property
    def store(self) -> Store:
        return self.backend.store

    def _run(self) -> None:
        try:
            self.code = self.proc.run()
        except BaseException as exc:  # recorded for the test to report: the loop must never raise
            self.crashed = exc
            raise

    def crash(self) -> None:
        """Stop without releasing the Lease, as a killed process would."""
        self.proc.stop.set()
        self.proc.wake.set()
        self.thread.join(15)
        self.proc.health.stop()

    def stop(self) -> None:
        self.proc.shutdown()
        self.thread.join(15)


def describe(pod: Any) -> str:
    """One line per pod for assertion messages: what a kubectl user would look at first."""
    meta, status = pod.metadata, pod.status
    codes = [c.state.terminated.exit_code for c in status.container_statuses or [] if c.state and c.state.terminated]
    return (f"{meta.name} node={pod.spec.node_name} phase={status.phase} exit={codes} "
            f"deleting={meta.deletion_timestamp is not None} grace={meta.deletion_grace_period_seconds} "
            f"finalizers={meta.finalizers}")


class GpuJobs:
    """The test's own view of one namespace, through the admin client."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        from kubernetes import client

        self.api = api
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create(self, name: str = "fold", spec: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "GpuJob",
                "metadata": {"name": name, "namespace": self.ns}, "spec": spec or SPEC}
        out: dict[str, Any] = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)
        return out

    def get(self, name: str = "fold") -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            out: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return {}
            raise
        return out

    def status(self, name: str = "fold") -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def delete(self, name: str = "fold") -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def pods(self) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.ns).items)

    def live_pods(self) -> list[Any]:
        return [p for p in self.pods()
                if p.status.phase in ("Pending", "Running") and not p.metadata.deletion_timestamp]

    def events(self) -> list[str]:
        return [e.reason for e in self.core.list_namespaced_event(self.ns).items]

    def running_pod(self) -> Any:
        """The one live pod once the scheduler bound it and the node sim started it."""
        def check() -> Any:
            live = [p for p in self.live_pods() if p.spec.node_name and p.status.phase == "Running"]
            return live[0] if len(live) == 1 else None

        return eventually(check, what="a pod bound by the scheduler and running")
