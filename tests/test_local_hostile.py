"""The local provider against hostile or odd input: bounded settings, bounded reads, unstartable commands.

Every refusal is one line naming `placement.options.local.<key>` (or the trace file); a process that
never started ends FAILED_TO_START, so the loop never bills it; and no setting or file can make the
provider read, draw or wait without end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from providers.local.market import MAX_TRACE_BYTES, MAX_TRACE_TICKS, build_market
from providers.local.settings import LocalSettings
from tests import local_support
from tests.local_support import PY, make, only, request
from vocab import EndReason, InstanceState, PermanentError

home, agent = local_support.home, local_support.agent
REPO = Path(__file__).resolve().parent.parent


def refused(options: dict[str, object]) -> str:
    with pytest.raises(PermanentError) as info:
        build_market(LocalSettings().with_options(options))
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"mean_available_seconds": 1e-9}, "mean_available_seconds: must be at least 1, got 1e-09"),
        ({"mean_unavailable_seconds": 1e-9}, "mean_unavailable_seconds: must be at least 1"),
        ({"mean_available_seconds": 1e300}, "mean_available_seconds: must be at most 3.1536e+07"),
        ({"mean_available_seconds": float("nan")}, "mean_available_seconds: must be a finite number"),
        ({"notice_seconds": 1e12}, "notice_seconds: must be at most 3600"),
        ({"gap_seconds": 1e-300}, "gap_seconds: must be at least 0.01"),
        ({"gap_seconds": float("inf")}, "gap_seconds: must be a finite number"),
        ({"terminate_grace_seconds": 1e9}, "terminate_grace_seconds: must be at most 600"),
        ({"gc_after_seconds": 1e18}, "gc_after_seconds: must be at most"),
        ({"seed": 2**80}, "seed: must be between"),
        ({"zones": [f"z{i}" for i in range(17)]}, "zones: must name at most 16 zones"),
        ({"zones": ["local a"]}, "zones[0]: must be a zone name"),
        ({"zones": ["local\x00a"]}, "zones[0]: must be printable text"),
        ({"trace": "mar\x00ket.json"}, "trace: must be printable text"),
        ({"trace": {"local\na": "a.json"}}, "trace.'local\\na'"),
        ({"bo\ngus": 1}, "placement.options.local.'bo\\ngus': unknown setting"),
    ],
)
def test_every_option_is_bounded_and_named_on_one_line(options: dict[str, object], words: str) -> None:
    assert words in refused(options)


def _trace_refusal(path: Path, **options: object) -> str:
    """The refusal of a trace file; it must come back at once (a FIFO must not block the read)."""
    result: list[str] = []

    def load() -> None:
        try:
            build_market(LocalSettings(availability="trace", trace=str(path)).with_options(options))
        except PermanentError as exc:
            result.append(str(exc))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive(), "reading the trace blocked"
    assert len(result) == 1 and "\n" not in result[0]
    return result[0]


def test_a_trace_that_is_a_device_a_fifo_or_a_folder_is_refused(tmp_path: Path) -> None:
    assert "/dev/zero: is a device, not a regular file" in _trace_refusal(Path("/dev/zero"))
    fifo = tmp_path / "market.fifo"
    os.mkfifo(fifo)
    assert "is a FIFO (named pipe), not a regular file" in _trace_refusal(fifo)
    assert "is a directory, not a regular file" in _trace_refusal(tmp_path)


def test_a_trace_file_is_read_up_to_its_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b'{"metadata": {"gap_seconds": 60}, "data": [' + b" " * MAX_TRACE_BYTES + b"1]}")
    assert "is larger than the 16 MiB allowed" in _trace_refusal(big)
    long = tmp_path / "long.json"
    long.write_text(json.dumps({"metadata": {"gap_seconds": 60}, "data": [1] * (MAX_TRACE_TICKS + 1)}))
    assert f"at most {MAX_TRACE_TICKS} are allowed" in _trace_refusal(long)
    tiny_gap = tmp_path / "tiny.json"
    tiny_gap.write_text(json.dumps({"metadata": {"gap_seconds": 1e-300}, "data": [1, 0]}))
    assert "gap_seconds must be between 0.01 and" in _trace_refusal(tiny_gap)


# --- a process that never started is FAILED_TO_START ------------------------------------------------


@pytest.mark.parametrize(
    ("command", "env", "words"),
    [
        (("no-such-program-orch-test",), {}, "'no-such-program-orch-test' is not found on the job's PATH"),
        (("./missing.sh",), {}, "'./missing.sh' does not exist"),
        ((PY, "-c", "print('a\x00b')"), {}, "could not start"),
        ((PY, "-c", "pass"), {"MODEL": "esm\x00fold"}, "could not start"),
        ((PY, "-c", "pass"), {"A=B": "x"}, "could not start"),
    ],
)
def test_a_command_that_cannot_start_ends_failed_to_start_and_starts_nothing(
    home: Path, agent: list[str], tmp_path: Path, command: tuple[str, ...], env: dict[str, str], words: str
) -> None:
    provider = make(home, agent)
    with pytest.raises(PermanentError) as info:
        provider.launch(request(provider, command, env=env, workdir=str(tmp_path)))
    assert words in str(info.value) and "\n" not in str(info.value)
    ended = only(provider)
    assert ended.state is InstanceState.TERMINATED and ended.reason is EndReason.FAILED_TO_START
    assert ended.exit_code is None
    assert not (home / "instances" / ended.instance_id / "status.json").exists()  # no agent ever ran


def test_a_program_the_agent_cannot_exec_is_failed_to_start_too(home: Path, agent: list[str], tmp_path: Path) -> None:
    """Found and executable, but the exec fails (a missing interpreter): the agent says it never started it."""
    script = tmp_path / "job.sh"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    provider = make(home, agent)
    provider.launch(request(provider, (str(script),), workdir=str(tmp_path)))
    local_support.wait_for(lambda: only(provider).state is InstanceState.TERMINATED, timeout=10.0)
    ended = only(provider)
    assert ended.reason is EndReason.FAILED_TO_START and ended.exit_code is None


# --- through the command line ----------------------------------------------------------------------


JOB = """\
name = "hostile-local"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 1
[placement.options.local]
{option}
"""


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("mean_available_seconds = 1e-9", "placement.options.local.mean_available_seconds: must be at least 1"),
        ('trace = "/dev/zero"', "/dev/zero: is a device, not a regular file"),
    ],
)
def test_submit_refuses_a_hostile_local_option_in_one_line(tmp_path: Path, option: str, words: str) -> None:
    path = tmp_path / "job.toml"
    path.write_text(JOB.format(option=option))
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "ORCH_HOME")}
    env["ORCH_HOME"] = str(tmp_path / "home")
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", str(path)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and words in lines[0], out.stderr
    assert not list((tmp_path / "home").glob("**/instances/*"))
