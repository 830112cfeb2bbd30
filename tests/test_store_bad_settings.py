"""A store that cannot be used gets one clear line from the real CLI: no traceback, nothing created."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FOLD = REPO / "examples" / "fold" / "job.toml"

# Each case: (name, set up under tmp -> (ORCH_HOME, ORCH_DATABASE_URL or None), words the line must hold)
Setup = Callable[[Path], tuple[str, str | None]]


def _dev_null(tmp: Path) -> tuple[str, str | None]:
    return "/dev/null", None


def _regular_file(tmp: Path) -> tuple[str, str | None]:
    (tmp / "home-file").write_text("I am a file, not a folder\n")
    return str(tmp / "home-file"), None


def _text_orch_db(tmp: Path) -> tuple[str, str | None]:
    (tmp / "home").mkdir()
    (tmp / "home" / "orch.db").write_text("these are notes, not a database\n")
    return str(tmp / "home"), None


def _url(url: str) -> Setup:
    return lambda tmp: (str(tmp / "home"), url)


CASES: list[tuple[str, Setup, list[str]]] = [
    ("home-is-dev-null", _dev_null, ["/dev/null", "not a folder"]),
    ("home-is-a-file", _regular_file, ["home-file", "not a folder"]),
    ("orch-db-is-text", _text_orch_db, ["orch.db", "not a SQLite database"]),
    ("url-garbage", _url("garbage"), ["ORCH_DATABASE_URL", "postgresql://"]),
    ("url-mysql", _url("mysql://u@h/db"), ["mysql", "supported", "postgresql", "sqlite"]),
    ("pg-refused", _url("postgresql://postgres@127.0.0.1:1/x"), ["127.0.0.1", "refused"]),
]


def _snapshot(tmp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tmp)): (p.read_bytes() if p.is_file() else b"<dir>") for p in tmp.rglob("*")}


def _run(home: str, url: str | None, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "ORCH_HOME")}
    env["ORCH_HOME"] = home
    if url is not None:
        env["ORCH_DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def _assert_one_line(out: subprocess.CompletedProcess[str], words: list[str]) -> None:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("orch: ")
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(("setup", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("argv", [("status",), ("db", "upgrade")], ids=["status", "db-upgrade"])
def test_a_store_that_cannot_be_used_is_one_line_and_creates_nothing(
        tmp_path: Path, setup: Setup, words: list[str], argv: tuple[str, ...]) -> None:
    home, url = setup(tmp_path)
    before = _snapshot(tmp_path)
    out = _run(home, url, *argv)
    _assert_one_line(out, words)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(("setup", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_submit_to_a_store_that_cannot_be_used_is_one_line_and_creates_nothing(
        tmp_path: Path, setup: Setup, words: list[str]) -> None:
    home, url = setup(tmp_path)
    before = _snapshot(tmp_path)
    _assert_one_line(_run(home, url, "submit", str(FOLD)), words)
    assert _snapshot(tmp_path) == before, "the store is opened before any provider makes its folders"
