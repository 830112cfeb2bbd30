"""The simulated spot market of the `local` provider: when is spot capacity available in a zone?

Availability is a pure function of (settings, seed, zone, seconds since the job's market epoch), so
a restarted controller, a test and a second provider object over the same home all see the same
reclamations at the same moments. Three models:

- `random`: alternating available / unavailable periods with exponentially distributed lengths
  (means `mean_available_seconds`, `mean_unavailable_seconds`), drawn from a generator seeded by
  (seed, zone). Every zone starts available at the epoch, so a job's first spot launch succeeds.
- `trace`: a spot availability trace in the public format of `skypilot-org/spot-traces`
  (`{"metadata": {"gap_seconds": G}, "data": [1, 0, ...]}`; a value >= 1 means available),
  replayed from the epoch and looped when it runs out; `gap_seconds` may be overridden to replay a
  two-week trace in minutes.
- `always`: spot is never reclaimed.

Reading trace files is the only I/O here (`build_market`); the answers are computed from memory.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

from providers.base import PermanentError
from providers.local_settings import LocalSettings

# No reclamation is scheduled further ahead than this; an attempt running longer is simply re-checked
# at its next launch. Thirty days covers every trace in the public set.
MARKET_HORIZON_SECONDS = 30 * 86400.0


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
    data = doc.get("data")
    if not isinstance(data, list) or not data:
        raise bad("'data' must be a non-empty list of availability counts (1 = available, 0 = not)")
    for i, value in enumerate(data):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"data[{i}] must be a count >= 0, got {value!r}")
    return Trace(source, gap_seconds, tuple(v >= 1 for v in data))


def load_trace(path: Path, gap_seconds: float | None = None) -> Trace:
    try:
        text = path.read_text()
    except OSError as exc:
        raise TraceError(f"spot trace {path}: cannot be read ({exc.strerror or exc})",
                         provider="local", code="bad-trace") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"spot trace {path}: not valid JSON ({exc})", provider="local", code="bad-trace") from None
    return parse_trace(doc, str(path), gap_seconds)


class RandomSchedule:
    """Switch times of one zone in the `random` model, drawn lazily and kept: deterministic per key.

    `switches[k]` starts period k; even periods are available, odd ones are not; switches[0] = 0.
    """

    def __init__(self, seed: int, zone: str, mean_available: float, mean_unavailable: float) -> None:
        # A str seed is hashed with sha512 by `random`: stable across processes and PYTHONHASHSEED.
        self._rng = random.Random(f"orch-local-market/{seed}/{zone}")
        self._means = (mean_available, mean_unavailable)
        self._switches = [0.0]
        self._lock = threading.Lock()

    def switches_until(self, t: float) -> list[float]:
        """Every switch time up to and including the first one after `t`."""
        with self._lock:
            while self._switches[-1] <= t:
                period = len(self._switches) - 1
                self._switches.append(self._switches[-1] + self._rng.expovariate(1.0 / self._means[period % 2]))
            return list(self._switches)

    def at(self, t: float) -> bool:
        return self._period(t)[0] % 2 == 0

    def next_time(self, t: float, want: bool) -> float:
        period, end = self._period(t)
        return t if (period % 2 == 0) == want else end

    def _period(self, t: float) -> tuple[int, float]:
        t = max(t, 0.0)
        switches = self.switches_until(t)
        k = bisect.bisect_right(switches, t) - 1
        return k, switches[k + 1]


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


def build_market(settings: LocalSettings) -> SpotMarket:
    """The market for `settings`, reading its trace files (paths must already be absolute)."""
    traces: dict[str, Trace] = {}
    if settings.availability == "trace":
        loaded: dict[str, Trace] = {}
        for zone in settings.zones:
            path = settings.trace_for(zone)
            assert path is not None  # LocalSettings guarantees a trace per zone
            if path not in loaded:
                loaded[path] = load_trace(Path(path), settings.gap_seconds)
            traces[zone] = loaded[path]
    return SpotMarket(settings, traces)
