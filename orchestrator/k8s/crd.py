"""The GpuJob CustomResourceDefinition, generated from the dataclasses of `orchestrator.core.spec`.

The CRD's `spec` schema is walked out of `JobSpec` and its nested dataclasses, so a field added to the
job model appears in the CRD without anyone remembering to; a test compares the result with
`helm/orch/crds/gpujob.yaml`, and `python -m orchestrator.k8s.crd > helm/orch/crds/gpujob.yaml`
regenerates it. Where `job.toml` spells a field differently from the dataclass (`gpu` for
`Resources.gpus`; `deadline` as a date-time or `deadline_hours` for `ScheduleSpec.deadline`) the
difference is declared once in `_TOML_KEYS`, and the generator refuses an override naming a field
that no longer exists. Keys are snake_case, exactly as in `job.toml`, so one file converts to the
other by hand.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any

from orchestrator.core.spec import MARKETS, ArraySpec, JobSpec, ScheduleSpec
from orchestrator.k8s.gpujob_items import MAX_INLINE_ITEMS
from providers.base import Resources

GROUP = "orch.dev"
VERSION = "v1alpha1"
KIND = "GpuJob"
PLURAL = "gpujobs"
SINGULAR = "gpujob"
SHORT_NAMES = ("gj",)
API_VERSION = f"{GROUP}/{VERSION}"

Schema = dict[str, Any]

# job.toml keys that differ from the dataclass field they fill: (class, field) -> {key: schema}.
_TOML_KEYS: dict[tuple[type, str], dict[str, Schema]] = {
    (Resources, "gpus"): {
        "gpu": {"type": "array", "items": {"type": "string"},
                "description": "GPU models that will do (any of them); empty: any GPU."},
    },
    (ScheduleSpec, "deadline"): {
        "deadline": {"type": "string", "format": "date-time",
                     "description": "Absolute deadline with a time zone, e.g. 2026-12-04T18:00:00Z."},
        "deadline_hours": {"type": "number",
                           "description": "Deadline relative to the GpuJob's creationTimestamp."},
    },
}
# Keys a GpuJob has and a job file has not: a campaign's items in the resource or a ConfigMap, since
# the controller cannot read a file named on the submitting machine (orchestrator/k8s/gpujob_items.py).
_GPUJOB_KEYS: dict[type, dict[str, Schema]] = {
    ArraySpec: {
        "item_list": {"type": "array", "maxItems": MAX_INLINE_ITEMS,
                      "items": {"x-kubernetes-preserve-unknown-fields": True},
                      "description": "A campaign's items inline: all strings (text items) or all objects "
                                     "(JSONL items)."},
        "items_from": {"type": "object", "required": ["config_map", "key"],
                       "properties": {"config_map": {"type": "string"}, "key": {"type": "string"}},
                       "description": "A campaign's items from one key of a ConfigMap in this namespace, read "
                                      "as FASTA, text or JSONL (by format, else by the key's extension)."},
    },
}
# Fields with no default in the dataclass that a GpuJob may still leave out.
_OPTIONAL: set[tuple[type, str]] = {
    (JobSpec, "name"),  # defaults to metadata.name
    (JobSpec, "command"),  # may be left out when an image is given
    (JobSpec, "resources"),  # every resource has a default
    (ArraySpec, "shard_size"),  # defaults to count: one task
    (ArraySpec, "count"),  # a campaign has none (its items are counted); the controller requires it otherwise
}
_ENUMS: dict[tuple[type, str], tuple[str, ...]] = {(ScheduleSpec, "market"): MARKETS}
_DESCRIPTIONS: dict[tuple[type, str], str] = {
    (JobSpec, "command"): "The job's argv, run by the orch agent; never through a shell.",
    (JobSpec, "env"): "Extra environment; ORCH_* names are set by orch and refused here.",
    (ScheduleSpec, "estimated_hours"): "Hours of work on the chosen GPU, the basis of every projection.",
    (JobSpec, "placement"): "Where attempts may run; options.kubernetes holds the pod placement preset.",
    (ArraySpec, "items"): "job.toml only (a file on the submitting machine); a GpuJob gives item_list or items_from.",
}


def _scalar(tp: Any) -> Schema | None:
    return {str: {"type": "string"}, float: {"type": "number"}, int: {"type": "integer"},
            bool: {"type": "boolean"}}.get(tp)


def _type_schema(tp: Any) -> Schema:
    """OpenAPI v3 for one annotation; a structural schema as apiextensions.k8s.io/v1 requires."""
    scalar = _scalar(tp)
    if scalar is not None:
        return scalar
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _object_schema(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"cannot express the union {tp!r} in a structural schema")
        return _type_schema(rest[0])
    if origin is tuple:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin in (Mapping, dict) and args[1] is Any:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}  # free-form table
    if origin in (Mapping, dict):
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    raise TypeError(f"no OpenAPI mapping for {tp!r}")


def _object_schema(cls: type) -> Schema:
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    names = {f.name for f in dataclasses.fields(cls)}
    stale = [f for (c, f) in (*_TOML_KEYS, *_OPTIONAL, *_ENUMS, *_DESCRIPTIONS) if c is cls and f not in names]
    if stale:
        raise LookupError(f"crd overrides name fields {cls.__name__} no longer has: {stale}")
    properties: dict[str, Schema] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        key = (cls, f.name)
        if key in _TOML_KEYS:
            properties.update(_TOML_KEYS[key])
            continue
        schema = _type_schema(hints[f.name])
        if key in _ENUMS:
            schema["enum"] = list(_ENUMS[key])
        if key in _DESCRIPTIONS:
            schema["description"] = _DESCRIPTIONS[key]
        properties[f.name] = schema
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and key not in _OPTIONAL:
            required.append(f.name)
    properties.update(_GPUJOB_KEYS.get(cls, {}))
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    return out


def spec_schema() -> Schema:
    """The GpuJob `.spec` schema: `job.toml`, field for field."""
    schema = _object_schema(JobSpec)
    # No `self == oldSelf` rule for immutability: CEL's cost estimate for comparing unbounded lists
    # and free-form option tables can exceed the API server's budget and get the CRD refused. The
    # controller reports a spec changed after submission in .status.message instead.
    schema["description"] = "The job, as in job.toml (snake_case keys). Changes after submission are ignored."
    schema["x-kubernetes-validations"] = [
        {"rule": "has(self.command) || has(self.image)", "message": "give a command or an image"},
    ]
    return schema


def status_schema() -> Schema:
    """What the controller writes; the display strings exist because printer columns cannot format."""
    kinds = {
        "string": ("phase", "market", "message", "jobId", "progress", "cost", "projected", "deadline",
                   "priceSource"),
        "number": ("progressFraction", "costUsd", "projectedUsd"),
        "integer": ("preemptions", "attempts", "liveAttempts", "observedGeneration", "itemsTotal", "itemsDone",
                    "itemsFailed", "itemsQuarantined"),
    }
    props = {name: {"type": kind} for kind, names in kinds.items() for name in names}
    return {"type": "object", "properties": props}


PRINTER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Phase", "string", ".status.phase"),
    ("Market", "string", ".status.market"),
    ("Progress", "string", ".status.progress"),
    ("Cost", "string", ".status.cost"),
    ("Projected", "string", ".status.projected"),
    ("Deadline", "string", ".status.deadline"),
    ("Age", "date", ".metadata.creationTimestamp"),
)


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a plain dict, in a stable key order."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": list(SHORT_NAMES), "categories": ["orch"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": n, "type": t, "jsonPath": p} for n, t, p in PRINTER_COLUMNS
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema(),
                        "status": status_schema(),
                    },
                }},
            }],
        },
    }


HEADER = (
    "# Generated by `python -m orchestrator.k8s.crd` from orchestrator/core/spec.py; do not edit by hand.\n"
    "# tests/test_k8s_crd.py fails when this file and the generator disagree.\n"
)


def render_crd() -> str:
    """The CRD as YAML text, exactly as stored in the Helm chart."""
    # PyYAML ships without type stubs; it comes with the kubernetes client. Imported by name so the
    # strict type check needs no stub package.
    yaml: Any = importlib.import_module("yaml")
    return HEADER + str(yaml.safe_dump(build_crd(), sort_keys=False, default_flow_style=False, width=100))


def main() -> int:
    sys.stdout.write(render_crd())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
