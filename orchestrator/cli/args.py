"""The parser pieces of `orch`: one-line usage errors, command suggestions, bounded numbers, lazy help.

Kept free of the library's heavy modules (store, numpy, SDKs): `orch --help` builds the whole parser,
so anything the parser needs at build time is paid on every start. Help text that must name things
only a heavy module knows (policy names, provider names) is computed when help is printed.
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from orchestrator.cli.errors import EXIT_USAGE


class OrchParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and whose unknown commands get a suggestion."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_help: list[tuple[argparse.Action, Callable[[], str]]] = []

    def lazy_help(self, action: argparse.Action, text: Callable[[], str]) -> None:
        """Replace `action`'s help by `text()` when help is printed (its static help stays for the rest)."""
        self._lazy_help.append((action, text))

    def format_help(self) -> str:
        for action, text in self._lazy_help:
            action.help = text()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        # One line, naming the command and what is wrong; the usage is one `--help` away.
        hint = "" if message.startswith("unknown command") else f" (see `{self.prog} --help`)"
        self.exit(EXIT_USAGE, f"{self.prog}: {' '.join(message.split())}{hint}\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            raise argparse.ArgumentError(None, unknown_command(str(value), list(action.choices)))
        super()._check_value(action, value)


def unknown_command(typed: str, commands: Sequence[str]) -> str:
    """`unknown command 'stauts'; did you mean 'status'?`, or the list of commands when nothing is close."""
    close = difflib.get_close_matches(typed, commands, n=1, cutoff=0.6)
    if close:
        return f"unknown command {typed!r}; did you mean {close[0]!r}?"
    return f"unknown command {typed!r} (commands: {', '.join(commands)})"


def finite_float(low: float, high: float, *, low_inclusive: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (or (low, high] when not `low_inclusive`).

    `float()` accepts "inf", "nan" and "-1" alike; a loop ticking every `nan` seconds busy-loops and
    a simulation priced at `inf` prints invalid JSON, so every float flag goes through here.
    """
    expected = (f"from {low:g} to {high:g}" if low_inclusive else f"above {low:g}, up to {high:g}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        too_low = value < low if low_inclusive else value <= low
        if not math.isfinite(value) or too_low or value > high:
            raise argparse.ArgumentTypeError(f"expected a finite number {expected}, got {text!r}")
        return value

    return parse


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
        return value

    return parse


class VersionAction(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit(0)


def version() -> str:
    """The version pip installed (package metadata), else the source tree's own `__version__`."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("orch")
    except PackageNotFoundError:
        from orchestrator import __version__

        return __version__


def output_flags(p: argparse.ArgumentParser, formats: Sequence[str] = ("table", "wide", "json")) -> None:
    """`-o FORMAT` as kubectl has it, and `--json` as the short form of `-o json` (one JSON shape per
    command, whichever flag asked for it). Sets `args.output`."""
    g = p.add_mutually_exclusive_group()
    shown = {"table": "a table fitted to the terminal (default)",
             "wide": "every column, whatever the terminal's width",
             "json": "machine-readable (docs/cli.md)"}
    g.add_argument("-o", "--output", choices=formats, default="table", metavar="FORMAT",
                   help="; ".join(f"{f}: {shown.get(f, f)}" for f in formats))
    g.add_argument("--json", dest="output", action="store_const", const="json", help="the same as -o json")


def utc_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--utc", action="store_true", help="show times in UTC (default: local time, with its zone)")
