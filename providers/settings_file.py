"""What the cloud providers' settings files have in common: where one lives, reading it, a strict reader.

Each cloud provider reads an operator-written TOML file (docs/providers/<cloud>.md). They must refuse
the same mistakes the same way: a misspelt key is an error rather than a silently ignored default, a
value of the wrong type names its file and key, and a key that looks like a credential is refused,
because credentials belong to the SDK's own chain and must never gain a second home in a file orch
reads. What differs per cloud (its error class, the credential key names, the wording) comes in as
`TableRules`, so each provider's messages still say which cloud and which chain they are about.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_random_exponential

from providers.base import TransientError
from providers.bounded_read import MIB, FileRefused, read_bounded_text

E = TypeVar("E", bound=Exception)
R = TypeVar("R")

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


@dataclass(frozen=True, slots=True)
class TableRules(Generic[E]):
    """What one provider's settings reader raises, and which keys it refuses as credentials."""

    error: type[E]
    credential_keys: frozenset[str]  # compared lowercased
    credentials_hint: str  # why they do not belong here: where this cloud's SDK reads them from

    def fail(self, source: str, name: str, problem: str) -> E:
        return self.error(f"{source}: {name}: {problem}")


class SettingsTable(Generic[E]):
    """One TOML table being read: remembers keys seen so unknown (misspelt) keys are errors."""

    def __init__(self, rules: TableRules[E], source: str, table: Mapping[str, Any], path: str = "") -> None:
        self.rules, self.source, self.table, self.path = rules, source, table, path
        self.seen: set[str] = set()

    def fail(self, key: str, problem: str) -> E:
        return self.rules.fail(self.source, f"{self.path}.{_key(key)}" if self.path else _key(key), problem)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise self.fail(key, f"must be {' or '.join(k.__name__ for k in kinds)}, not {_short(value)}")
        return value

    def child(self, key: str) -> SettingsTable[E]:
        """The nested table `key` (empty when absent), read under the same rules."""
        name = f"{self.path}.{_key(key)}" if self.path else _key(key)
        return SettingsTable(self.rules, self.source, self.get(key, dict, {}), name)

    def entry(self, key: str, name: str, value: Any, valid_name: re.Pattern[str], bad_name: str) -> SettingsTable[E]:
        """`[key.name]`, one of a family of named tables (like regions): a table, under a valid name."""
        if not isinstance(value, dict):
            raise self.fail(f"{key}.{_key(name)}", "must be a table")
        if not valid_name.match(name):
            raise self.fail(f"{key}.{_key(name)}", bad_name)
        path = f"{self.path}.{key}.{_key(name)}" if self.path else f"{key}.{_key(name)}"
        return SettingsTable(self.rules, self.source, value, path)

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list)
        if value is None:
            return default
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        return tuple(value)

    def argv(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A command as an argv list, which must at least name a program."""
        argv = self.strings(key, default)
        if not argv:
            raise self.fail(key, "must name a program")
        return argv

    def positive(self, key: str, default: float, *, zero_ok: bool = False,
                 maximum: float = MAX_SETTING_SECONDS) -> float:
        """A finite number of seconds, above zero (or zero, if `zero_ok`) and at most `maximum` (a day)."""
        try:
            value = float(self.get(key, (int, float), default))
        except OverflowError:
            raise self.fail(key, "is too large") from None
        if not math.isfinite(value):
            raise self.fail(key, "must be a finite number")
        if value < 0 or (value == 0 and not zero_ok):
            raise self.fail(key, f"must be {'zero or more' if zero_ok else 'positive'}, not {value}")
        if value > maximum:
            raise self.fail(key, f"must be at most {maximum:g}, not {value:g}")
        return value

    def finish(self) -> None:
        """Refuse credentials first (the more useful message), then any key no reader asked for."""
        for key in self.table:
            if isinstance(key, str) and key.lower() in self.rules.credential_keys:
                raise self.fail(key, f"credentials do not belong here; {self.rules.credentials_hint}")
            if key not in self.seen:
                raise self.fail(key, "unknown key")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_retry(table: SettingsTable[E]) -> RetrySettings:
    """The `[retry]` table, whose bounds mean the same for every cloud."""
    attempts = int(table.get("attempts", int, 5))
    if not 1 <= attempts <= MAX_RETRY_ATTEMPTS:
        raise table.fail("attempts", f"must be 1 to {MAX_RETRY_ATTEMPTS}, not {_short(attempts)}")
    retry = RetrySettings(
        attempts=attempts,
        initial_wait_seconds=table.positive("initial_wait_seconds", 0.5),
        max_wait_seconds=table.positive("max_wait_seconds", 20.0),
        deadline_seconds=table.positive("deadline_seconds", 60.0),
    )
    table.finish()
    return retry
