"""A GpuJob's campaign items: inline (`array.item_list`) or from a ConfigMap (`array.items_from`).

A job file names an items file on the submitting machine (`array.items`); a GpuJob cannot, since the
controller has no such file. It gives the items instead:

- `item_list`: a list in the resource itself, at most `MAX_INLINE_ITEMS` entries, all strings (each
  one item, as a line of a text file) or all objects (each one item, as a line of a JSONL file, its
  `"id"` the key). Small campaigns; the API server bounds a whole object to about 1.5 MiB.
- `items_from: {config_map: NAME, key: KEY}`: the text of one key of a ConfigMap in the GpuJob's own
  namespace, read as a FASTA, text or JSONL file (by `format`, else by the key's extension), `data` or
  `binaryData`. A ConfigMap holds at most 1 MiB.

Either way the text goes through the very reader `orch submit` uses for a file
(`orchestrator.job.items_format.parse_items`), with the same limits; a problem is one `SpecError`
naming the GpuJob, the field and the problem (with the line or entry), and the controller stores
nothing. A ConfigMap that does not exist yet is `ItemsNotReady` (the GpuJob waits for it, as a pod
waits for a ConfigMap it mounts), not an error: `kubectl apply -f dir/` may create it second.

`split_items_fields` is pure (the spec's validation); `read_gpujob_items` reads the ConfigMap through
the reader it is given and parses.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.spec import SpecError
from orchestrator.job.items_format import FORMATS, ItemsError, ParsedItem, format_for, parse_items

__all__ = ["ITEMS_FROM", "ITEM_LIST", "MAX_INLINE_ITEMS", "ConfigMapData", "GpuJobItems", "ItemsNotReady",
           "read_gpujob_items", "split_items_fields"]

MAX_INLINE_ITEMS = 10_000
ITEM_LIST, ITEMS_FROM = "item_list", "items_from"


@dataclass(frozen=True, slots=True)
class ConfigMapData:
    data: Mapping[str, str]
    binary_data: Mapping[str, str]  # base64, as the API serves it


# (namespace, name) -> the ConfigMap's contents, or None when it does not exist.
ConfigMapReader = Callable[[str, str], ConfigMapData | None]


class ItemsNotReady(Exception):
    """The ConfigMap the items come from does not exist (yet); the message says which."""


@dataclass(frozen=True, slots=True)
class GpuJobItems:
    """Where a GpuJob's items come from, checked for shape: `inline` entries, or a ConfigMap's key."""

    fmt: str
    inline: tuple[Any, ...] | None = None
    config_map: str | None = None
    key: str | None = None

    @property
    def field(self) -> str:
        return f"array.{ITEM_LIST}" if self.inline is not None else f"array.{ITEMS_FROM}"

    def placeholder(self, namespace: str) -> str:
        """What the stored spec records as `array.items`: where the items came from, for people."""
        if self.inline is not None:
            return f"GpuJob {ITEM_LIST}"
        return f"ConfigMap {namespace}/{self.config_map} key {self.key}"


def split_items_fields(source: str, array: Mapping[str, Any]) -> tuple[dict[str, Any], GpuJobItems | None]:
    """A GpuJob's `array` table with `item_list` / `items_from` taken out (None: not a campaign), checked
    for shape; the table gets `items` and `format` so that `parse_spec_dict` validates the rest as a job
    file's campaign."""
    rest = {k: v for k, v in array.items() if k not in (ITEM_LIST, ITEMS_FROM)}
    given = [k for k in (ITEM_LIST, ITEMS_FROM) if array.get(k) is not None]
    if "items" in array:
        raise SpecError(source, "array.items", "names a file on the submitting machine, which the controller "
                        f"cannot read; give the items as array.{ITEM_LIST} or array.{ITEMS_FROM} (a ConfigMap)")
    if not given:
        return rest, None
    if len(given) > 1:
        raise SpecError(source, "array", f"give {ITEM_LIST} or {ITEMS_FROM}, not both")
    if given == [ITEM_LIST]:
        items = _inline(source, array[ITEM_LIST], array.get("format"))
    else:
        items = _config_map_ref(source, array[ITEMS_FROM], array.get("format"))
    return {**rest, "items": items.field, "format": items.fmt}, items


