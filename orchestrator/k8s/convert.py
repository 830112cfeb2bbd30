"""A GpuJob's `.spec` to a `JobSpec`, through the very validation that `job.toml` gets.

The spec dict goes through `orchestrator.core.spec.parse_spec_dict`, so a GpuJob and a job file are
accepted or refused by the same code with the same messages (the source is named
"GpuJob <namespace>/<name>"): a second validator would drift. The reverse direction
(`gpujob_from_toml`) serves `orch submit --kubernetes job.toml`. A campaign's items come from the
resource or a ConfigMap instead of a file (`orchestrator.k8s.gpujob_items`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from orchestrator.core.spec import JobSpec, SpecError, parse_spec, parse_spec_dict
from orchestrator.job.items_format import ParsedItem
from orchestrator.job_files import load_items_of
from orchestrator.k8s.crd import API_VERSION, KIND
from orchestrator.k8s.gpujob_items import (
    ITEM_LIST,
    MAX_INLINE_ITEMS,
    ConfigMapReader,
    GpuJobItems,
    read_gpujob_items,
    split_items_fields,
)
from providers.kubernetes.pods import ts

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _without_nulls(value: Any) -> Any:
    """JSON nulls dropped (absent means default in a job file, and TOML has no null)."""
    if isinstance(value, Mapping):
        return {str(k): _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def source_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{KIND} {meta.get('namespace', '')}/{meta.get('name', '')}"


def job_spec_from_gpujob(
    obj: Mapping[str, Any], *, policies: Callable[[str], bool] | None = None
) -> JobSpec:
    """Validate a GpuJob's spec as a job file. `name` defaults to metadata.name.

    A relative deadline (`deadline_hours`) counts from metadata.creationTimestamp, so it resolves to
    the same instant however often, and by whichever replica, the resource is read. A campaign's spec
    counts one nominal item per worker until its items are read (`campaign_from_gpujob`).
    """
    return _parse(obj, policies)[0]


def campaign_from_gpujob(
    obj: Mapping[str, Any], *, read_config_map: ConfigMapReader, policies: Callable[[str], bool] | None = None
) -> tuple[JobSpec, list[ParsedItem]]:
    """The spec and, for a campaign, its items (`array.item_list` or `array.items_from`, see
    `orchestrator.k8s.gpujob_items`), read and checked whole before anything is stored: SpecError
    naming the GpuJob, the field and the problem; ItemsNotReady while the ConfigMap is missing."""
    spec, items = _parse(obj, policies)
    if items is None or spec.array is None:
        return spec, []
    meta = obj.get("metadata") or {}
    parsed = read_gpujob_items(source_of(obj), str(meta.get("namespace") or ""), items, read_config_map)
    array = replace(spec.array, items=items.placeholder(str(meta.get("namespace") or "")))
    return replace(spec, array=array.with_item_count(len(parsed))), parsed


def _parse(obj: Mapping[str, Any], policies: Callable[[str], bool] | None) -> tuple[JobSpec, GpuJobItems | None]:
    meta = obj.get("metadata") or {}
    source = source_of(obj)
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError(source, "spec", "is required and must be an object")
    doc = dict(spec)
    doc.setdefault("name", meta.get("name", ""))
    items = None
    if isinstance(doc.get("array"), Mapping):
        # Nulls mean defaults in the settings, but inside an item they are the item's own data.
        array = doc["array"]
        inline = {ITEM_LIST: array[ITEM_LIST]} if array.get(ITEM_LIST) is not None else {}
        settings = _without_nulls({k: v for k, v in array.items() if k != ITEM_LIST})
        doc["array"], items = split_items_fields(source, {**settings, **inline})
    created = meta.get("creationTimestamp")
    submitted_at = ts(created) or 0.0  # the API server's RFC 3339 time, as pods' are read
    parsed = parse_spec_dict(_without_nulls(doc), source=source, submitted_at=submitted_at, policies=policies)
    return parsed, items


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


def gpujob_from_toml(text: str, *, source: str, namespace: str, name: str | None = None) -> dict[str, Any]:
    """A GpuJob manifest from a job file, for `orch submit --kubernetes job.toml`.

    The file is validated first (with the submission time taken as now, as the controller will take
    the resource's creation time); a single `gpu = "A100"` becomes the list the CRD wants. A
    campaign's items file (`source` is the job file's path) is read here and goes into the resource
    as `array.item_list`: text lines as strings, FASTA records and JSON lines as objects, which the
    controller reads back into the very same items.
    """
    spec = parse_spec(text, source=source, submitted_at=dt.datetime.now(dt.UTC).timestamp())
    doc = _jsonable(tomllib.loads(text))
    resources = doc.get("resources")
    if isinstance(resources, dict) and isinstance(resources.get("gpu"), str):
        resources["gpu"] = [resources["gpu"]]
    if spec.array is not None and spec.array.is_campaign:
        doc["array"] = _inline_items(spec, doc["array"], source)
    job_name = name or _DNS_LABEL.sub("-", str(doc.get("name", "job")).lower()).strip("-")[:63] or "job"
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": job_name, "namespace": namespace}, "spec": doc}


# What a GpuJob may carry inline: the API server refuses an object over about 1.5 MiB.
MAX_INLINE_BYTES = 1024 * 1024


def _inline_items(spec: JobSpec, array: Mapping[str, Any], source: str) -> dict[str, Any]:
    _, items = load_items_of(spec, source)
    entries = [json.loads(it.payload) for it in items]
    size = sum(len(it.payload) for it in items)
    if len(entries) > MAX_INLINE_ITEMS or size > MAX_INLINE_BYTES:
        raise SpecError(source, "array.items", f"{len(entries):,} items ({size:,} bytes) are too many to carry in a "
                        f"GpuJob (at most {MAX_INLINE_ITEMS:,} items and {MAX_INLINE_BYTES:,} bytes); put the file in "
                        "a ConfigMap and give array.items_from")
    return {**{k: v for k, v in array.items() if k not in ("items", "format")}, "item_list": entries}
