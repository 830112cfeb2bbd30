"""What the cloud providers' settings files have in common: where one lives, reading it, typed models.

Each cloud provider reads an operator-written TOML file (docs/providers/<cloud>.md), described by
typed models (pydantic, strict, unknown keys refused; `SettingsModel`). They must refuse the same
mistakes the same way: a misspelt key is an error rather than a silently ignored default, a value of
the wrong type names its file and key, and a key that looks like a credential is refused, because
credentials belong to the SDK's own chain and must never gain a second home in a file orch reads.
What differs per cloud (its error class, the credential key names, the wording) comes in as
`FileRules`, so each provider's messages still say which cloud and which chain they are about.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_random_exponential

from providers.bounded_read import MIB, FileRefused, read_bounded_text
from vocab import TransientError

E = TypeVar("E", bound=Exception)
R = TypeVar("R")
M = TypeVar("M", bound="SettingsModel")

# A settings file is a few hundred bytes; a path naming /dev/zero or a log must not be read whole.
MAX_SETTINGS_BYTES = MIB
# Every duration in a settings file: a day is longer than any wait, timeout or cache orch needs.
MAX_SETTING_SECONDS = 86400.0
MAX_RETRY_ATTEMPTS = 100
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: object) -> str:
    """A key as messages show it: bare when TOML would write it bare, else quoted, so it stays one line."""
    return key if isinstance(key, str) and _BARE_KEY.fullmatch(key) else repr(key)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Bounds of the provider's own retries of throttled or failed calls (tenacity)."""

    attempts: int = 5
    initial_wait_seconds: float = 0.5
    max_wait_seconds: float = 20.0
    deadline_seconds: float = 60.0

    def retrying(self, sleep: Callable[[float], None]) -> Retrying:
        """The one retry layer under these bounds: only `TransientError` is tried again.

        Exponential backoff with full jitter, so many controllers throttled at once do not retry in
        step; `sleep` is the provider clock's, so tests decide what a backoff really waits.
        """
        return Retrying(
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.deadline_seconds),
            wait=wait_random_exponential(multiplier=self.initial_wait_seconds, max=self.max_wait_seconds),
            retry=retry_if_exception_type(TransientError),
            sleep=sleep,
            reraise=True,
        )


def settings_path(env_var: str, filename: str) -> Path:
    """`$<env_var>`, else `$ORCH_HOME/providers/<filename>`, else `~/.orch/providers/<filename>`."""
    explicit = os.environ.get(env_var)
    if explicit:
        return Path(explicit)
    home = os.environ.get("ORCH_HOME")
    base = Path(home) if home else Path.home() / ".orch"
    return base / "providers" / filename


