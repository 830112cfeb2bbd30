"""A campaign GpuJob's items: inline or from a ConfigMap, read by the items-file reader, refused with one
line naming the GpuJob, the field and the problem; a missing ConfigMap keeps the GpuJob Pending and
stores nothing; the controller's item-service settings."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from orchestrator.core.spec import JobSpec, SpecError
from orchestrator.job.items_format import ParsedItem, format_for
from orchestrator.job_files import load_items
from orchestrator.k8s.config import ConfigError, item_service_settings_from_env
from orchestrator.k8s.controller import GpuJobSync
from orchestrator.k8s.convert import campaign_from_gpujob, gpujob_from_toml
from orchestrator.k8s.gpujob_items import MAX_INLINE_ITEMS, ConfigMapData, ItemsNotReady
from orchestrator.k8s.kube import GpuJobClient
from orchestrator.k8s.metrics import Metrics
from orchestrator.store.item_source import attempt_token
from tests.kube_fake import KubeFake
from tests.test_k8s_sync import ScriptedBackend


class RecordingBackend(ScriptedBackend):
    """The sync tests' scripted backend, keeping what was submitted."""

    def __init__(self) -> None:
        super().__init__()
        self.specs: list[JobSpec] = []
        self.items: list[ParsedItem] = []

    def submit(self, spec: JobSpec, *, external_ref: str, items: Sequence[ParsedItem] = ()) -> str:
        self.specs.append(spec)
        self.items = list(items)
        return super().submit(spec, external_ref=external_ref, items=items)

FASTA = ">a first\nMKV\nLLA\n>b\nGGS\n"


def gpujob(array: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "orch.dev/v1alpha1", "kind": "GpuJob",
            "metadata": {"name": "fold", "namespace": "lab", "creationTimestamp": "2026-11-01T12:00:00Z"},
            "spec": {"command": ["python", "fold.py"], "schedule": {"estimated_hours": 2}, "array": array}}


def maps(**data: ConfigMapData) -> Any:
    return lambda namespace, name: data.get(f"{namespace}/{name}".replace("/", "_").replace("-", "_"))


def test_inline_strings_are_text_items_and_objects_jsonl_items() -> None:
    spec, items = campaign_from_gpujob(gpujob({"workers": 2, "item_list": ["alpha", "beta", "gamma"]}),
                                       read_config_map=maps())
    assert spec.array is not None and spec.array.count == 3 and spec.array.shards == 2
    assert spec.array.items == "GpuJob item_list" and spec.array.format == "text"
    assert [(i.index, i.key, json.loads(i.payload)) for i in items] == [(0, None, "alpha"), (1, None, "beta"),
                                                                       (2, None, "gamma")]
    _, objs = campaign_from_gpujob(gpujob({"item_list": [{"id": "P1", "seq": "MKV"}, {"id": 7, "seq": "GG"}]}),
                                   read_config_map=maps())
    assert [(i.key, json.loads(i.payload)) for i in objs] == [("P1", {"id": "P1", "seq": "MKV"}),
                                                              ("7", {"id": 7, "seq": "GG"})]


def test_nulls_inside_inline_items_are_the_items_own_data() -> None:
    _, items = campaign_from_gpujob(gpujob({"workers": None, "item_list": [{"id": "a", "v": [1, None], "w": None}]}),
                                    read_config_map=maps())
    assert json.loads(items[0].payload) == {"id": "a", "v": [1, None], "w": None}


def test_a_configmap_key_is_read_as_a_file_of_its_format() -> None:
    data = ConfigMapData({"seqs.fasta": FASTA}, {"seqs.txt": base64.b64encode(b"one\ntwo\n").decode()})
    array = {"workers": 4, "items_from": {"config_map": "seqs", "key": "seqs.fasta"}}
    spec, items = campaign_from_gpujob(gpujob(array), read_config_map=maps(lab_seqs=data))
    assert spec.array is not None and spec.array.items == "ConfigMap lab/seqs key seqs.fasta"
    assert [(i.key, json.loads(i.payload)) for i in items] == [
        ("a", {"id": "a", "description": "first", "sequence": "MKVLLA"}),
        ("b", {"id": "b", "description": "", "sequence": "GGS"})]
    _, lines = campaign_from_gpujob(gpujob({"items_from": {"config_map": "seqs", "key": "seqs.txt"}}),
                                    read_config_map=maps(lab_seqs=data))
    assert [json.loads(i.payload) for i in lines] == ["one", "two"]