def _inline(source: str, entries: Any, fmt: Any) -> GpuJobItems:
    field = f"array.{ITEM_LIST}"
    if fmt is not None:
        raise SpecError(source, "array.format", f"applies to {ITEMS_FROM}; {ITEM_LIST} entries are read as text "
                        "(strings) or JSONL (objects)")
    if not isinstance(entries, list) or not entries:
        raise SpecError(source, field, "must be a non-empty list of strings or of objects")
    if len(entries) > MAX_INLINE_ITEMS:
        raise SpecError(source, field, f"holds {len(entries):,} entries; at most {MAX_INLINE_ITEMS:,} are allowed "
                        f"inline (use {ITEMS_FROM}, or split the campaign)")
    kinds = {str if isinstance(e, str) else dict if isinstance(e, Mapping) else None for e in entries}
    if None in kinds:
        bad = next(i for i, e in enumerate(entries) if not isinstance(e, str | Mapping))
        raise SpecError(source, f"{field}[{bad}]", f"must be a string or an object, not {type(entries[bad]).__name__}")
    if len(kinds) > 1:
        raise SpecError(source, field, "mixes strings and objects; give all strings (text items) or all objects "
                        "(JSONL items)")
    for i, e in enumerate(entries):
        if isinstance(e, str) and ("\n" in e or "\r" in e):
            raise SpecError(source, f"{field}[{i}]", "holds a line break; a text item is one line")
    return GpuJobItems("text" if kinds == {str} else "jsonl", inline=tuple(entries))


def _config_map_ref(source: str, ref: Any, fmt: Any) -> GpuJobItems:
    field = f"array.{ITEMS_FROM}"
    if not isinstance(ref, Mapping) or set(ref) - {"config_map", "key"}:
        raise SpecError(source, field, "must be {config_map: NAME, key: KEY}")
    name, key = ref.get("config_map"), ref.get("key")
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        raise SpecError(source, field, "needs config_map (a ConfigMap in the GpuJob's namespace) and key (one of its "
                        "keys), both non-empty strings")
    if fmt is not None and fmt not in FORMATS:
        raise SpecError(source, "array.format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        found = format_for(key, fmt)
    except ValueError as exc:
        raise SpecError(source, field, str(exc)) from None
    return GpuJobItems(found, config_map=name, key=key)


def read_gpujob_items(source: str, namespace: str, items: GpuJobItems,
                      read_config_map: ConfigMapReader) -> list[ParsedItem]:
    """The items, parsed as an items file would be; SpecError on any problem, ItemsNotReady while the
    ConfigMap is missing."""
    if items.inline is not None:
        lines = []
        for i, e in enumerate(items.inline):
            try:
                lines.append(e if isinstance(e, str) else json.dumps(e, allow_nan=False))
            except ValueError:  # NaN or Infinity: not JSON, and every reader of the results would choke
                raise SpecError(source, f"{items.field}[{i}]", "holds NaN or Infinity, which JSON does not allow") \
                    from None
        return _parse(source, items, "\n".join(lines), f"{source} {ITEM_LIST}")
    assert items.config_map is not None and items.key is not None
    where = f"ConfigMap {namespace}/{items.config_map}"
    found = read_config_map(namespace, items.config_map)
    if found is None:
        raise ItemsNotReady(f"waiting for {where} ({items.field})")
    if items.key in found.data:
        text = found.data[items.key]
    elif items.key in found.binary_data:
        try:
            text = base64.b64decode(found.binary_data[items.key], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise SpecError(source, items.field, f"{where} key {items.key} is not UTF-8 text") from None
    else:
        keys = ", ".join(sorted({*found.data, *found.binary_data})) or "none"
        raise SpecError(source, items.field, f"{where} has no key {items.key!r} (its keys: {keys})")
    return _parse(source, items, text, f"{where} key {items.key}")


def _parse(source: str, items: GpuJobItems, text: str, where: str) -> list[ParsedItem]:
    try:
        return parse_items(text, items.fmt, source=where)
    except ItemsError as exc:
        if items.inline is not None and exc.line is not None:  # line n of the joined text is entry n - 1
            raise SpecError(source, f"{items.field}[{exc.line - 1}]", exc.problem) from None
        raise SpecError(source, items.field, str(exc)) from None
