"""The pure parts of the Kubernetes API-server fake: patches (RFC 7386, RFC 6902) and selectors.

Kept apart from the server in tests/kube_fake.py because they are plain functions of documents,
with no HTTP and no state: what the controller's patches and list calls mean is decided here.
`PatchError` is the fake's 422 Invalid; the server turns it into the API's Status answer.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(Exception):
    """A JSON patch that cannot apply: a failed `test`, nothing to remove, an unknown op."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 add/remove/replace/test, enough for finalizers and annotations."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op["value"]:
                raise PatchError(f"test failed at {op['path']}")
        elif kind == "remove":
            try:
                del parent[int(last) if isinstance(parent, list) else last]
            except (KeyError, IndexError):
                raise PatchError(f"nothing to remove at {op['path']}") from None
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, op["value"])
                else:
                    parent[idx] = op["value"]
            else:
                parent[last] = op["value"]
        else:
            raise PatchError(f"unsupported op {kind}")
    return doc


def label_selector_match(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, joined by commas."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_selector_match(obj: dict[str, Any], selector: str) -> bool:
    """`path.to.field=value` terms joined by commas; a missing field reads as the empty string."""
    for term in filter(None, selector.split(",")):
        path, value = term.split("=", 1)
        cur: Any = obj
        for p in path.split("."):
            cur = cur.get(p) if isinstance(cur, dict) else None
        if str(cur if cur is not None else "") != value:
            return False
    return True


def selected(obj: dict[str, Any], labels: str, fields: str) -> bool:
    """Whether an object passes a list or watch call's label and field selectors (empty: any)."""
    if labels and not label_selector_match(obj["metadata"].get("labels") or {}, labels):
        return False
    return not fields or field_selector_match(obj, fields)