@pytest.mark.parametrize(("array", "field", "problem"), [
    ({"items": "seqs.fasta"}, "array.items", "cannot read"),
    ({"item_list": ["a"], "items_from": {"config_map": "m", "key": "k.txt"}}, "array", "not both"),
    ({"item_list": []}, "array.item_list", "non-empty list"),
    ({"item_list": ["a", {"id": 1}]}, "array.item_list", "mixes strings and objects"),
    ({"item_list": ["a", 3]}, "array.item_list[1]", "string or an object, not int"),
    ({"item_list": ["a", "b\nc"]}, "array.item_list[1]", "line break"),
    ({"item_list": ["a"] * (MAX_INLINE_ITEMS + 1)}, "array.item_list", "at most 10,000"),
    ({"item_list": ["a"], "format": "fasta"}, "array.format", "applies to items_from"),
    ({"item_list": [{"id": 1}, {"id": 2, "x": float("nan")}]}, "array.item_list[1]", "NaN"),
    ({"items_from": {"config_map": "seqs"}}, "array.items_from", "needs config_map"),
    ({"items_from": {"config_map": "seqs", "key": "seqs.bin"}}, "array.items_from", "cannot tell the format"),
    ({"items_from": {"config_map": "seqs", "key": "seqs.fasta"}, "format": "csv"}, "array.format", "one of"),
    ({"items_from": {"config_map": "seqs", "key": "nope.fasta"}}, "array.items_from", "has no key 'nope.fasta'"),
    ({"items_from": {"config_map": "seqs", "key": "bad.fasta"}}, "array.items_from",
     "ConfigMap lab/seqs key bad.fasta line 4: '7' is not a residue letter (record 'b')"),
    ({"items_from": {"config_map": "seqs", "key": "bin.txt"}}, "array.items_from", "not UTF-8"),
    ({"item_list": ["a"], "count": 4}, "array.count", "for fixed shards"),
])
def test_bad_items_are_refused_naming_the_gpujob_and_the_field(array: dict[str, Any], field: str,
                                                               problem: str) -> None:
    data = ConfigMapData({"seqs.fasta": FASTA, "bad.fasta": ">a\nMK\n>b\nG7\n"},
                         {"bin.txt": base64.b64encode(b"\xff\xfe").decode()})
    with pytest.raises(SpecError) as err:
        campaign_from_gpujob(gpujob(array), read_config_map=maps(lab_seqs=data))
    assert err.value.source == "GpuJob lab/fold" and err.value.field == field, str(err.value)
    assert problem in err.value.problem, str(err.value)


def test_a_jsonl_entry_error_names_the_entry() -> None:
    with pytest.raises(SpecError) as err:
        campaign_from_gpujob(gpujob({"items_from": {"config_map": "m", "key": "x.jsonl"}}),
                             read_config_map=maps(lab_m=ConfigMapData({"x.jsonl": '{"a": 1}\n[1]\n'}, {})))
    assert str(err.value) == "GpuJob lab/fold: array.items_from: ConfigMap lab/m key x.jsonl line 2: must be a JSON " \
                             "object, not list"


def test_a_missing_configmap_is_not_ready_yet() -> None:
    with pytest.raises(ItemsNotReady, match="waiting for ConfigMap lab/seqs"):
        campaign_from_gpujob(gpujob({"items_from": {"config_map": "seqs", "key": "s.fasta"}}), read_config_map=maps())


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


def test_the_controller_waits_for_the_configmap_then_submits_the_items(kube: KubeFake) -> None:
    api = client.ApiClient(client.Configuration(host=kube.url))
    backend = RecordingBackend()
    sync = GpuJobSync(GpuJobClient(api, "lab", component="t", identity="t"), backend, Metrics())
    obj = kube.put("orch.dev/v1alpha1", "gpujobs", gpujob({"workers": 2, "items_from": {"config_map": "seqs",
                                                                                         "key": "s.fasta"}}))
    assert sync.sync(obj).phase == "Pending"
    obj = kube.find("orch.dev/v1alpha1", "gpujobs", "lab", "fold") or {}
    assert obj["status"] == {"phase": "Pending", "message": "waiting for ConfigMap lab/seqs (array.items_from)"}
    assert backend.jobs == {}, "nothing is submitted before the items are read"
    kube.put("v1", "configmaps", {"metadata": {"name": "seqs", "namespace": "lab"}, "data": {"s.fasta": FASTA}})
    sync.sync(obj)
    (spec,) = backend.specs
    assert spec.array is not None and spec.array.count == 2
    assert [i.key for i in backend.items] == ["a", "b"]


