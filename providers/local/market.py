"""The simulated spot market of the `local` provider: when is spot capacity available in a zone?

Availability is a pure function of (settings, seed, zone, seconds since the job's market epoch), so
a restarted controller, a test and a second provider object over the same home all see the same
reclamations at the same moments. Three models:

- `random`: alternating available / unavailable periods with exponentially distributed lengths
  (means `mean_available_seconds`, `mean_unavailable_seconds`). Time is cut into blocks of
  `BLOCK_CYCLES` mean cycles, each drawn from its own generator seeded by (seed, zone, block), so
  any answer costs at most a few blocks' draws however long the market has run and whatever the
  means: no setting can make the controller draw without end. Every zone starts available at the
  epoch, so a job's first spot launch succeeds.
- `trace`: a spot availability trace in the public format of `skypilot-org/spot-traces`
  (`{"metadata": {"gap_seconds": G}, "data": [1, 0, ...]}`; a value >= 1 means available),
  replayed from the epoch and looped when it runs out; `gap_seconds` may be overridden to replay a
  two-week trace in minutes.
- `always`: spot is never reclaimed.

A folder of aligned traces (`traces`, the format `orch simulate --traces` reads) is one `trace` per
zone, the zone named by its file (`us-east4-a_h100_1.json` -> `us-east4-a`) and placed in the region
its name says, so the multi-zone policy sees the folder's zones and regions (`expand_folder`).

Listing the folder and reading trace files is the only I/O here (`build_market`); the answers are
computed from memory.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from providers.bounded_read import MIB, FileRefused, display, read_bounded_text
from providers.local.settings import MAX_GAP_SECONDS, MAX_ZONES, MIN_GAP_SECONDS, ZONE_NAME, LocalSettings
from vocab import PermanentError

# No reclamation is scheduled further ahead than this; an attempt running longer is simply re-checked
# at its next launch. Thirty days covers every trace in the public set.
MARKET_HORIZON_SECONDS = 30 * 86400.0
# A trace file is read whole into memory: the public ones are under 200 KiB (about 100,000 ticks).
MAX_TRACE_BYTES = 16 * MIB
MAX_TRACE_TICKS = 2_000_000
# The random model: mean cycles per block, a hard cap on draws per block (about 4x the expected
# 2 * BLOCK_CYCLES, so it binds only in theory), blocks `next_time` looks ahead, blocks kept drawn.
BLOCK_CYCLES = 256
MAX_DRAWS_PER_BLOCK = 8 * BLOCK_CYCLES
NEXT_TIME_BLOCKS = 4
CACHED_BLOCKS = 8


class TraceError(PermanentError):
    """A trace file that cannot be used; the message names the file and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Trace:
    """One zone's availability, one value per tick of `gap_seconds`, looped past its end."""

    source: str
    gap_seconds: float
    available: tuple[bool, ...]
    _on: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _off: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_on", tuple(i for i, a in enumerate(self.available) if a))
        object.__setattr__(self, "_off", tuple(i for i, a in enumerate(self.available) if not a))

    def at(self, t: float) -> bool:
        return self.available[self._tick(t) % len(self.available)]

    def next_time(self, t: float, want: bool) -> float | None:
        """The first moment >= t at which availability equals `want`; None if it never does."""
        ticks = self._on if want else self._off
        if not ticks:
            return None
        n = len(self.available)
        tick = self._tick(t)
        lap, offset = divmod(tick, n)
        k = bisect.bisect_left(ticks, offset)
        target = lap * n + ticks[k] if k < len(ticks) else (lap + 1) * n + ticks[0]
        return max(t, target * self.gap_seconds)

    def _tick(self, t: float) -> int:
        return max(0, math.floor(t / self.gap_seconds))


def parse_trace(doc: object, source: str, gap_seconds: float | None = None) -> Trace:
    """A trace from its decoded JSON; `gap_seconds` overrides the file's tick length."""

    def bad(problem: str) -> TraceError:
        return TraceError(f"spot trace {source}: {problem}", provider="local", code="bad-trace")

    if not isinstance(doc, dict):
        raise bad("must be a JSON object with 'metadata' and 'data'")
    metadata = doc.get("metadata")
    gap = metadata.get("gap_seconds") if isinstance(metadata, dict) else None
    if gap_seconds is None:
        if isinstance(gap, bool) or not isinstance(gap, int | float):
            raise bad("metadata.gap_seconds is missing or not a number")
        gap_seconds = float(gap)
    if not math.isfinite(gap_seconds) or gap_seconds <= 0:
        raise bad(f"gap_seconds must be greater than 0, got {gap_seconds!r}")
    if not MIN_GAP_SECONDS <= gap_seconds <= MAX_GAP_SECONDS:
        raise bad(f"gap_seconds must be between {MIN_GAP_SECONDS:g} and {MAX_GAP_SECONDS:g}, got {gap_seconds:g}")
    data = doc.get("data")
    if not isinstance(data, list) or not data:
        raise bad("'data' must be a non-empty list of availability counts (1 = available, 0 = not)")
    if len(data) > MAX_TRACE_TICKS:
        raise bad(f"'data' has {len(data)} ticks; at most {MAX_TRACE_TICKS} are allowed")
    for i, value in enumerate(data):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"data[{i}] must be a count >= 0, got {value!r}")
    return Trace(source, gap_seconds, tuple(v >= 1 for v in data))


