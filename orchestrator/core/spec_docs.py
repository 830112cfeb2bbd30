"""docs/job-spec.md's field tables, written from the job file's models (`orchestrator.core.spec_model`).

Each table in the page sits between two markers that name the model and, where a table shows only
some of its fields, which:

    <!-- fields: ArrayFile count shard_size -->
    | field | type | default | meaning |
    ...
    <!-- end fields -->

`rewrite(page)` returns the page with every such table regenerated: the type column from the
field's JSON Schema (type, bounds, choices), the default from the model (or the field's `x-default`
where "none" would say less than the words), the meaning from the field's docstring. It reads and
writes no file: `python tools/spec_docs.py` does, and tests/test_spec_docs.py fails when the
committed page is not what this returns.
"""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrator.core import spec_model

_BLOCK = re.compile(r"(<!-- fields: (?P<model>\w+)(?P<fields>(?: \w+)*) -->\n)(?P<body>.*?)(<!-- end fields -->)",
                    re.DOTALL)
HEADER = "| field | type | default | meaning |\n|---|---|---|---|\n"


def rewrite(page: str) -> str:
    """The page with each marked table generated afresh from the models."""
    return _BLOCK.sub(lambda m: m.group(1) + table(m.group("model"), m.group("fields").split()) + m.group(5), page)


def table(model_name: str, fields: list[str]) -> str:
    """One Markdown table: the named fields of the model, or all of its fields that are not sub-tables."""
    schema = spec_model.model_schema(getattr(spec_model, model_name))
    props: dict[str, Any] = schema["properties"]
    names = fields or [name for name, sub in props.items() if "$ref" not in sub]
    unknown = sorted(set(names) - set(props))
    if unknown:
        raise LookupError(f"docs/job-spec.md names fields {model_name} does not have: {unknown}")
    required = set(schema.get("required", ()))
    rows = [(f"`{name}`", type_text(props[name]), default_text(props[name], name in required),
             props[name].get("description", "")) for name in names]
    # A `|` inside a cell (a pattern's alternatives) would end the cell: Markdown escapes it.
    return HEADER + "".join("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |\n" for row in rows)


def _code(value: Any) -> str:
    return f"`{json.dumps(value, ensure_ascii=False)}`" if not isinstance(value, str) else f"`{value}`"


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) or value != int(value) else f"{int(value):,}"


def _bounds(s: dict[str, Any]) -> str:
    low, high = s.get("minimum"), s.get("maximum")
    above = s.get("exclusiveMinimum") if low is None else None  # "> 0, at least 0.001" says 0.001
    if above is not None:
        return f" > {_number(above)}" + (f", at most {_number(high)}" if high is not None else "")
    if low is not None and high is not None:
        return f", {_number(low)} \u2013 {_number(high)}"
    if low is not None:
        return f" ≥ {_number(low)}"
    return f", at most {_number(high)}" if high is not None else ""


def type_text(s: dict[str, Any]) -> str:
    """What a value must be, in words: "integer, 1 to 256", "list of non-empty strings"."""
    if "anyOf" in s:
        return " or ".join(type_text(sub) for sub in s["anyOf"])
    if "x-one-of" in s:
        return "one of " + ", ".join(f"`{v}`" for v in s["x-one-of"])
    if "enum" in s:
        values = [f"`{v}`" for v in s["enum"]]
        return ", ".join(values[:-1]) + " or " + values[-1]
    kind = s.get("type")
    if kind == "string":
        if s.get("format") == "date-time":
            return "date-time with a time zone"
        if "maxLength" in s:
            return f"string, {s.get('minLength', 0)}\u2013{s['maxLength']} printable characters on one line"
        if "pattern" in s:
            return f"string matching `{s['pattern']}`"
        return "non-empty string" if s.get("minLength") else "string"
    if kind in ("integer", "number"):
        return f"{kind}{_bounds(s)}"
    if kind == "array":
        item = type_text(s.get("items", {}))
        many = "non-empty list" if s.get("minItems") else "list"
        return f"{many} of {_plural(item)}"
    if kind == "object":
        inner = s.get("additionalProperties")
        if isinstance(inner, dict) and inner.get("type") == "object":
            return "table of tables"
        return f"table of string → {type_text(inner)}" if isinstance(inner, dict) else "table"
    return "table" if "$ref" in s else "any"


def _plural(item: str) -> str:
    head, _, rest = item.partition(",")
    for one, many in (("string", "strings"), ("integer", "integers"), ("number", "numbers")):
        if head.endswith(one):
            return head[: -len(one)] + many + ("," + rest if rest else "")
    return item


def default_text(s: dict[str, Any], required: bool) -> str:
    if "x-default" in s:
        return str(s["x-default"])  # where "none" would say less than words
    if required:
        return "required"
    return _code(s["default"]) if "default" in s else "none"
