"""The chart's CRD on a real API server: installed, served, validated, printed by `kubectl get`.

v1.20 is older than the chart's minimum (Chart.yaml `kubeVersion`), and two features the chart uses
are missing there; each test below says which, so the minimum version is a fact checked here, not a
guess: CEL rules (`x-kubernetes-validations`, beta in 1.25, on by default from 1.25, GA in 1.29) and
`policy/v1` PodDisruptionBudgets (1.21).
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube_real.cluster import ADMIN_TOKEN, Cluster
from tests.kube_real.world import GROUP, PLURAL, ROOT, VERSION, Controller, GpuJobs, chart_crd, eventually

pytestmark = pytest.mark.kube


def served_crd(cluster: Cluster) -> dict[str, Any]:
    from kubernetes import client

    api = cluster.api_client()
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    out: dict[str, Any] = api.sanitize_for_serialization(crd)
    return out


def minimum_kube_version() -> tuple[int, int]:
    constraint = str(yaml.safe_load((ROOT / "helm" / "orch" / "Chart.yaml").read_text())["kubeVersion"])
    assert constraint.startswith(">="), f"Chart.yaml kubeVersion states a minimum: {constraint}"
    major, minor = constraint[2:].split(".")[:2]
    return int(major), int(minor)


def server_version(cluster: Cluster) -> tuple[int, int]:
    from kubernetes import client

    info = client.VersionApi(cluster.api_client()).get_code()
    return int(info.major), int(str(info.minor).rstrip("+"))


def test_the_charts_crd_is_established_with_its_printer_columns(cluster: Cluster, namespace: str) -> None:
    crd = served_crd(cluster)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    wanted = [c["name"] for c in chart_crd()["spec"]["versions"][0]["additionalPrinterColumns"]]
    GpuJobs(cluster.api_client(), namespace).create()
    # What `kubectl get gpujobs` asks for: a server-side Table with the printer columns.
    req = urllib.request.Request(
        f"{cluster.url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                 "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(cluster.ca))) as resp:
        table = json.load(resp)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", *wanted]
    assert table["rows"][0]["cells"][0] == "fold"


def test_the_schema_refuses_a_wrong_type_and_a_missing_spec(cluster: Cluster, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    jobs = GpuJobs(cluster.api_client(), namespace)
    with pytest.raises(ApiException) as wrong:
        jobs.create("typed", {"command": ["x"], "schedule": {"estimated_hours": "two"}})
    assert wrong.value.status == 422 and "estimated_hours" in str(wrong.value.body)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "GpuJob", "metadata": {"name": "empty"}}
    with pytest.raises(ApiException) as missing:
        jobs.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert missing.value.status == 422 and "spec" in str(missing.value.body)
    # Empty strings and zeros are values, not nulls (kube.sh's fix to the 1.20 validator under Go 1.19).
    jobs.create("zeros", {"command": ["x"], "image": "", "schedule": {"estimated_hours": 0}})


def test_without_cel_rules_v1_20_accepts_a_job_with_neither_command_nor_image_and_the_controller_refuses_it(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    rules = chart_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert rules.get("x-kubernetes-validations"), "the chart's CRD carries a CEL rule"
    served = served_crd(cluster)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    if "x-kubernetes-validations" in served:
        pytest.fail("this server keeps CEL rules; the CEL gap below no longer applies")
    assert server_version(cluster) < (1, 25) <= minimum_kube_version(), "Chart.yaml documents the minimum"
    jobs = GpuJobs(cluster.api_client(), namespace)
    jobs.create("nothing-to-run", {"schedule": {"estimated_hours": 1}})  # a 1.25+ server refuses this
    ctl = Controller(cluster.api_client(), namespace, "replica-a", store_dir=tmp_path)
    try:
        st = eventually(lambda: jobs.status("nothing-to-run").get("phase") == "Invalid"
                        and jobs.status("nothing-to-run"), what="phase Invalid")
        assert "command" in st["message"] and ctl.store.jobs() == []
    finally:
        ctl.stop()


def test_v1_20_has_no_policy_v1_for_the_charts_disruption_budget(cluster: Cluster) -> None:
    from kubernetes import client

    groups = client.ApisApi(cluster.api_client()).get_api_versions().groups
    policy = next(g for g in groups if g.name == "policy")
    assert [v.version for v in policy.versions] == ["v1beta1"], "policy/v1 came in 1.21"
    pdb = (ROOT / "helm" / "orch" / "templates" / "pdb.yaml").read_text()
    assert "apiVersion: policy/v1\n" in pdb
    assert minimum_kube_version() >= (1, 21), "Chart.yaml documents a minimum that has policy/v1"
