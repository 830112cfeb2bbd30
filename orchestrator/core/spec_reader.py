"""Reading one TOML table strictly: the dotted path for messages, unknown keys refused, types checked.

Split from `orchestrator.core.spec` so that the job model there reads as a model; everything here is about
turning a wrong value into one clear `SpecError`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar


class SpecError(ValueError):
    """A job specification that cannot be accepted. `str()` is the whole user-facing message."""

    def __init__(self, source: str, field_name: str, problem: str) -> None:
        self.source = source
        self.field = field_name
        self.problem = problem
        where = f"{source}: {field_name}" if field_name else source
        super().__init__(f"{where}: {problem}")


T = TypeVar("T")

# A key TOML writes without quotes; any other key is shown quoted (repr), so a key holding a newline
# or a control character cannot split a message over two lines.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_text(key: object) -> str:
    """A key as messages show it: bare when TOML would write it bare, else its repr."""
    return key if isinstance(key, str) and _BARE_KEY.fullmatch(key) else repr(key)


def nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key or string under `value` holding a NUL byte, or None.

    No argument, path or environment variable can hold one (execve and open stop at it, or Python
    refuses), so such a job could be stored but never started: it is refused as a whole, first.
    """
    if isinstance(value, str):
        return path if "\0" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key_text(key)}" if path else key_text(key)
            if isinstance(key, str) and "\0" in key:
                return where
            found = nul_path(item, where)
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = nul_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


class _Reader:
    """Walks one TOML table, remembering the dotted path for messages and refusing unknown keys."""

    def __init__(self, source: str, table: Mapping[str, Any], path: str = "") -> None:
        self.source, self.table, self.path = source, table, path

    def expect(self, *keys: str) -> None:
        """Refuse unknown keys before reading any: a typo is reported as itself, with the key it
        was probably meant to be, not as the required key it left missing."""
        unknown = sorted(set(self.table) - set(keys))
        if unknown:
            raise self.fail(unknown[0], "unknown key" + _suggest(str(unknown[0]), set(keys)))

    def fail(self, key: str, problem: str) -> SpecError:
        return SpecError(self.source, self._name(key), problem)

    def _name(self, key: str) -> str:
        return f"{self.path}.{key_text(key)}" if self.path else key_text(key)

    def get(self, key: str, kind: type[T] | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        if key not in self.table:
            if required:
                raise self.fail(key, "is required")
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a `true` where a number belongs is a mistake, not a 1.
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"must be {_kind_names(kinds)}, not a boolean")
        if not isinstance(value, kinds):
            raise self.fail(key, f"must be {_kind_names(kinds)}, not {type(value).__name__} {_show(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(key, "must be a finite number")
        return value

    def number(self, key: str, default: float | None = None, *, required: bool = False,
               minimum: float | None = None, positive: bool = False, maximum: float | None = None,
               unit: str = "") -> float | None:
        """A finite number within bounds; `unit` is named in the messages ("h", "s", "GB")."""
        value = self.get(key, (int, float), default, required=required)
        if value is None:
            return None
        try:
            value = float(value)
        except OverflowError:
            raise self.fail(key, "is too large") from None
        if positive and value <= 0:
            raise self.fail(key, f"must be greater than 0, got {value:g}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum:g}{unit}, got {value:g}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be at most {maximum:g}{unit}, got {value:g}")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = int(self.get(key, int, default))
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be at most {maximum}, got {_show(value)}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = (), *, allow_single: bool = False) -> tuple[str, ...]:
        value = self.get(key, (list, str) if allow_single else list, None)
        if value is None:
            return default
        if isinstance(value, str):
            if not value:
                raise self.fail(key, "must be a non-empty string")
            return (value,)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise SpecError(self.source, f"{self._name(key)}[{i}]",
                                f"must be a non-empty string, got {_show(item)}")
        return tuple(value)

    def table_of(self, key: str) -> _Reader:
        value = self.get(key, dict, {})
        return _Reader(self.source, value, self._name(key))


def _show(value: Any) -> str:
    """A value as the message quotes it: repr, cut short so that one mistake stays one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_names(kinds: tuple[type, ...]) -> str:
    # An int-only field says so: "must be a number, not float 1.5" would contradict itself.
    whole = "a number" if float in kinds else "a whole number"
    names = {int: whole, float: "a number", str: "a string", list: "a list", dict: "a table",
             bool: "true or false", dt.datetime: "a date-time"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _suggest(key: str, known: set[str]) -> str:

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(known))})"
