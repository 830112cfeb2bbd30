"""The GpuJob CustomResourceDefinition, generated from the job file's typed models.

The CRD's `spec` schema is the JSON Schema of `orchestrator.core.spec_model.JobFile` (the models that
validate every job file and GpuJob), turned into the structural subset of OpenAPI v3 that
apiextensions.k8s.io/v1 accepts (`structural`): references inlined, `X or list of X` as the list
(what a GpuJob writes), exclusive bounds as OpenAPI v3.0 writes them, free-form tables kept with
`x-kubernetes-preserve-unknown-fields`, and no defaults (the controller applies the models' own). A
field added to the models appears in the CRD without anyone remembering to; a test compares the
result with `helm/orch/crds/gpujob.yaml`, and `python -m orchestrator.k8s.crd >
helm/orch/crds/gpujob.yaml` regenerates it. Keys are snake_case, exactly as in `job.toml`, so one
file converts to the other by hand.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from orchestrator.core.spec_model import JobFile, model_schema
from orchestrator.k8s.gpujob_items import MAX_INLINE_ITEMS

GROUP = "orch.dev"
VERSION = "v1alpha1"
KIND = "GpuJob"
PLURAL = "gpujobs"
SINGULAR = "gpujob"
SHORT_NAMES = ("gj",)
API_VERSION = f"{GROUP}/{VERSION}"

Schema = dict[str, Any]

# Keys a GpuJob has and a job file has not: a campaign's items in the resource or a ConfigMap, since
# the controller cannot read a file named on the submitting machine (orchestrator/k8s/gpujob_items.py).
_GPUJOB_ARRAY_KEYS: dict[str, Schema] = {
    "item_list": {"type": "array", "maxItems": MAX_INLINE_ITEMS,
                  "items": {"x-kubernetes-preserve-unknown-fields": True},
                  "description": "A campaign's items inline: all strings (text items) or all objects (JSONL items)."},
    "items_from": {"type": "object", "required": ["config_map", "key"],
                   "properties": {"config_map": {"type": "string"}, "key": {"type": "string"}},
                   "description": "A campaign's items from one key of a ConfigMap in this namespace, read as "
                                  "FASTA, text or JSONL (by format, else by the key's extension)."},
}
# What a GpuJob may leave out that a job file must give: its name is metadata.name.
_FROM_METADATA = {"name"}
# OpenAPI v3 keywords a structural schema may carry (others, such as `title` or orch's `x-default`, are
# for editors and docs).
_KEPT = ("description", "type", "format", "enum", "minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength",
         "pattern", "minItems", "maxItems")


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """One JSON Schema (draft 2020-12, as pydantic writes it) as a Kubernetes structural schema."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        return structural({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, defs)
    if "anyOf" in schema:
        # A value that may be one X or a list of them: a GpuJob gives the list.
        lists = [sub for sub in schema["anyOf"] if sub.get("type") == "array"]
        if len(lists) != 1:
            raise TypeError(f"cannot express {schema['anyOf']!r} in a structural schema")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return structural({**lists[0], **rest}, defs)
    out: Schema = {k: schema[k] for k in _KEPT if k in schema}
    if "exclusiveMinimum" in out and "minimum" in out:  # "> 0 and at least 0.001": the second says both
        del out["exclusiveMinimum"]
    elif "exclusiveMinimum" in out:
        out["minimum"], out["exclusiveMinimum"] = out["exclusiveMinimum"], True  # OpenAPI v3.0's form
    if "properties" in schema:
        out["properties"] = {name: structural(sub, defs) for name, sub in schema["properties"].items()}
    if schema.get("required"):
        out["required"] = list(schema["required"])
    if "items" in schema:
        out["items"] = structural(schema["items"], defs)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        out["additionalProperties"] = structural(extra, defs)
    elif extra is True or extra == {}:  # a free-form table (a provider's options)
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def spec_schema() -> Schema:
    """The GpuJob `.spec` schema: `job.toml`, field for field."""
    model = model_schema(JobFile)
    schema = structural(model, model.get("$defs", {}))
    schema["required"] = [k for k in schema.get("required", []) if k not in _FROM_METADATA]
    schema["properties"]["array"]["properties"].update(_GPUJOB_ARRAY_KEYS)
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
    "# Generated by `python -m orchestrator.k8s.crd` from orchestrator/core/spec_model.py; do not edit by hand.\n"
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
