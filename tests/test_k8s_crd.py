"""The GpuJob CRD is the job.toml model: generated from it, converted through its validation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.core.spec import (
    ArraySpec,
    CheckpointSpec,
    GangSpec,
    JobSpec,
    PlacementSpec,
    RetrySpec,
    ScheduleSpec,
    SpecError,
)
from orchestrator.k8s.backend import GpuJobStatus, render_status
from orchestrator.k8s.convert import gpujob_from_toml, job_spec_from_gpujob
from orchestrator.k8s.crd import PRINTER_COLUMNS, build_crd, render_crd, spec_schema
from vocab import Resources

CHART_CRD = Path(__file__).resolve().parents[1] / "helm" / "orch" / "crds" / "gpujob.yaml"
CREATED = "2026-11-01T12:00:00Z"


def gpujob(spec: dict[str, Any], name: str = "fold") -> dict[str, Any]:
    return {"apiVersion": "orch.dev/v1alpha1", "kind": "GpuJob", "spec": spec,
            "metadata": {"name": name, "namespace": "lab", "creationTimestamp": CREATED}}


FULL_SPEC: dict[str, Any] = {
    "name": "fold-all",
    "command": ["python", "fold.py", "--in", "proteins.txt"],
    "image": "ghcr.io/lab/fold:1",
    "workdir": "/work",
    "env": {"MODE": "fast", "QUOTE": 'a "b" \\ c'},
    "resources": {"gpu": ["A100", "H100"], "gpu_count": 2, "min_gpu_memory_gb": 40, "min_architecture": "Ampere"},
    "schedule": {"estimated_hours": 6, "deadline_hours": 48.5, "budget_usd": 300.0, "market": "auto",
                 "policy": "greedy", "restart_overhead_hours": 0.2},
    "checkpoint": {"uri": "s3://bucket/fold", "keep": 2, "grace_seconds": 90},
    "retry": {"max_failures": 5, "recover_on_exit_codes": [75, 137]},
    "placement": {"providers": ["kubernetes"], "regions": ["gpu-cluster"],
                  "options": {"kubernetes": {"preset": "gke", "tolerations": [{"key": "x", "operator": "Exists"}]}}},
    "array": {"count": 10000, "shard_size": 500},
}


def test_the_chart_crd_is_the_generated_one() -> None:
    assert CHART_CRD.read_text() == render_crd(), "regenerate: python -m orchestrator.k8s.crd > " + str(CHART_CRD)
    assert yaml.safe_load(CHART_CRD.read_text()) == build_crd()


def _schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, sub in schema.get("properties", {}).items():
        keys.add(prefix + name)
        keys |= _schema_keys(sub, f"{prefix}{name}.")
    return keys


def test_every_model_field_is_in_the_schema() -> None:
    keys = _schema_keys(spec_schema())
    renamed = {"resources.gpus": "resources.gpu", "schedule.deadline": "schedule.deadline", "gang": "resources.nodes"}
    for prefix, cls in [("", JobSpec), ("resources.", Resources), ("resources.", GangSpec), ("schedule.", ScheduleSpec),
                        ("checkpoint.", CheckpointSpec), ("retry.", RetrySpec), ("placement.", PlacementSpec),
                        ("array.", ArraySpec)]:
        for f in dataclasses.fields(cls):
            path = renamed.get(prefix + f.name, prefix + f.name)
            assert path in keys, f"{path} missing from the CRD schema"
    assert "schedule.deadline_hours" in keys


def test_every_schema_key_is_accepted_by_the_job_file_parser() -> None:
    """The maximal spec uses every key of the schema, and parse_spec takes all of them."""
    used = _schema_keys({"properties": {k: _as_schema(v) for k, v in FULL_SPEC.items()}})
    schema_keys = {k for k in _schema_keys(spec_schema()) if not k.startswith("placement.options.")}
    # The other spelling of deadline_hours, and a campaign's keys (tests/test_k8s_campaign_spec.py).
    assert schema_keys - used == {"schedule.deadline", "array.items", "array.format", "array.output", "array.workers",
                                  "array.item_list", "array.items_from", "array.items_from.config_map",
                                  "array.items_from.key",
                                  # A gang is not an array job (tests/test_gang_spec.py).
                                  "resources.nodes", "resources.min_nodes", "resources.mixed_markets"}
    spec = job_spec_from_gpujob(gpujob(FULL_SPEC))
    assert spec.name == "fold-all"
    assert spec.resources == Resources(("A100", "H100"), 2, 40.0, "ampere")
    assert spec.env["QUOTE"] == 'a "b" \\ c'
    assert spec.schedule.deadline == dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC).timestamp() + 48.5 * 3600
    assert spec.placement.options["kubernetes"]["tolerations"] == [{"key": "x", "operator": "Exists"}]
    assert spec.array == ArraySpec(10000, 500)


def test_a_campaign_gpujob_cannot_name_an_items_file() -> None:
    with pytest.raises(SpecError) as err:
        job_spec_from_gpujob(gpujob({"command": ["true"], "schedule": {"estimated_hours": 1},
                                     "array": {"items": "seqs.fasta", "workers": 4}}))
    assert err.value.field == "array.items" and "item_list or array.items_from" in err.value.problem


def _as_schema(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"properties": {k: _as_schema(v) for k, v in value.items()}}
    return {}


def test_absolute_deadline_and_name_from_metadata() -> None:
    spec = job_spec_from_gpujob(gpujob({"command": ["true"], "schedule": {"estimated_hours": 1,
                                                                          "deadline": "2026-11-03T00:00:00Z"}}))
    assert spec.name == "fold"
    assert spec.schedule.deadline == dt.datetime(2026, 11, 3, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(("spec", "field"), [
    ({"command": ["x"], "schedule": {"estimated_hours": 1}, "bogus": 1}, "bogus"),
    ({"command": "python x.py", "schedule": {"estimated_hours": 1}}, "command"),
    ({"command": ["x"], "schedule": {"estimated_hours": 0}}, "schedule.estimated_hours"),
    ({"command": ["x"], "schedule": {"estimated_hours": 1}, "env": {"ORCH_JOB_ID": "x"}}, "env.ORCH_JOB_ID"),
    ({"command": ["x"], "schedule": {"estimated_hours": 5, "deadline_hours": 1}}, "schedule.deadline"),
    ({"command": ["x"]}, "schedule.estimated_hours"),
])
def test_invalid_specs_fail_like_job_files(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        job_spec_from_gpujob(gpujob(spec))
    assert err.value.field == field
    assert err.value.source == "GpuJob lab/fold"


def test_nulls_in_a_gpujob_spec_mean_defaults() -> None:
    spec = job_spec_from_gpujob(gpujob({"command": ["true"], "resources": {"gpu": ["V100"], "min_gpu_memory_gb": None},
                                        "schedule": {"estimated_hours": 1, "budget_usd": None}}))
    assert spec.resources.min_gpu_memory_gb is None and spec.schedule.budget_usd is None


def test_gpujob_from_a_job_file() -> None:
    # A deadline a few weeks after now (deadlines more than ten years away are refused).
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).replace(microsecond=0)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = 'name = "Fold Run"\ncommand = ["python", "f.py"]\n[resources]\ngpu = "A100"\n' \
           f'[schedule]\nestimated_hours = 2\ndeadline = {stamp}\n'
    manifest = gpujob_from_toml(text, source="job.toml", namespace="lab")
    assert manifest["metadata"] == {"name": "fold-run", "namespace": "lab"}
    assert manifest["spec"]["resources"]["gpu"] == ["A100"]
    assert manifest["spec"]["schedule"]["deadline"] == stamp
    created = (when - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert job_spec_from_gpujob({**manifest, "metadata": {**manifest["metadata"], "creationTimestamp": created}})


def test_status_shows_unpriced_not_zero() -> None:
    priced = render_status(GpuJobStatus("Running", "spot", 0.4213, 1.5, 4.25, preemptions=1, attempts=2,
                                        deadline=0.0), job_id="j", generation=3)
    assert (priced["progress"], priced["cost"], priced["projected"], priced["costUsd"]) == ("42.1%", "$1.50",
                                                                                           "$4.25", 1.5)
    assert priced["deadline"] == "1970-01-01T00:00:00Z" and priced["observedGeneration"] == 3
    unknown = render_status(GpuJobStatus("Running", "spot", cost_usd=None, projected_usd=None,
                                         price_source="unknown"), job_id="j", generation=None)
    assert unknown["cost"] == "unpriced" and unknown["projected"] == "unpriced"
    assert "costUsd" not in unknown and unknown["priceSource"] == "unknown"


def test_printer_columns_point_at_status_fields() -> None:
    status_props = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    names = [c[0] for c in PRINTER_COLUMNS]
    assert names == ["Phase", "Market", "Progress", "Cost", "Projected", "Deadline", "Age"]
    for _, _, path in PRINTER_COLUMNS[:-1]:
        assert path.removeprefix(".status.") in status_props["properties"]
