"""Hostile or odd job files: every one is refused at submit with one line naming file and field.

A NUL byte, an environment name a process cannot carry, a number that would overflow or stall the
loop, a key holding a newline, a job "file" that is a device or a FIFO: each must fail here, before
anything is stored, and never as a traceback, a hang or a job that can be stored but not started.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.core.spec import MAX_SPEC_BYTES, SpecError, parse_spec
from orchestrator.job_files import load_spec

SUBMITTED = dt.datetime(2026, 11, 28, tzinfo=dt.UTC).timestamp()
SOURCE = "job.toml"
REPO = Path(__file__).resolve().parent.parent

BASE = """\
name = "hostile"
command = ["python", "fold.py"]
workdir = "."
[env]
MODEL = "esmfold"
[resources]
gpu = "V100"
[schedule]
estimated_hours = 2
deadline_hours = 12
"""


def refused(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source=SOURCE, submitted_at=SUBMITTED)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{SOURCE}: ")
    return info.value


def test_the_base_file_is_accepted() -> None:
    assert parse_spec(BASE, source=SOURCE, submitted_at=SUBMITTED).env == {"MODEL": "esmfold"}


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('["python", "fold.py"]', '["python", "fo\\u0000ld.py"]', "command[1]"),
        ('workdir = "."', 'workdir = "da\\u0000ta"', "workdir"),
        ('MODEL = "esmfold"', 'MODEL = "esm\\u0000fold"', "env.MODEL"),
        ('MODEL = "esmfold"', '"MO\\u0000DEL" = "esmfold"', "env.'MO\\x00DEL'"),
        ('workdir = "."', 'workdir = "."\nimage = "ghcr.io/x\\u0000"', "image"),
        ('name = "hostile"', 'name = "hos\\u0000tile"', "name"),
    ],
)
def test_a_nul_byte_anywhere_is_refused_naming_the_field(old: str, new: str, field: str) -> None:
    err = refused(BASE.replace(old, new))
    assert err.field == field
    assert "NUL byte" in str(err)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ('"A=B"', "contains '='"),
        ('"="', "contains '='"),
        ('""', "not a valid environment variable name"),
        ('"1ABC"', "not a valid environment variable name"),
        ('"HAS SPACE"', "not a valid environment variable name"),
    ],
)
def test_an_env_name_a_process_cannot_carry_is_refused(name: str, words: str) -> None:
    err = refused(BASE.replace('MODEL = "esmfold"', f'{name} = "x"'))
    assert err.field.startswith("env.")
    assert words in str(err)


@pytest.mark.parametrize("image", ['""', '"ghcr.io/x fold"', '"ghcr.io/x\\nfold"'])
def test_an_image_that_is_no_reference_is_refused(image: str) -> None:
    err = refused(BASE.replace('workdir = "."', f"image = {image}"))
    assert err.field == "image"


def test_an_empty_workdir_and_a_two_line_name_are_refused() -> None:
    assert refused(BASE.replace('workdir = "."', 'workdir = ""')).field == "workdir"
    assert refused(BASE.replace('name = "hostile"', 'name = "two\\nlines"')).field == "name"


def test_an_unknown_key_with_a_newline_is_reported_on_one_line() -> None:
    err = refused(BASE.replace('workdir = "."', 'workdir = "."\n"colour\\nmore" = 1'))
    assert err.field == "'colour\\nmore'"
    assert "unknown key" in str(err)
    nested = refused(BASE.replace("[resources]", '[resources]\n"gpu\\rcount" = 1'))
    assert nested.field == "resources.'gpu\\rcount'"


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("estimated_hours = 2", "estimated_hours = 1e-9", "schedule.estimated_hours", "at least 0.001 h"),
        ("estimated_hours = 2", "estimated_hours = 1e300", "schedule.estimated_hours", "at most 87600 h"),
        ("estimated_hours = 2", "estimated_hours = nan", "schedule.estimated_hours", "finite"),
        ("deadline_hours = 12", "deadline_hours = 1e12", "schedule.deadline_hours", "at most 87600 h"),
        ("deadline_hours = 12", 'deadline = "9999-12-31T00:00:00Z"', "schedule.deadline", "ten years"),
        ("deadline_hours = 12", "deadline_hours = 12\nbudget_usd = 1e300", "schedule.budget_usd", "at most"),
        ("deadline_hours = 12", "deadline_hours = 12\nrestart_overhead_hours = 1e6",
         "schedule.restart_overhead_hours", "at most 24 h"),
        ('gpu = "V100"', 'gpu = "V100"\ngpu_count = 9223372036854775807', "resources.gpu_count", "at most 256"),
        ('gpu = "V100"', 'gpu = "V100"\nmin_gpu_memory_gb = 1e30', "resources.min_gpu_memory_gb", "at most 4096 GB"),
        ("deadline_hours = 12", "deadline_hours = 12\n[checkpoint]\nkeep = 1000000", "checkpoint.keep", "at most"),
        ("deadline_hours = 12", "deadline_hours = 12\n[checkpoint]\ngrace_seconds = 1e9",
         "checkpoint.grace_seconds", "at most 600 s"),
        ("deadline_hours = 12", "deadline_hours = 12\n[retry]\nmax_failures = 9223372036854775807",
         "retry.max_failures", "at most 1000"),
        ("deadline_hours = 12", "deadline_hours = 12\n[array]\ncount = 10\nshard_size = 9223372036854775807",
         "array.shard_size", "at most"),
    ],
)
def test_every_number_is_bounded(old: str, new: str, field: str, words: str) -> None:
    err = refused(BASE.replace(old, new))
    assert err.field == field
    assert words in str(err)


def test_numbers_at_their_bounds_are_accepted() -> None:
    text = BASE.replace('gpu = "V100"', 'gpu = "V100"\ngpu_count = 256\nmin_gpu_memory_gb = 4096').replace(
        "deadline_hours = 12", "deadline_hours = 87600\nrestart_overhead_hours = 24\nbudget_usd = 1e9\n"
        "[checkpoint]\nkeep = 1000\ngrace_seconds = 600\n[retry]\nmax_failures = 1000")
    spec = parse_spec(text, source=SOURCE, submitted_at=SUBMITTED)
    assert spec.resources.gpu_count == 256 and spec.checkpoint.grace_seconds == 600.0


# --- the file itself -------------------------------------------------------------------------------


def test_an_oversized_file_is_refused_without_being_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_bytes(BASE.encode() + b"#" * MAX_SPEC_BYTES)
    with pytest.raises(SpecError, match=r"big\.toml: is larger than the 1 MiB allowed"):
        load_spec(path, submitted_at=SUBMITTED)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a directory, not a regular file"):
        load_spec(tmp_path, submitted_at=SUBMITTED)


def _submit(home: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "ORCH_HOME")}
    env["ORCH_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", path], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def _jobs_stored(home: Path) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "ORCH_HOME")}
    env["ORCH_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "status", "--json"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    return 0 if out.stdout.strip() in ("", "[]") else out.stdout.count('"id"')


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "nul-in-env"])
def test_submit_refuses_special_files_and_nul_bytes_in_one_line_and_stores_nothing(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if kind == "dev-zero":
        path, words = "/dev/zero", "is a device, not a regular file"
    elif kind == "fifo":
        path, words = str(tmp_path / "job.fifo"), "is a FIFO (named pipe), not a regular file"
        os.mkfifo(path)  # nobody writes: a plain open() would block for ever
    else:
        path, words = str(tmp_path / "job.toml"), "env.MODEL: contains a NUL byte"
        Path(path).write_text(BASE.replace('"esmfold"', '"esm\\u0000fold"'))
    out = _submit(home, path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"orch: {path}: ") and words in lines[0], lines[0]
    assert _jobs_stored(home) == 0
