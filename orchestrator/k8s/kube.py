"""The controller's calls to the API server, and the one place their exceptions are translated.

GpuJobs are handled as plain dicts (the CustomObjects API returns them so), and every call that can
fail raises `KubeError` carrying the HTTP status, so the rest of the controller never imports
`kubernetes.client.exceptions`. Finalizers change through JSON patches with a `test` op, so a
concurrent writer makes the patch fail instead of being overwritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.k8s.crd import API_VERSION, GROUP, KIND, PLURAL, VERSION
from orchestrator.k8s.gpujob_items import ConfigMapData

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
FINALIZER = "orch.dev/cleanup"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """A failed API call. `code` is the HTTP status (0: no answer, e.g. a dropped connection)."""

    def __init__(self, message: str, *, code: int, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    @property
    def gone(self) -> bool:
        return self.code == 410


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        try:
            body = json.loads(exc.body or "{}")
        except (TypeError, ValueError):
            body = {}
        reason = str(body.get("reason") or exc.reason or "")
        raise KubeError(f"{action}: {exc.status} {reason}: {body.get('message', '')}",
                        code=int(exc.status or 0), reason=reason) from exc
    except (HTTPError, ConnectionError, TimeoutError) as exc:
        raise KubeError(f"{action}: {exc}", code=0, reason="Connection") from exc


def default_api_client() -> ApiClient:
    """In-cluster configuration inside a pod, the kubeconfig elsewhere."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _as_dict(value: object) -> dict[str, Any]:
    """Custom objects come back as untyped JSON; anything but an object is a broken answer."""
    if not isinstance(value, dict):
        raise KubeError(f"expected a JSON object from the API server, got {type(value).__name__}", code=0)
    return value


def key_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GpuJobClient:
    """GpuJob list/watch/patch and Events, for one namespace or (namespace None) all of them."""

    def __init__(self, api_client: ApiClient, namespace: str | None, *, component: str, identity: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.component = component
        self.identity = identity

    def list_all(self) -> tuple[list[dict[str, Any]], str]:
        with translate("list gpujobs"):
            if self.namespace:
                out = _as_dict(self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL))
            else:
                out = _as_dict(self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))
        return list(out.get("items") or []), str((out.get("metadata") or {}).get("resourceVersion", ""))

    def watch(self, resource_version: str, timeout_s: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events after `resource_version` until the server ends the stream; KubeError(410) when expired."""
        from kubernetes import watch

        w = watch.Watch()  # type: ignore[no-untyped-call]
        func: Any = self.custom.list_cluster_custom_object
        args: tuple[str, ...] = (GROUP, VERSION, PLURAL)
        if self.namespace:
            func, args = self.custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, PLURAL)
        with translate("watch gpujobs"):
            for event in w.stream(func, *args, resource_version=resource_version,  # type: ignore[no-untyped-call]
                                  timeout_seconds=timeout_s, allow_watch_bookmarks=True,
                                  _request_timeout=timeout_s + 10):
                yield str(event["type"]), _as_dict(event["object"])

    def patch_status(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        with translate("write gpujob status"):
            out = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"status": dict(status)},
                _content_type=MERGE_PATCH)
        return _as_dict(out)

    def add_finalizer(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        current = list(meta.get("finalizers") or [])
        ops: list[dict[str, Any]] = (
            [{"op": "test", "path": "/metadata/finalizers", "value": current},
             {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]
            if current else [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
        return self._patch(meta, ops, "add finalizer")

    def remove_finalizer(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        current = list(meta.get("finalizers") or [])
        if FINALIZER not in current:
            return dict(obj)
        i = current.index(FINALIZER)
        ops = [{"op": "test", "path": f"/metadata/finalizers/{i}", "value": FINALIZER},
               {"op": "remove", "path": f"/metadata/finalizers/{i}"}]
        return self._patch(meta, ops, "remove finalizer")

    def _patch(self, meta: Mapping[str, Any], ops: list[dict[str, Any]], action: str) -> dict[str, Any]:
        with translate(action):
            out = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], ops, _content_type=JSON_PATCH)
        return _as_dict(out)

    def config_map(self, namespace: str, name: str) -> ConfigMapData | None:
        """A ConfigMap's contents (a campaign GpuJob's items), or None when there is no such ConfigMap."""
        try:
            with translate(f"read configmap {namespace}/{name}"):
                found = self.core.read_namespaced_config_map(name, namespace)
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise
        binary = {k: v if isinstance(v, str) else v.decode("ascii", "replace")
                  for k, v in (found.binary_data or {}).items()}
        return ConfigMapData(dict(found.data or {}), binary)  # binaryData as served: base64 text

    def event(self, obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False) -> None:
        """Record a Kubernetes Event on the GpuJob; a failure is logged, never raised (events are advice)."""
        from kubernetes.client import CoreV1Event

        meta = obj["metadata"]
        now = now_rfc3339()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message[:1024], "type": "Warning" if warning else "Normal",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "source": {"component": self.component},
            "reportingComponent": f"orch.dev/{self.component}", "reportingInstance": self.identity,
        }
        try:
            with translate("record event"):
                self.core.create_namespaced_event(meta["namespace"], CoreV1Event.model_validate(body))
        except KubeError as exc:
            log.warning("could not record event %s on %s: %s", reason, key_of(obj), exc)


def create_gpujob(api_client: ApiClient, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Create a GpuJob (for `orch submit --kubernetes`); KubeError 409 when the name is taken."""
    from kubernetes import client

    meta = manifest["metadata"]
    with translate(f"create gpujob {meta.get('namespace')}/{meta.get('name')}"):
        out = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], PLURAL, dict(manifest))
    return _as_dict(out)
