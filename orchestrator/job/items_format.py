"""A campaign's items file -> a list of items: FASTA records, lines of text, or JSON objects.

Checked completely before anything is stored, like the job file itself: a problem is one
`ItemsError` naming the file, the line and what is wrong, so `orch submit` refuses the whole
campaign with one line and stores nothing. The file is read by `orchestrator.job_files` through
`providers.bounded_read` (a regular file, at most `MAX_ITEMS_FILE_BYTES`), because its path comes from
the user; this module parses text.

Each item becomes a `ParsedItem`: its position (`index`, 0-based, the order results stream in), a
short `key` shown in listings (a FASTA record's id, a JSON object's `"id"`), and its `payload` as JSON
text, exactly what the worker receives:

- FASTA: `{"id": "P69905", "description": "HBA_HUMAN ...", "sequence": "MVLSPADKTNV..."}`
- text: the line as a JSON string (blank lines are skipped, the line ending is dropped)
- JSONL: the object, as written (one per non-blank line)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

from vocab.text import MIB, display

__all__ = [
    "FORMATS",
    "MAX_CAMPAIGN_ITEMS",
    "MAX_ITEMS_FILE_BYTES",
    "MAX_ITEM_BYTES",
    "ItemsError",
    "ParsedItem",
    "format_for",
    "parse_items",
]

# A campaign's items are rows in the store, inserted in one transaction at submit: bounded so that a
# wrong file (a genome, a log) is refused quickly instead of filling the database and the memory.
MAX_ITEMS_FILE_BYTES = 256 * MIB
MAX_CAMPAIGN_ITEMS = 1_000_000
MAX_ITEM_BYTES = 1 * MIB  # one item's payload (titin, the longest protein, is ~35,000 residues)
MAX_KEY_CHARS = 255

FORMATS = ("fasta", "text", "jsonl")
_EXTENSIONS = {".fasta": "fasta", ".fa": "fasta", ".faa": "fasta", ".fas": "fasta", ".fna": "fasta",
               ".txt": "text", ".lines": "text", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# IUPAC residues and nucleotides, plus '*' (stop) and '-' (gap): anything else is not a sequence.
_SEQUENCE = re.compile(r"[A-Za-z*\-]*")


class ItemsError(ValueError):
    """An items file that cannot be used; `str()` is one line: file, line (when known), problem."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source, self.line, self.problem = source, line, problem
        super().__init__(f"{source} line {line}: {problem}" if line else f"{source}: {problem}")


@dataclass(frozen=True, slots=True)
class ParsedItem:
    index: int
    key: str | None
    payload: str  # JSON text


def format_for(path: str, given: str | None = None) -> str:
    """The format named by `given`, else by the file's extension; ValueError saying which to set."""
    if given is not None:
        if given not in FORMATS:
            raise ValueError(f"must be one of {', '.join(FORMATS)}, got {given!r}")
        return given
    suffix = PurePath(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    known = ", ".join(sorted(_EXTENSIONS))
    raise ValueError(f"cannot tell the format of {display(path)} from its extension (known: {known}); "
                     "set array.format to fasta, text or jsonl")


def parse_items(text: str, fmt: str, *, source: str) -> list[ParsedItem]:
    parsers: dict[str, Callable[[str, str], list[ParsedItem]]] = {
        "fasta": _fasta, "text": _text, "jsonl": _jsonl}
    items = parsers[fmt](text, source)
    if not items:
        raise ItemsError(source, None, f"holds no items (read as {fmt})")
    return items


class _Collector:
    """Numbers the items, and refuses too many of them or one too large, naming the line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[ParsedItem] = []

    def add(self, line: int, key: str | None, payload: str) -> None:
        if len(self.items) >= MAX_CAMPAIGN_ITEMS:
            raise ItemsError(self.source, line, f"more than {MAX_CAMPAIGN_ITEMS:,} items; split the campaign")
        if len(payload) > MAX_ITEM_BYTES:
            raise ItemsError(self.source, line, f"item {len(self.items)} is larger than {MAX_ITEM_BYTES // MIB} MiB; "
                             "put large inputs in storage and list their URIs")
        self.items.append(ParsedItem(len(self.items), key, payload))


def _lines(text: str) -> list[str]:
    # Only \n (and \r\n) end a line: str.splitlines would also split on \x0c, \u2028, ..., and then the
    # line numbers in messages would not match what an editor shows.
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def _fasta(text: str, source: str) -> list[ParsedItem]:
    out = _Collector(source)
    seen: dict[str, int] = {}
    header: tuple[int, str, str] | None = None  # (line, id, description)
    parts: list[str] = []

    def flush() -> None:
        if header is None:
            return
        line, rid, desc = header
        seq = "".join(parts)
        if not seq:
            raise ItemsError(source, line, f"record {rid!r} has no sequence")
        out.add(line, rid, json.dumps({"id": rid, "description": desc, "sequence": seq}))

    for n, raw in enumerate(_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):  # ';' starts a comment in the original FASTA format
            continue
        if line.startswith(">"):
            flush()
            rid, _, desc = line[1:].strip().partition(" ")
            if not rid:
                raise ItemsError(source, n, "a '>' header without a record id")
            if len(rid) > MAX_KEY_CHARS or not rid.isprintable():
                raise ItemsError(source, n, f"record id must be 1 to {MAX_KEY_CHARS} printable characters")
            if rid in seen:
                raise ItemsError(source, n, f"duplicate record id {rid!r} (first at line {seen[rid]})")
            seen[rid] = n
            header, parts = (n, rid, desc.strip()), []
            continue
        if header is None:
            raise ItemsError(source, n, "sequence data before the first '>' header: is this a FASTA file?")
        residues = "".join(line.split())
        if not _SEQUENCE.fullmatch(residues):
            bad = next(c for c in residues if not _SEQUENCE.fullmatch(c))
            raise ItemsError(source, n, f"{bad!r} is not a residue letter (record {header[1]!r})")
        parts.append(residues.upper())
    flush()
    return out.items


def _text(text: str, source: str) -> list[ParsedItem]:
    out = _Collector(source)
    for n, line in enumerate(_lines(text), start=1):
        if line.strip():
            out.add(n, None, json.dumps(line))
    return out.items


def _jsonl(text: str, source: str) -> list[ParsedItem]:
    out = _Collector(source)
    for n, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else (
                "nested too deep" if isinstance(exc, RecursionError) else str(exc))
            raise ItemsError(source, n, f"not valid JSON: {why}") from None
        if not isinstance(value, dict):
            raise ItemsError(source, n, f"must be a JSON object, not {type(value).__name__}")
        key = value.get("id")
        key = str(key) if isinstance(key, str | int) and not isinstance(key, bool) else None
        key = key if key and key.isprintable() else None  # shown in listings on a terminal
        out.add(n, key[:MAX_KEY_CHARS] if key else None, json.dumps(value, allow_nan=False))
    return out.items


def _no_constant(name: str) -> None:
    """NaN and Infinity are not JSON: the store and every reader of results would choke on them."""
    raise ValueError(f"{name} is not allowed in JSON")