def test_a_controller_without_an_item_service_refuses_campaigns(kube: KubeFake) -> None:
    api = client.ApiClient(client.Configuration(host=kube.url))
    backend = RecordingBackend()
    sync = GpuJobSync(GpuJobClient(api, "lab", component="t", identity="t"), backend, Metrics(), campaigns=False)
    obj = kube.put("orch.dev/v1alpha1", "gpujobs", gpujob({"item_list": ["a"]}))
    assert sync.sync(obj).phase == "Invalid"
    status = (kube.find("orch.dev/v1alpha1", "gpujobs", "lab", "fold") or {})["status"]
    assert "ORCH_K8S_ITEMS_URL" in status["message"] and backend.jobs == {}


def test_item_service_settings() -> None:
    assert item_service_settings_from_env({}) is None
    s = item_service_settings_from_env({"ORCH_K8S_ITEMS_URL": "http://orch-items.sys.svc:8081",
                                        "ORCH_K8S_ITEMS_SECRET": "s" * 32, "ORCH_K8S_ITEMS_PORT": "9000"})
    assert s is not None and s.port == 9000 and s.endpoint().token("j", "a") == attempt_token(b"s" * 32, "j", "a")
    assert "s" * 32 not in repr(s)
    random_secret = item_service_settings_from_env({"ORCH_K8S_ITEMS_URL": "http://x:1"})
    assert random_secret is not None and len(random_secret.secret) == 32
    for bad, name in [({"ORCH_K8S_ITEMS_URL": "x:1"}, "ORCH_K8S_ITEMS_URL"),
                      ({"ORCH_K8S_ITEMS_URL": "http://x", "ORCH_K8S_ITEMS_PORT": "70000"}, "ORCH_K8S_ITEMS_PORT"),
                      ({"ORCH_K8S_ITEMS_URL": "http://x", "ORCH_K8S_ITEMS_SECRET": "short"}, "ORCH_K8S_ITEMS_SECRET")]:
        with pytest.raises(ConfigError, match=name):
            item_service_settings_from_env(bad)


@pytest.mark.parametrize(("name", "text"), [
    ("seqs.fasta", FASTA),
    ("lines.txt", "one\n\n  two  \nthree\r\n"),
    ("docs.jsonl", '{"id": "x", "v": [1, 2]}\n{"v": "no id"}\n'),
])
def test_orch_submit_kubernetes_carries_the_items_file_inline_as_the_same_items(
        tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    job = tmp_path / "campaign.toml"
    job.write_text(f'name = "c"\ncommand = ["python", "w.py"]\n[schedule]\nestimated_hours = 1\n'
                   f'[array]\nitems = "{name}"\nworkers = 2\n')
    manifest = gpujob_from_toml(job.read_text(), source=str(job), namespace="lab")
    assert "items" not in manifest["spec"]["array"] and manifest["spec"]["array"]["workers"] == 2
    manifest["metadata"]["creationTimestamp"] = "2026-11-01T12:00:00Z"
    _, items = campaign_from_gpujob(json.loads(json.dumps(manifest)), read_config_map=maps())
    assert items == load_items(str(tmp_path / name), format_for(name))


def test_orch_submit_kubernetes_refuses_a_campaign_too_large_to_carry(tmp_path: Path) -> None:
    (tmp_path / "many.txt").write_text("".join(f"line {i}\n" for i in range(MAX_INLINE_ITEMS + 1)))
    job = tmp_path / "campaign.toml"
    job.write_text('name = "c"\ncommand = ["w"]\n[schedule]\nestimated_hours = 1\n[array]\nitems = "many.txt"\n')
    with pytest.raises(SpecError) as err:
        gpujob_from_toml(job.read_text(), source=str(job), namespace="lab")
    assert err.value.field == "array.items" and "ConfigMap" in err.value.problem
