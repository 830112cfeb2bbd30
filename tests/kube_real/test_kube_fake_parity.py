"""The fake answers as the real server does, on every kind of call orch makes.

tests/kube_fake.py keeps the fast tier fast; this test keeps it honest. One script of calls, the ones
in orchestrator/k8s/kube.py, leader.py and providers/kubernetes/provider.py (GpuJob create, list,
watch, status and finalizer patches with a failing `test` op, delete held by a finalizer; pod create
twice, optimistic-concurrency patches, label-selected lists, delete; Lease create and replace with a
stale resourceVersion; Events with generateName; 404s), runs against both, and what each answer
shows orch (status codes, reasons, the fields it reads) must be the same. A change to the fake that
drifts from Kubernetes fails here, and so does a real-server behaviour the fake never had.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.kube_fake import KubeFake
from tests.kube_real.cluster import Cluster
from tests.kube_real.world import GROUP, PLURAL, VERSION

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

pytestmark = pytest.mark.kube
Answer = tuple[str, Any]
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def call(name: str, fn: Callable[[], Any], pick: Callable[[Any], Any] = lambda _: "ok") -> Answer:
    """One call: what orch sees of its answer, or the status code and reason of its failure."""
    from kubernetes.client.exceptions import ApiException

    try:
        return name, pick(fn())
    except ApiException as exc:
        reason = json.loads(exc.body or "{}").get("reason", "") if exc.body else ""
        return name, (exc.status, reason)


def gpujob_script(api: ApiClient, ns: str) -> list[Answer]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "GpuJob", "metadata": {"name": "parity", "namespace": ns},
            "spec": {"command": ["x"], "schedule": {"estimated_hours": 1}}}
    out = [call("create", lambda: custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body),
                lambda o: (o["metadata"]["generation"], bool(o["metadata"]["uid"]), "status" in o))]
    out.append(call("create again", lambda: custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)))
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    start = listed["metadata"]["resourceVersion"]
    out.append(("list", ([i["metadata"]["name"] for i in listed["items"]], bool(start))))
    events: list[tuple[str, str]] = []
    watching = threading.Thread(target=_watch, args=(custom, ns, start, events), daemon=True)
    watching.start()

    def get() -> Any:
        return custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "parity")

    def status_patch(value: Any) -> Callable[[], Any]:
        return lambda: custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, "parity", value, _content_type=MERGE_PATCH)

    def json_patch(ops: list[dict[str, Any]]) -> Callable[[], Any]:
        return lambda: custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "parity", ops, _content_type=JSON_PATCH)

    out += [
        call("status patch writes status only", status_patch({"status": {"phase": "Running", "deadline": ""},
                                                              "spec": {"command": ["changed"]}}),
             lambda o: (o["status"], o["spec"]["command"], o["metadata"]["generation"])),
        call("main patch ignores status", lambda: custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "parity", {"status": {"phase": "Hacked"}}, _content_type=MERGE_PATCH),
             lambda o: o["status"]["phase"]),
        call("status null removes a field", status_patch({"status": {"deadline": None}}), lambda o: o["status"]),
        call("add finalizer", json_patch([{"op": "add", "path": "/metadata/finalizers", "value": ["orch.dev/t"]}]),
             lambda o: o["metadata"]["finalizers"]),
        call("failed test op", json_patch([{"op": "test", "path": "/metadata/finalizers", "value": []},
                                           {"op": "add", "path": "/metadata/finalizers/-", "value": "other"}])),
        call("delete held by finalizer", lambda: custom.delete_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "parity")),
        call("held object", get, lambda o: bool(o["metadata"].get("deletionTimestamp"))),
        call("remove finalizer", json_patch([{"op": "test", "path": "/metadata/finalizers/0", "value": "orch.dev/t"},
                                             {"op": "remove", "path": "/metadata/finalizers/0"}])),
        call("gone", get),
    ]
    watching.join(15)
    out.append(("watch", events))
    return out


def _watch(custom: Any, ns: str, start: str, events: list[tuple[str, str]]) -> None:
    from kubernetes import watch

    w = watch.Watch()
    for event in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL,
                          resource_version=start, timeout_seconds=10):
        events.append((event["type"], str((event["object"].get("status") or {}).get("phase", ""))))
        if event["type"] == "DELETED":
            w.stop()


def pod_lease_event_script(api: ApiClient, ns: str) -> list[Answer]:
    from kubernetes import client

    core, leases = client.CoreV1Api(api), client.CoordinationV1Api(api)
    pod = {"metadata": {"name": "orch-parity", "labels": {"orch.dev/managed": "true"}, "finalizers": ["orch.dev/t"]},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "job", "image": "img"}]}}
    other = {"metadata": {"name": "not-orch"}, "spec": {"containers": [{"name": "c", "image": "img"}]}}
    made = core.create_namespaced_pod(ns, pod)
    core.create_namespaced_pod(ns, other)
    stale = made.metadata.resource_version
    core.patch_namespaced_pod("orch-parity", ns, {"metadata": {"annotations": {"a": "1"}}})
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {"metadata": {"name": "parity"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                                                      "renewTime": now, "leaseTransitions": 0}}
    first = leases.create_namespaced_lease(ns, lease)
    out = [
        call("pod again", lambda: core.create_namespaced_pod(ns, pod)),
        call("pod stale patch", lambda: core.patch_namespaced_pod(
            "orch-parity", ns, {"metadata": {"resourceVersion": stale, "annotations": {"b": "1"}}},
            _content_type=MERGE_PATCH)),
        call("pods by label", lambda: core.list_namespaced_pod(ns, label_selector="orch.dev/managed=true"),
             lambda o: [p.metadata.name for p in o.items]),
        call("pod delete held", lambda: core.delete_namespaced_pod("orch-parity", ns)),
        call("held pod", lambda: core.read_namespaced_pod("orch-parity", ns),
             lambda o: (o.metadata.deletion_timestamp is not None, o.metadata.finalizers)),
        call("release pod", lambda: core.patch_namespaced_pod(
            "orch-parity", ns, {"metadata": {"finalizers": None}}, _content_type=MERGE_PATCH)),
        call("pod gone", lambda: core.read_namespaced_pod("orch-parity", ns)),
        call("delete missing pod", lambda: core.delete_namespaced_pod("orch-parity", ns)),
        call("lease again", lambda: leases.create_namespaced_lease(ns, lease)),
        call("lease read", lambda: leases.read_namespaced_lease("parity", ns),
             lambda o: (o.spec.holder_identity, o.spec.renew_time is not None)),
        call("lease renew", lambda: _renew(leases, ns), lambda o: o.spec.holder_identity),
        call("lease stale replace", lambda: leases.replace_namespaced_lease("parity", ns, first)),
        call("missing lease", lambda: leases.read_namespaced_lease("nobody", ns)),
        call("event", lambda: core.create_namespaced_event(ns, {
            "metadata": {"generateName": "parity."}, "reason": "Parity", "message": "m", "type": "Normal",
            "involvedObject": {"kind": "GpuJob", "name": "parity", "namespace": ns}}),
             lambda o: o.metadata.name.startswith("parity.") and len(o.metadata.name) > len("parity.")),
    ]
    return out


def _renew(leases: Any, ns: str) -> Any:
    """What the elector does each round: read, move renewTime, replace with the read resourceVersion."""
    lease = leases.read_namespaced_lease("parity", ns)
    lease.spec.renew_time = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    return leases.replace_namespaced_lease("parity", ns, lease)


@pytest.fixture
def fake() -> Iterator[ApiClient]:
    from kubernetes import client

    kube = KubeFake().start()
    yield client.ApiClient(client.Configuration(host=kube.url))
    kube.stop()


@pytest.mark.parametrize("script", [gpujob_script, pod_lease_event_script], ids=["gpujobs", "pods-leases-events"])
def test_the_fake_answers_as_the_real_server(
    script: Callable[[ApiClient, str], list[Answer]], cluster: Cluster, namespace: str, fake: ApiClient
) -> None:
    real = script(cluster.api_client(), namespace)
    mocked = script(fake, namespace)
    differ = [f"{name}: real {r!r}, fake {f!r}" for (name, r), (_, f) in zip(real, mocked, strict=True) if r != f]
    assert differ == [], "\n".join(differ)
