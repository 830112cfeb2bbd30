"""Spot availability traces: the public file format, a strict loader, and where the data lives.

A trace file is JSON `{"metadata": {"gap_seconds": G, ...}, "data": [n0, n1, ...], "prices": [...]}`:
`data[i]` is how many spot instances could be had during tick i (`[i*G, (i+1)*G)` seconds from the
start), so for one-node traces 1 means available and 0 means not. `prices`, when present, is the
spot price per hour at each tick. This is the format of the public release that accompanies Wu et
al., "Can't Be Late" (NSDI 2024), github.com/skypilot-org/spot-traces, and of the paper's 2,400
evaluation windows (`derived-random-start-2week/`, see the data folder's README).

This module reads files, so it sits outside the pure core: the policies never see a `Trace`, only the
availability the simulator or the live loop derived from it. The data itself is never copied into
the repository: `traces_dir()` finds it through `ORCH_TRACES_DIR`, by default `../shared/data/spot-traces`
beside the repository.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from providers.bounded_read import MIB, FileRefused, display, read_bounded_text

TRACES_ENV = "ORCH_TRACES_DIR"
WINDOWS_SUBDIR = "derived-random-start-2week"
ONE_NODE_SUBDIR = "skypilot-org-spot-traces/availability/1-node/aws-10-26-2022"
# Limits of one trace file (docs/job-spec.md, "Limits"). The public files are under 200 KiB and
# 100,000 ticks; a file is read whole, so these bound the memory one `--trace` or option can take.
MAX_TRACE_BYTES = 16 * MIB
MAX_TRACE_TICKS = 2_000_000
# A tick shorter than a second would make a simulation step through billions of ticks per day
# of trace; longer than a year is no availability trace at all.
MIN_GAP_SECONDS, MAX_GAP_SECONDS = 1.0, 365 * 86400.0


class TraceError(ValueError):
    """A trace file that cannot be used; the message names the file and what is wrong with it."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


@dataclass(frozen=True, slots=True)
class Trace:
    """One zone's spot availability over time, at a fixed tick length.

    Satisfies `providers.sim.AvailabilityTrace`, so the `sim` provider can replay it.
    """

    gap_seconds: float
    data: tuple[int, ...]
    prices: tuple[float, ...] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.data)

    @property
    def hours(self) -> float:
        return len(self.data) * self.gap_seconds / 3600.0

    def available(self, nodes: int = 1) -> npt.NDArray[np.bool_]:
        """Ticks at which `nodes` instances could be had (a gang needs all of them at once)."""
        return np.asarray(self.data, dtype=np.int64) >= nodes

    def window(self, start: int, length: int) -> Trace:
        """Ticks `[start, start + length)`, as the paper's random-start windows cut them."""
        if start < 0 or length <= 0 or start + length > len(self.data):
            raise ValueError(f"window [{start}, {start + length}) is outside the trace of {len(self.data)} ticks")
        prices = None if self.prices is None else self.prices[start : start + length]
        return Trace(self.gap_seconds, self.data[start : start + length], prices, f"{self.source}[{start}:]")


def parse_trace(doc: Any, source: str) -> Trace:
    """Validate a decoded trace document; every refusal names `source` and the offending field."""
    if not isinstance(doc, dict):
        raise TraceError(source, f"must be a JSON object, not {type(doc).__name__}")
    for key in ("metadata", "data"):
        if key not in doc:
            raise TraceError(source, f"missing key {key!r} (have: {', '.join(sorted(map(str, doc))) or 'none'})")
    meta = doc["metadata"]
    if not isinstance(meta, dict) or "gap_seconds" not in meta:
        raise TraceError(source, "metadata must be an object with 'gap_seconds'")
    gap = meta["gap_seconds"]
    if isinstance(gap, bool) or not isinstance(gap, int | float) or not math.isfinite(gap):
        raise TraceError(source, f"metadata.gap_seconds must be a number, got {gap!r}")
    if gap <= 0:
        raise TraceError(source, f"metadata.gap_seconds must be greater than 0, got {gap!r}")
    if not MIN_GAP_SECONDS <= gap <= MAX_GAP_SECONDS:
        raise TraceError(source, f"metadata.gap_seconds must be between {MIN_GAP_SECONDS:g} and "
                         f"{MAX_GAP_SECONDS:g} seconds, got {gap!r}")
    data = _counts(doc["data"], source)
    prices = _prices(doc.get("prices"), len(data), source)
    return Trace(float(gap), data, prices, source)