def load_trace(path: Path, gap_seconds: float | None = None) -> Trace:
    """Read one trace file: a regular file of at most `MAX_TRACE_BYTES` (16 MiB), never a device or FIFO."""
    source = display(path)
    try:
        text = read_bounded_text(path, MAX_TRACE_BYTES)
    except FileRefused as exc:
        problem = f"cannot be read ({exc})" if exc.unreadable else str(exc)
        raise TraceError(f"spot trace {source}: {problem}", provider="local", code="bad-trace") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"spot trace {source}: not valid JSON ({exc})", provider="local", code="bad-trace") from None
    except RecursionError:
        raise TraceError(f"spot trace {source}: nested too deep", provider="local", code="bad-trace") from None
    return parse_trace(doc, source, gap_seconds)


@dataclass(frozen=True, slots=True)
class Block:
    """The random model over `[start, end)`: availability at `start`, then the moments it flips."""

    start: float
    end: float
    first_available: bool
    switches: tuple[float, ...]

    def at(self, t: float) -> bool:
        return self.first_available != (bisect.bisect_right(self.switches, t) % 2 == 1)

    def next_switch(self, t: float) -> float | None:
        """The first flip strictly after `t` within the block, if any."""
        k = bisect.bisect_right(self.switches, t)
        return self.switches[k] if k < len(self.switches) else None


