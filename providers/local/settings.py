"""Settings of the `local` provider and of its simulated spot market, with their validation.

A job tunes the market through `[placement.options.local]` in its job.toml, which reaches the
provider untouched as `LaunchRequest.options`: a mapping of plain TOML values. Everything a user
can get wrong there is caught here with a `PermanentError` that names the key, because a typo in a
market setting would otherwise silently run the default market and make a demo lie.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from providers.base import PermanentError
from providers.catalog import load_catalog, region_of_zone

AVAILABILITY_MODELS = ("random", "trace", "always")
# Where a zone is: every zone in region `local`, or in the region its name says (`us-east4-a` ->
# `us-east4`), as a folder of multi-region traces needs for the multi-zone policy's move costs.
REGION_NAMES = ("local", "from-zones")
LOCAL_REGION = "local"
OPTIONS_PREFIX = "placement.options.local"

# A trace for every zone (a path), or one per zone (sorted (zone, path) pairs).
TraceSetting = str | tuple[tuple[str, str], ...] | None

# Bounds of every number a job (or the operator) may set (docs/providers/local.md, "Limits"). The
# market's work per question is bounded whatever the means (see `local_market`), but a mean below a
# second or a tick below 10 ms describes no market anyone could observe through a polling loop.
DAY = 86400.0
MAX_NOTICE_SECONDS = 3600.0
MIN_MEAN_SECONDS, MAX_MEAN_SECONDS = 1.0, 365 * DAY
MIN_GAP_SECONDS, MAX_GAP_SECONDS = 0.01, 365 * DAY
MAX_TERMINATE_GRACE_SECONDS = 600.0  # a terminate waits this long for the job, holding up the loop
MAX_GC_AFTER_SECONDS = 30 * DAY
MAX_SEED = 2**63 - 1
MAX_ZONES = 16
MAX_PATH_CHARS = 4096
ZONE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """How the local provider behaves; the defaults give a market that reclaims every ~30 min."""

    notice_seconds: float = 120.0
    availability: str = "random"
    mean_available_seconds: float = 1800.0
    mean_unavailable_seconds: float = 300.0
    seed: int = 0
    trace: TraceSetting = None
    gap_seconds: float | None = None
    zones: tuple[str, ...] = ("local-a", "local-b")
    price_provider: str = "aws"
    price_region: str = "us-east-1"
    terminate_grace_seconds: float = 5.0
    # Ended instance folders older than this are removed; the reconciler must have seen them by then.
    gc_after_seconds: float = 3600.0
    # A folder of aligned traces, one `<zone>_*.json` per zone (`orch simulate --traces`' format): the
    # zones, their traces and their regions all come from it (`market.expand_folder`).
    traces: str | None = None
    region_names: str = "local"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _VALIDATORS[f.name](f"local settings: {f.name}", getattr(self, f.name))
        self._check_combination()

    def _check_combination(self) -> None:
        if self.traces is not None and self.trace is not None:
            raise _error("traces", "and trace are both set: give a folder of traces or trace files, not both")
        if self.traces is not None and self.availability != "trace":
            raise _error("traces", f"is set but availability is {self.availability!r}; use availability = 'trace'")
        if self.availability == "trace" and self.trace is None and self.traces is None:
            raise _error("trace", "is required when availability = 'trace'")
        if isinstance(self.trace, tuple) and self.availability == "trace":
            missing = [z for z in self.zones if z not in dict(self.trace)]
            if missing:
                raise _error("trace", f"has no trace for zone(s) {', '.join(missing)}")
        types = load_catalog().of(self.price_provider)
        if not types:
            known = sorted({t.provider for t in load_catalog().types})
            raise _error("price_provider", f"unknown provider {self.price_provider!r}; known: {', '.join(known)}")
        if not any(t.region(self.price_region) for t in types):
            regions = sorted({r.region for t in types for r in t.regions})
            raise _error("price_region", f"{self.price_provider} has no prices in {self.price_region!r}; "
                         f"known: {', '.join(regions)}")

    def with_options(self, options: Mapping[str, object]) -> LocalSettings:
        """These settings overridden by a job's `[placement.options.local]` table, validated."""
        changes: dict[str, object] = {}
        for key, value in options.items():
            if key not in _VALIDATORS:
                known = ", ".join(sorted(_VALIDATORS))
                raise PermanentError(f"{OPTIONS_PREFIX}.{_key(key)}: unknown setting; known: {known}",
                                     provider="local", code="invalid-setting")
            changes[key] = _VALIDATORS[key](f"{OPTIONS_PREFIX}.{key}", value)
        for key in ("trace", "traces"):
            if key in changes and changes[key] is not None:
                chosen = changes.setdefault("availability", "trace")
                if chosen != "trace":
                    raise _error(key, f"is set but availability is {chosen!r}; use availability = 'trace'")
        if changes.get("trace") is not None:
            changes.setdefault("traces", None)
        if changes.get("traces") is not None:
            if "zones" in changes:
                raise _error("traces", "names the zones (one per file): narrow them with [placement] regions, "
                             "not zones")
            changes.setdefault("trace", None)
            changes.setdefault("region_names", "from-zones")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def region_of(self, zone: str) -> str:
        """The region offers and instances in `zone` carry (see `region_names`)."""
        return region_of_zone(zone) if self.region_names == "from-zones" else LOCAL_REGION

    def trace_for(self, zone: str) -> str | None:
        if isinstance(self.trace, tuple):
            return dict(self.trace).get(zone)
        return self.trace

    def resolved(self, base: Path) -> LocalSettings:
        """Trace paths made absolute against `base` (the job's workdir), so they survive a restart."""
        if self.traces is not None:
            return dataclasses.replace(self, traces=str(base / self.traces))
        if self.trace is None:
            return self
        if isinstance(self.trace, str):
            return dataclasses.replace(self, trace=str(base / self.trace))
        return dataclasses.replace(self, trace=tuple((z, str(base / p)) for z, p in self.trace))

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["zones"] = list(self.zones)
        if isinstance(self.trace, tuple):
            out["trace"] = dict(self.trace)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LocalSettings:
        return cls().with_options(data)