def _counts(raw: Any, source: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise TraceError(source, "data must be a non-empty list of instance counts")
    if len(raw) > MAX_TRACE_TICKS:
        raise TraceError(source, f"data has {len(raw)} ticks; at most {MAX_TRACE_TICKS} are allowed")
    for i, value in enumerate(raw):
        # A float (even 1.0) or a boolean is a sign of a different format, not a count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise TraceError(source, f"data[{i}] must be an integer count, got {value!r}")
        if value < 0:
            raise TraceError(source, f"data[{i}] must not be negative, got {value}")
    return tuple(raw)


def _prices(raw: Any, ticks: int, source: str) -> tuple[float, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != ticks:
        raise TraceError(source, f"prices must be a list as long as data ({ticks} ticks)")
    for i, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise TraceError(source, f"prices[{i}] must be a non-negative number, got {value!r}")
    return tuple(float(v) for v in raw)


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Read one trace file; a missing, special or oversized file, bad JSON or a wrong shape is a `TraceError`.

    Only a regular file of at most `MAX_TRACE_BYTES` (16 MiB) is read (`--trace /dev/zero` or a FIFO
    is refused at once, without reading).
    """
    source = display(path)
    try:
        text = read_bounded_text(path, MAX_TRACE_BYTES)
    except FileRefused as exc:
        problem = str(exc) if str(exc) == "no such file" or not exc.unreadable else f"cannot read: {exc}"
        raise TraceError(source, problem) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(source, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise TraceError(source, "not valid JSON: nested too deep") from None
    return parse_trace(doc, source)


def load_windows(folder: str | os.PathLike[str]) -> list[Trace]:
    """Every `<n>.json` in `folder`, in numeric order (0, 1, 2, ..., 10, not 0, 1, 10, 2)."""
    root = Path(folder)
    if not root.is_dir():
        raise TraceError(str(root), "no such folder")
    files = [p for p in root.iterdir() if p.suffix == ".json"]
    if not files:
        raise TraceError(str(root), "holds no .json trace files")
    return [load_trace(p) for p in sorted(files, key=_numeric_key)]


def _numeric_key(path: Path) -> tuple[int, str]:
    stem = path.stem
    return (int(stem), stem) if stem.isdigit() else (1 << 62, stem)


def traces_dir() -> Path:
    """The public trace data: `$ORCH_TRACES_DIR`, else `../shared/data/spot-traces` beside the repository."""
    configured = os.environ.get(TRACES_ENV)
    if configured:
        return Path(configured)
    repo_root = Path(__file__).resolve().parents[2]
    return (repo_root.parent / "shared" / "data" / "spot-traces").resolve()


def window_envs(root: Path | None = None) -> list[str]:
    """Names of the paper's evaluation environments (zone_gpu_count), e.g. `us-west-2a_v100_1`."""
    base = (root or traces_dir()) / WINDOWS_SUBDIR
    if not base.is_dir():
        raise TraceError(str(base), "no such folder (set ORCH_TRACES_DIR to the spot-traces data)")
    return sorted(p.name for p in base.iterdir() if p.is_dir())


def stack(traces: Sequence[Trace], nodes: int = 1) -> npt.NDArray[np.bool_]:
    """Equal-length traces as one boolean array `[trace, tick]`, the fast simulator's input."""
    lengths = {len(t) for t in traces}
    if len(lengths) != 1:
        raise ValueError(f"traces differ in length: {sorted(lengths)}")
    return np.stack([t.available(nodes) for t in traces])