def load_toml(path: Path, error: type[Exception], missing_hint: str) -> dict[str, Any]:
    """The parsed file; a missing, special, oversized or broken one raises `error` naming the path.

    A missing file's message adds `missing_hint`; only a regular file of at most 1 MiB is read.
    """
    try:
        text = read_bounded_text(path, MAX_SETTINGS_BYTES)
    except FileRefused as exc:
        if str(exc) == "no such file":
            raise error(f"{path}: {missing_hint}") from None
        raise error(f"{path}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except (ValueError, RecursionError):  # a 5000-digit number, nesting too deep
        raise error(f"{path}: not valid TOML: a number too long or values nested too deep") from None


def lookup_region(regions: Mapping[str, R], name: str, error: type[Exception]) -> R:
    """One configured region's settings; an unconfigured one is an error listing those that are."""
    try:
        return regions[name]
    except KeyError:
        raise error(f"region {name!r} is not configured (configured: {', '.join(regions) or 'none'})") from None


class SettingsModel(BaseModel):
    """One table of a settings file: strict types, unknown keys refused, `nan` and `inf` never a number."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


def fail(problem: str) -> PydanticCustomError:
    """A refusal said in words; `explain` shows it as it is."""
    return PydanticCustomError("orch", "{problem}", {"problem": problem})


def rule(ok: Callable[[Any], bool], problem: str) -> AfterValidator:
    """A value must pass `ok`, else it is refused with `problem` (`{got}` is the value given)."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise fail(problem.replace("{got}", _short(value)))
        return value

    return AfterValidator(check)


def says(problem: str) -> WrapValidator:
    """Any refusal of this value that is not a wrong type is `problem` (`{got}` is the value given)."""

    def wrap(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] in _KINDS and not first["loc"]:
                raise fail(explain(first)) from None
            raise fail(problem.replace("{got}", _short(value))) from None

    return WrapValidator(wrap)


# A number of seconds: above zero (or zero, `ZeroOrMoreSeconds`) and at most a day.
Seconds = Annotated[float, Field(gt=0, le=MAX_SETTING_SECONDS)]
ZeroOrMoreSeconds = Annotated[float, Field(ge=0, le=MAX_SETTING_SECONDS)]
NonEmpty = Annotated[str, Field(min_length=1), says("must be a list of non-empty strings")]
Argv = Annotated[list[NonEmpty], rule(lambda argv: len(argv) > 0, "must name a program")]

_KINDS = {"int_type": "int", "float_type": "int or float", "string_type": "str", "bool_type": "bool",
          "list_type": "list", "dict_type": "dict", "model_type": "dict"}


def explain(err: ErrorDetails) -> str:
    """One refusal as the settings files have always said it: "must be str, not 3"."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "orch":
        return str(ctx["problem"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return "is too large"
    if kind in _KINDS:
        return f"must be {_KINDS[kind]}, not {_short(value)}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "greater_than":
        return f"must be positive, not {value}"
    if kind == "greater_than_equal":
        return f"must be zero or more, not {value}" if ctx.get("ge") == 0 else f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']:g}, not {value:g}"
    return str(err["msg"])


def credential_path(doc: Any, keys: frozenset[str], path: str = "") -> str | None:
    """The dotted path of the first key, at any depth, that names a credential (compared lowercased)."""
    if not isinstance(doc, Mapping):
        return None
    for key, value in doc.items():
        where = f"{path}.{_key(key)}" if path else _key(key)
        if isinstance(key, str) and key.lower() in keys:
            return where
        found = credential_path(value, keys, where)
        if found is not None:
            return found
    return None


@dataclass(frozen=True, slots=True)
class FileRules(Generic[E]):
    """What one provider's settings reader raises, and which keys it refuses as credentials."""

    error: type[E]
    credential_keys: frozenset[str]  # compared lowercased
    credentials_hint: str  # why they do not belong here: where this cloud's SDK reads them from

    def fail(self, source: str, name: str, problem: str) -> E:
        return self.error(f"{source}: {name}: {problem}")

    def validate(self, model: type[M], doc: Mapping[str, Any], source: str) -> M:
        """The file as `model`, or one error: credentials first (the more useful message), then unknown
        keys (a misspelt key is reported as itself, not as the default it left), then the first other."""
        where = credential_path(doc, self.credential_keys)
        if where is not None:
            raise self.fail(source, where, f"credentials do not belong here; {self.credentials_hint}")
        try:
            return model.model_validate(dict(doc))
        except ValidationError as exc:
            errors = exc.errors()
            err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
            raise self.fail(source, dotted(err["loc"]), explain(err)) from None


def dotted(loc: tuple[int | str, ...]) -> str:
    """`('region', 'us-east-1', 'subnets')` -> `region.us-east-1.subnets`; list items as `[i]`."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{_key(part)}" if out else _key(part))
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class RetryFile(SettingsModel):
    """`[retry]`: bounds of the provider's own retries, the same for every cloud."""

    attempts: Annotated[int, Field(ge=1, le=MAX_RETRY_ATTEMPTS),
                        says(f"must be 1 to {MAX_RETRY_ATTEMPTS}, not {{got}}")] = 5
    initial_wait_seconds: Seconds = 0.5
    max_wait_seconds: Seconds = 20.0
    deadline_seconds: Seconds = 60.0

    def settings(self) -> RetrySettings:
        return RetrySettings(self.attempts, self.initial_wait_seconds, self.max_wait_seconds, self.deadline_seconds)
