"""Limits of the files and numbers the sim provider, the trace loader and the settings files accept.

A `--trace` or a settings path naming a device, a FIFO or a huge file is refused at once; a number
that would overflow (a tick of 1e-300 s) or poison arithmetic (NaN) never reaches the simulation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.research.traces import MAX_TRACE_BYTES, MAX_TRACE_TICKS, Trace, TraceError, load_trace
from providers.aws.settings import AwsSettingsError, load_aws_settings, parse_aws_settings
from providers.sim import SimClock, SimProvider

REPO = Path(__file__).resolve().parent.parent


def _at_once(call: Callable[[], object]) -> BaseException:
    """The exception `call` raises; it must raise within seconds (a FIFO must not block a read)."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            caught.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive(), "the read blocked"
    assert len(caught) == 1, "no error"
    assert "\n" not in str(caught[0])
    return caught[0]


def test_a_trace_that_is_a_device_a_fifo_or_too_big_is_refused(tmp_path: Path) -> None:
    assert "/dev/zero: is a device, not a regular file" in str(_at_once(lambda: load_trace("/dev/zero")))
    fifo = tmp_path / "t.fifo"
    os.mkfifo(fifo)
    assert "is a FIFO (named pipe)" in str(_at_once(lambda: load_trace(fifo)))
    big = tmp_path / "big.json"
    big.write_bytes(b'{"metadata": {"gap_seconds": 600}, "data": [' + b" " * MAX_TRACE_BYTES + b"1]}")
    assert "is larger than the 16 MiB allowed" in str(_at_once(lambda: load_trace(big)))


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"metadata": {"gap_seconds": 1e-300}, "data": [1]}, "gap_seconds must be between 1 and"),
        ({"metadata": {"gap_seconds": 1e300}, "data": [1]}, "gap_seconds must be between 1 and"),
        ({"metadata": {"gap_seconds": 600}, "data": [1] * (MAX_TRACE_TICKS + 1)}, "at most 2000000 are allowed"),
    ],
)
def test_a_trace_with_numbers_out_of_range_is_refused(tmp_path: Path, doc: object, words: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TraceError, match=words):
        load_trace(path)


def test_simulate_refuses_dev_zero_as_a_trace_in_one_line(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('name = "s"\ncommand = ["true"]\n[resources]\ngpu = "V100"\n[schedule]\nestimated_hours = 4\n'
                   "deadline_hours = 8\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "ORCH_HOME")}
    env["ORCH_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "simulate", str(job), "--trace", "/dev/zero"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == ["orch: /dev/zero: is a device, not a regular file"], out.stderr


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"spot_price": float("nan")}, "prices must be finite"),
        ({"on_demand_price": float("inf")}, "prices must be finite"),
        ({"restart_overhead_hours": float("nan")}, "restart_overhead_hours must be a finite number"),
    ],
)
def test_the_sim_provider_refuses_non_finite_numbers(kwargs: dict[str, float], words: str) -> None:
    trace = Trace(600.0, (1, 0, 1))
    with pytest.raises(ValueError, match=words):
        SimProvider(SimClock(), {"a": trace}, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gap_seconds must be a finite number"):
        SimProvider(SimClock(), {"a": Trace(float("nan"), (1,))})


# --- provider settings files -----------------------------------------------------------------------


def test_a_settings_path_naming_a_device_is_refused_without_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_AWS_SETTINGS", "/dev/zero")
    error = _at_once(load_aws_settings)
    assert isinstance(error, AwsSettingsError)
    assert "/dev/zero: is a device, not a regular file" in str(error)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"offer_cache_seconds": float("nan")}, "offer_cache_seconds: must be a finite number"),
        ({"capacity_retry_after_seconds": 1e300}, "capacity_retry_after_seconds: must be at most 86400"),
        ({"retry": {"attempts": 2**62}}, "retry.attempts: must be 1 to 100"),
        ({"retry": {"max_wait_seconds": float("inf")}}, "retry.max_wait_seconds: must be a finite number"),
        ({"ca\nche": 1}, "'ca\\nche': unknown key"),
    ],
)
def test_settings_numbers_are_finite_and_bounded(table: dict[str, object], words: str) -> None:
    with pytest.raises(AwsSettingsError) as info:
        parse_aws_settings({"region": {"us-east-1": {"ami": "ami-0abc"}}, **table}, source="aws.toml")
    assert words in str(info.value) and "\n" not in str(info.value)
