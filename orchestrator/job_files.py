"""Reading the files a user names: a job file and a campaign's items file, bounded, into the pure core's
parsers (`core.spec.parse_spec`, `core.items_input.parse_items`). The core reads no file itself; the
CLI, the Kubernetes controller and the benchmarks read through here.

Both paths come from the user, so both are read through `providers.bounded_read`: a regular file, at
most `MAX_SPEC_BYTES` or `MAX_ITEMS_FILE_BYTES`; anything else is refused without reading it all
(`orch submit /dev/zero`). Every problem is a `SpecError` (or `ItemsError`) naming the file and field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from orchestrator.core.spec import MAX_SPEC_BYTES, JobSpec, SpecError, parse_spec
from orchestrator.job.items_format import MAX_ITEMS_FILE_BYTES, ItemsError, ParsedItem, format_for, parse_items
from providers.bounded_read import FileRefused, display, read_bounded_text


def load_items(path: str, fmt: str, *, source: str | None = None) -> list[ParsedItem]:
    """Read and parse an items file; every problem (unreadable, too large, malformed) is an `ItemsError`."""
    source = source or display(path)
    try:
        text = read_bounded_text(path, MAX_ITEMS_FILE_BYTES)
    except FileRefused as exc:
        raise ItemsError(source, None, f"cannot read the file: {exc}" if exc.unreadable else str(exc)) from None
    return parse_items(text, fmt, source=source)



def load_items_of(spec: JobSpec, job_file: str | Path) -> tuple[JobSpec, list[ParsedItem]]:
    """Read a campaign's items file (a relative path is from the job file's folder): the spec with
    the resolved path and the item count, and the items. Every problem is a `SpecError` on
    `array.items` whose message names the items file and line; nothing is stored before this passed."""
    array = spec.array
    if array is None or array.items is None:
        return spec, []
    path = Path(job_file).resolve().parent / array.items
    try:
        items = load_items(str(path), format_for(array.items, array.format), source=display(array.items))
    except ValueError as exc:  # ItemsError included
        raise SpecError(display(job_file), "array.items", str(exc)) from None
    return replace(spec, array=replace(array, items=str(path)).with_item_count(len(items))), items


def load_spec(path: str | Path, *, submitted_at: float, policies: Callable[[str], bool] | None = None) -> JobSpec:
    """Read and parse a job file; a missing, unreadable, special or oversized file is a `SpecError` too.

    A job file is a few hundred bytes: anything past `MAX_SPEC_BYTES` (1 MiB) is a mistake, such as
    `orch submit /dev/zero` or a data file named by accident, and is refused without reading it all.
    """
    source = display(path)
    try:
        text = read_bounded_text(path, MAX_SPEC_BYTES)
    except FileRefused as exc:
        raise SpecError(source, "", f"cannot read the file: {exc}" if exc.unreadable else str(exc)) from None
    return parse_spec(text, source=source, submitted_at=submitted_at, policies=policies)
