"""Settings of the `local` provider and of its simulated spot market, with their validation.

A job tunes the market through `[placement.options.local]` in its job.toml, which reaches the
provider untouched as `LaunchRequest.options`: a mapping of plain TOML values. Everything a user
can get wrong there is caught here with a `PermanentError` that names the key, because a typo in a
market setting would otherwise silently run the default market and make a demo lie.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import ErrorDetails

from providers.catalog import load_catalog, region_of_zone
from providers.settings_file import SettingsModel, dotted, explain, fail, rule
from vocab import PermanentError

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
        _checked({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "local settings: ")
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
        changes = _checked(options, f"{OPTIONS_PREFIX}.")
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


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _name(label: str, value: object) -> str:
    """A name or a path: non-empty, on one line, no NUL (no file or zone can be named with one)."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(label, f"must be a non-empty string, got {_short(value)}")
    if not value.isprintable() or len(value) > MAX_PATH_CHARS:
        raise _fail(label, f"must be printable text of at most {MAX_PATH_CHARS} characters, got {_short(value)}")
    return value


def _zone(label: str, value: object) -> str:
    name = _name(label, value)
    if not ZONE_NAME.fullmatch(name):
        raise _fail(label, f"must be a zone name (letters, digits, '.', '_', '-'; at most 63), got {_short(name)}")
    return name


def _plain(check: Callable[[str, object], str]) -> PlainValidator:
    """One of the name rules above as a pydantic validator: its words become the refusal."""

    def validate(value: object) -> str:
        try:
            return check("", value)
        except PermanentError as exc:
            raise fail(str(exc).removeprefix(": ")) from None

    return PlainValidator(validate, json_schema_input_type=str)


def _zone_list(value: object) -> object:
    if isinstance(value, tuple):
        value = list(value)  # settings built in code hold tuples
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise fail(f"must be a non-empty list of zone names, got {_short(value)}")
    if len(value) > MAX_ZONES:
        raise fail(f"must name at most {MAX_ZONES} zones, got {len(value)}")
    return value


Name = Annotated[str, _plain(_name)]
Zone = Annotated[str, _plain(_zone)]
Zones = Annotated[list[Zone], BeforeValidator(_zone_list),
                  rule(lambda zones: len(set(zones)) == len(zones), "names a zone twice: {got}")]
def _seed(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    try:
        return handler(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        out_of_range = first["type"] in ("greater_than_equal", "less_than_equal")
        raise fail(f"must be between {-MAX_SEED} and {MAX_SEED}" if out_of_range else _problem(first)) from None


Seed = Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED), WrapValidator(_seed)]


Notice = Annotated[float, Field(ge=0.0, le=MAX_NOTICE_SECONDS)]
Mean = Annotated[float, Field(ge=MIN_MEAN_SECONDS, le=MAX_MEAN_SECONDS)]
Gap = Annotated[float, Field(ge=MIN_GAP_SECONDS, le=MAX_GAP_SECONDS)]
Grace = Annotated[float, Field(ge=0.0, le=MAX_TERMINATE_GRACE_SECONDS)]
GcAfter = Annotated[float, Field(ge=0.0, le=MAX_GC_AFTER_SECONDS)]
_DEFAULT: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(LocalSettings)}


class LocalOptions(SettingsModel):
    """`[placement.options.local]` (and the operator's `LocalSettings`): every key optional, each
    checked alone here; `LocalSettings._check_combination` checks them together. The defaults are
    `LocalSettings`'s own."""

    notice_seconds: Notice = _DEFAULT["notice_seconds"]
    availability: Literal["random", "trace", "always"] = _DEFAULT["availability"]
    mean_available_seconds: Mean = _DEFAULT["mean_available_seconds"]
    mean_unavailable_seconds: Mean = _DEFAULT["mean_unavailable_seconds"]
    seed: Seed = _DEFAULT["seed"]
    trace: Any = _DEFAULT["trace"]  # a path, or a table of zone = path: `_trace`, whose words name the zone
    gap_seconds: Gap | None = _DEFAULT["gap_seconds"]
    zones: Zones = _DEFAULT["zones"]
    price_provider: Name = _DEFAULT["price_provider"]
    price_region: Name = _DEFAULT["price_region"]
    terminate_grace_seconds: Grace = _DEFAULT["terminate_grace_seconds"]
    gc_after_seconds: GcAfter = _DEFAULT["gc_after_seconds"]
    traces: Name | None = _DEFAULT["traces"]
    region_names: Literal["local", "from-zones"] = _DEFAULT["region_names"]


def _problem(err: ErrorDetails) -> str:
    """One refusal in the local provider's words ("must be at least 1, got 1e-09")."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "float_type" and not (isinstance(value, int) and not isinstance(value, bool)):
        return f"must be a number, not {type(value).__name__} {_short(value)}"
    if kind == "int_type":
        return f"must be an integer, not {type(value).__name__} {_short(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']:g}, got {value:g}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']:g}, got {value:g}"
    if kind == "literal_error":
        return f"must be one of {str(ctx['expected']).replace(chr(39), '').replace(' or ', ', ')}, got {_short(value)}"
    return explain(err)


def _checked(values: Mapping[str, object], prefix: str) -> dict[str, object]:
    """The given settings, each checked and normalised (zones and per-zone traces as tuples); a
    PermanentError naming `prefix` + the key (a list item as `[i]`) otherwise."""
    try:
        model = LocalOptions.model_validate(dict(values))
    except ValidationError as exc:
        errors = exc.errors()
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        if err["type"] == "extra_forbidden":
            problem = f"unknown setting; known: {', '.join(sorted(LocalOptions.model_fields))}"
        else:
            problem = _problem(err)
        raise _fail(f"{prefix}{dotted(err['loc'])}", problem) from None
    out: dict[str, object] = {key: getattr(model, key) for key in model.model_fields_set}
    if "zones" in out:
        out["zones"] = tuple(model.zones)
    if "trace" in out:
        out["trace"] = _trace(f"{prefix}trace", model.trace)
    return out


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