def _key(key: object) -> str:
    """A key as messages show it: bare when TOML would write it bare, else quoted, so it stays one line."""
    return key if isinstance(key, str) and _BARE_KEY.fullmatch(key) else repr(key)


def _error(key: str, problem: str) -> PermanentError:
    return PermanentError(f"{OPTIONS_PREFIX}.{key}: {problem}", provider="local", code="invalid-setting")


def _fail(label: str, problem: str) -> PermanentError:
    return PermanentError(f"{label}: {problem}", provider="local", code="invalid-setting")


def _number(minimum: float, maximum: float, *, optional: bool = False) -> Callable[[str, object], object]:
    def check(label: str, value: object) -> float | None:
        if value is None and optional:
            return None
        # bool is an int in Python; `true` where a number belongs is a mistake, not a 1.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(label, f"must be a number, not {type(value).__name__} {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise _fail(label, "must be a finite number")
        if number < minimum:
            raise _fail(label, f"must be at least {minimum:g}, got {number:g}")
        if number > maximum:
            raise _fail(label, f"must be at most {maximum:g}, got {number:g}")
        return number

    return check


def _seed(label: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(label, f"must be an integer, not {type(value).__name__} {value!r}")
    if not -MAX_SEED <= value <= MAX_SEED:
        raise _fail(label, f"must be between {-MAX_SEED} and {MAX_SEED}")
    return value


def _availability(label: str, value: object) -> str:
    if value not in AVAILABILITY_MODELS:
        raise _fail(label, f"must be one of {', '.join(AVAILABILITY_MODELS)}, got {_short(value)}")
    assert isinstance(value, str)
    return value


def _name(label: str, value: object) -> str:
    """A name or a path: non-empty, on one line, no NUL (no file or zone can be named with one)."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(label, f"must be a non-empty string, got {_short(value)}")
    if not value.isprintable() or len(value) > MAX_PATH_CHARS:
        raise _fail(label, f"must be printable text of at most {MAX_PATH_CHARS} characters, got {_short(value)}")
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _region_names(label: str, value: object) -> str:
    if value not in REGION_NAMES:
        raise _fail(label, f"must be one of {', '.join(REGION_NAMES)}, got {_short(value)}")
    assert isinstance(value, str)
    return value


def _folder(label: str, value: object) -> str | None:
    return None if value is None else _name(label, value)


def _zone(label: str, value: object) -> str:
    name = _name(label, value)
    if not ZONE_NAME.fullmatch(name):
        raise _fail(label, f"must be a zone name (letters, digits, '.', '_', '-'; at most 63), got {_short(name)}")
    return name


def _zones(label: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise _fail(label, f"must be a non-empty list of zone names, got {_short(value)}")
    if len(value) > MAX_ZONES:
        raise _fail(label, f"must name at most {MAX_ZONES} zones, got {len(value)}")
    zones = tuple(_zone(f"{label}[{i}]", z) for i, z in enumerate(value))
    if len(set(zones)) != len(zones):
        raise _fail(label, f"names a zone twice: {list(zones)}")
    return zones


def _trace(label: str, value: object) -> TraceSetting:
    if value is None or isinstance(value, str):
        return None if value is None else _name(label, value)
    pairs: list[tuple[object, object]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        pairs = list(value)  # already normalised (constructed in code)
    else:
        raise _fail(label, f"must be a file path or a table of zone = path, got {_short(value)}")
    if not pairs or len(pairs) > MAX_ZONES:
        raise _fail(label, f"must name 1 to {MAX_ZONES} zones")
    return tuple(sorted((_zone(f"{label}.{_key(z)}", z), _name(f"{label}.{_key(z)}", p)) for z, p in pairs))


_VALIDATORS: dict[str, Callable[[str, object], object]] = {
    "notice_seconds": _number(0.0, MAX_NOTICE_SECONDS),
    "availability": _availability,
    "mean_available_seconds": _number(MIN_MEAN_SECONDS, MAX_MEAN_SECONDS),
    "mean_unavailable_seconds": _number(MIN_MEAN_SECONDS, MAX_MEAN_SECONDS),
    "seed": _seed,
    "trace": _trace,
    "gap_seconds": _number(MIN_GAP_SECONDS, MAX_GAP_SECONDS, optional=True),
    "zones": _zones,
    "price_provider": _name,
    "price_region": _name,
    "terminate_grace_seconds": _number(0.0, MAX_TERMINATE_GRACE_SECONDS),
    "gc_after_seconds": _number(0.0, MAX_GC_AFTER_SECONDS),
    "traces": _folder,
    "region_names": _region_names,
}
