"""The Helm chart's RBAC applied to the real server, and a token of its ServiceAccount.

The chart is rendered by the real helm that `.ci/helm.sh` unpacks into .tools/ (or one on PATH), so
the objects checked are the chart's own, not a copy. Only the RBAC objects are applied: the
Deployment's pod would need a kubelet and an image, and the controller runs in the test instead, with
exactly the identity that pod would have (a TokenRequest token of the chart's ServiceAccount).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.kube_real.cluster import ISSUER
from tests.kube_real.world import ROOT

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CHART = ROOT / "helm" / "orch"
RELEASE = "orch"  # release "orch": the chart's fullname, so the Lease it may renew, is "orch"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def find_helm() -> Path | None:
    local = ROOT / ".tools" / "helm" / "helm"
    if local.is_file():
        return local
    found = shutil.which("helm")
    return Path(found) if found else None


def render(helm: Path, namespace: str, values: dict[str, str]) -> list[dict[str, Any]]:
    argv = [str(helm), "template", RELEASE, str(CHART), "--namespace", namespace]
    for key, value in values.items():
        argv += ["--set", f"{key}={value}"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def apply_rbac(api: ApiClient, docs: list[dict[str, Any]]) -> Iterator[tuple[str, str, str | None]]:
    """Create the chart's RBAC objects; yields (kind, name, namespace) of each, for the teardown."""
    from kubernetes import utils

    for doc in docs:
        if doc["kind"] in RBAC_KINDS:
            utils.create_from_dict(api, doc)
            meta = doc["metadata"]
            yield doc["kind"], meta["name"], meta.get("namespace")


def delete_cluster_scoped(api: ApiClient, made: list[tuple[str, str, str | None]]) -> None:
    """The ClusterRole and its binding outlive the test's namespace; the next test renders them again."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(api)
    for kind, name, _ in made:
        if kind == "ClusterRole":
            rbac.delete_cluster_role(name)
        elif kind == "ClusterRoleBinding":
            rbac.delete_cluster_role_binding(name)


def service_account_token(api: ApiClient, namespace: str, name: str) -> str:
    """A bound token for the ServiceAccount, as the kubelet mounts into the controller's pod."""
    from kubernetes import client

    request = {"spec": {"audiences": [ISSUER], "expirationSeconds": 3600}}
    out = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
    return str(out.status.token)


def denials(audit: list[dict[str, Any]], user: str) -> list[str]:
    """Requests of `user` the server refused as forbidden (403), from the audit log."""
    return [f"{e.get('verb')} {e.get('requestURI')}" for e in audit
            if (e.get("user") or {}).get("username") == user and (e.get("responseStatus") or {}).get("code") == 403]


def requests_of(audit: list[dict[str, Any]], user: str) -> list[str]:
    return [f"{e.get('verb')} {e.get('requestURI')}" for e in audit if (e.get("user") or {}).get("username") == user]