class RandomSchedule:
    """Availability of one zone in the `random` model: deterministic per (seed, zone), drawn by block.

    Block k covers `[k * block_seconds, (k + 1) * block_seconds)` and is drawn from a generator of its
    own, so reaching any moment costs one block's draws, not every draw since the epoch. Block 0 starts
    available (a job's first spot launch succeeds); a later block starts available with the model's
    long-run probability, mean_available / (mean_available + mean_unavailable). As periods are
    exponential (memoryless) and a block spans hundreds of cycles, this matches an unbroken
    alternating process in every statistic a job can observe.
    """

    def __init__(self, seed: int, zone: str, mean_available: float, mean_unavailable: float) -> None:
        if not (math.isfinite(mean_available) and math.isfinite(mean_unavailable)
                and mean_available > 0 and mean_unavailable > 0):
            raise ValueError("the means of the random market must be finite and greater than 0")
        # A str seed is hashed with sha512 by `random`: stable across processes and PYTHONHASHSEED.
        self._key = f"orch-local-market/{seed}/{zone}"
        self._means = (mean_available, mean_unavailable)
        self.block_seconds = BLOCK_CYCLES * (mean_available + mean_unavailable)
        self._blocks: OrderedDict[int, Block] = OrderedDict()
        self._lock = threading.Lock()

    def block(self, index: int) -> Block:
        """Block `index`, drawn on first use; the last `CACHED_BLOCKS` are kept."""
        with self._lock:
            found = self._blocks.get(index)
            if found is None:
                found = self._blocks[index] = self._draw(index)
                if len(self._blocks) > CACHED_BLOCKS:
                    self._blocks.popitem(last=False)
            else:
                self._blocks.move_to_end(index)
            return found

    def _draw(self, index: int) -> Block:
        rng = random.Random(f"{self._key}/{index}")
        up, down = self._means
        start, end = index * self.block_seconds, (index + 1) * self.block_seconds
        first = index == 0 or rng.random() < up / (up + down)
        available, t, switches = first, start, []
        for _ in range(MAX_DRAWS_PER_BLOCK):
            t += rng.expovariate(1.0 / (up if available else down))
            if t >= end:
                break
            switches.append(t)
            available = not available
        return Block(start, end, first, tuple(switches))

    def _index(self, t: float) -> int:
        return int(max(t, 0.0) // self.block_seconds)

    def at(self, t: float) -> bool:
        return self.block(self._index(t)).at(max(t, 0.0))

    def next_time(self, t: float, want: bool) -> float | None:
        """The first moment >= t at which availability equals `want`; None past `NEXT_TIME_BLOCKS` blocks."""
        t = max(t, 0.0)
        first = self._index(t)
        for index in range(first, first + NEXT_TIME_BLOCKS):
            block = self.block(index)
            since = t if index == first else block.start
            if block.at(since) == want:
                return since
            flip = block.next_switch(since)
            if flip is not None:
                return flip
        return None


class SpotMarket:
    """Spot availability of every zone for one job, in seconds since that job's market epoch."""

    def __init__(self, settings: LocalSettings, traces: dict[str, Trace] | None = None) -> None:
        self.settings = settings
        self._traces = traces or {}
        self._random = {
            zone: RandomSchedule(settings.seed, zone, settings.mean_available_seconds,
                                 settings.mean_unavailable_seconds)
            for zone in settings.zones
        }

    def available(self, zone: str, t: float) -> bool:
        model = self._model(zone)
        return True if model is None else model.at(t)

    def next_unavailable(self, zone: str, t: float) -> float | None:
        """When spot capacity in `zone` is next taken back (t itself if it is gone now)."""
        return self._next(zone, t, want=False)

    def next_available(self, zone: str, t: float) -> float | None:
        return self._next(zone, t, want=True)

    def _next(self, zone: str, t: float, *, want: bool) -> float | None:
        model = self._model(zone)
        if model is None:
            return t if want else None
        moment = model.next_time(t, want)
        return moment if moment is not None and moment - t <= MARKET_HORIZON_SECONDS else None

    def _model(self, zone: str) -> Trace | RandomSchedule | None:
        if zone not in self.settings.zones:
            known = ", ".join(self.settings.zones)
            raise PermanentError(f"local market: unknown zone {zone!r}; zones: {known}", provider="local")
        if self.settings.availability == "always":
            return None
        if self.settings.availability == "trace":
            return self._traces[zone]
        return self._random[zone]


def expand_folder(settings: LocalSettings) -> LocalSettings:
    """`settings` with its `traces` folder made explicit: one zone per `*.json` (named by the file up to
    its first `_`), its file as the zone's `trace`, regions from the zone names. A folder that is
    missing, empty, holds two files for one zone, a file not named after a zone, or more than
    `MAX_ZONES` zones is refused with a `TraceError` that names it."""
    if settings.traces is None:
        return settings
    folder = Path(settings.traces)
    source = display(folder)

    def bad(problem: str) -> TraceError:
        return TraceError(f"spot traces {source}: {problem}", provider="local", code="bad-trace")

    if not folder.is_dir():
        raise bad("is not a folder (a folder of <zone>_*.json trace files, one per zone)")
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if not files:
        raise bad("holds no .json trace files")
    pairs: dict[str, str] = {}
    for path in files:
        zone = path.stem.split("_")[0]
        if not ZONE_NAME.fullmatch(zone):
            raise bad(f"{path.name} is not named after a zone (<zone>_*.json)")
        if zone in pairs:
            raise bad(f"{path.name} is a second trace for zone {zone!r}")
        pairs[zone] = str(path)
    if len(pairs) > MAX_ZONES:
        raise bad(f"holds {len(pairs)} zones; at most {MAX_ZONES} are allowed")
    return dataclasses.replace(settings, traces=None, trace=tuple(sorted(pairs.items())), zones=tuple(sorted(pairs)),
                               availability="trace", region_names="from-zones")


def _aligned(traces: dict[str, Trace]) -> None:
    """A folder's traces are aligned (tick i is the same interval in every zone): same tick and length."""
    first = next(iter(traces.values()))
    for trace in traces.values():
        if (trace.gap_seconds, len(trace.available)) != (first.gap_seconds, len(first.available)):
            raise TraceError(f"spot trace {trace.source}: not aligned with {first.source} ({len(trace.available)} "
                             f"ticks of {trace.gap_seconds:g} s, not {len(first.available)} of "
                             f"{first.gap_seconds:g} s)", provider="local", code="bad-trace")


def build_market(settings: LocalSettings) -> SpotMarket:
    """The market for `settings`, reading its trace files (paths must already be absolute); a `traces`
    folder is expanded first (`expand_folder`), and the market's `settings` are the expanded ones."""
    folder = settings.traces is not None
    settings = expand_folder(settings)
    traces: dict[str, Trace] = {}
    if settings.availability == "trace":
        loaded: dict[str, Trace] = {}
        for zone in settings.zones:
            path = settings.trace_for(zone)
            assert path is not None  # LocalSettings guarantees a trace per zone
            if path not in loaded:
                loaded[path] = load_trace(Path(path), settings.gap_seconds)
            traces[zone] = loaded[path]
        if folder:
            _aligned(traces)
    return SpotMarket(settings, traces)
