"""The real `orch` program, as a user meets it: pipes, Ctrl-C, bad numbers, help, version, typos, start-up.

Each test runs the CLI in a subprocess (`python -m orchestrator.cli`) with ORCH_HOME in a temporary
folder, because exit statuses, stderr lines and what the interpreter prints at exit are the point.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.cli.main import build_parser
from orchestrator.cli.wiring import known_providers, open_store
from orchestrator.core.policy import policy_names
from tests.interrupts import as_at_a_terminal
from tests.loop_support import job_toml, python_command

REPO = Path(__file__).resolve().parent.parent


def orch(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def orch_into_closed_pipe(*argv: str) -> tuple[int, str]:
    """Run orch with stdout a pipe whose reader is already gone, as `orch ... | head -0` ends up."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        p = subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], cwd=REPO, stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    return p.returncode, p.stderr


def _one_line(err: str, starts: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(starts), lines[0]
    return lines[0]


# --- pipes and Ctrl-C ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["db upgrade", "submit", "submit --json", "simulate --json"])
def test_output_into_a_closed_pipe_ends_quietly_with_0(command: str, tmp_path: Path, orch_home: Path) -> None:
    # (argparse's --help swallows a closed pipe itself, and `orch status` has its own guard: cli_status.)
    job, trace = _simulation_files(tmp_path)
    words = command.split()
    argv = {"db": words, "submit": [*words, str(job_toml(tmp_path, command=python_command("pass")))],
            "simulate": [*words, str(job), "--trace", str(trace)]}[words[0]]
    code, err = orch_into_closed_pipe(*argv)
    assert (code, err) == (0, "")


def test_ctrl_c_stops_the_controller_with_130_and_no_traceback(orch_home: Path) -> None:
    p = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "controller", "--tick", "0.1"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_at_a_terminal)
    assert p.stderr is not None
    first = p.stderr.readline()  # the start line: the loop is running
    assert "controller" in first
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


# --- numbers ---------------------------------------------------------------------------------------

BAD_TICKS = ["inf", "nan", "-1", "0", "0.001", "1e9", "ten"]


@pytest.mark.parametrize("tick", BAD_TICKS)
@pytest.mark.parametrize("command", ["controller", "submit --wait"])
def test_a_tick_that_is_not_a_sane_finite_number_is_one_line_and_stores_nothing(
    tick: str, command: str, tmp_path: Path, orch_home: Path
) -> None:
    job = job_toml(tmp_path, command=python_command("pass"))
    argv = ["controller"] if command == "controller" else ["submit", str(job), "--wait"]
    out = orch(*argv, "--tick", tick, timeout=30)  # before: inf and nan busy-looped, -1 crashed the loop
    assert out.returncode == 2
    line = _one_line(out.stderr, f"orch {argv[0]}: argument --tick: expected a finite number from 0.05 to 3600")
    assert repr(tick) in line
    assert open_store().jobs() == []


@pytest.mark.parametrize(("flag", "value"), [
    ("--price-ratio", "inf"), ("--price-ratio", "nan"), ("--price-ratio", "0"), ("--task-hours", "inf"),
    ("--task-hours", "-1"), ("--deadline-hours", "nan"), ("--deadline-hours", "1e400"),
    ("--restart-overhead-hours", "-0.5"), ("--restart-overhead-hours", "inf"), ("--start-tick", "-1"),
    ("--start-tick", "1.5"),
])
def test_simulate_refuses_non_finite_and_out_of_range_numbers(
    flag: str, value: str, tmp_path: Path, orch_home: Path
) -> None:
    job, trace = _simulation_files(tmp_path)
    out = orch("simulate", str(job), "--trace", str(trace), "--json", flag, value)
    assert out.returncode == 2 and out.stdout == ""
    _one_line(out.stderr, f"orch simulate: argument {flag}: expected a")


def test_simulate_json_is_strict_json(tmp_path: Path, orch_home: Path) -> None:
    job, trace = _simulation_files(tmp_path)
    out = orch("simulate", str(job), "--trace", str(trace), "--json", "--price-ratio", "1000")
    assert out.returncode == 0, out.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    result = json.loads(out.stdout, parse_constant=refuse)
    assert result["price_ratio"] == 1000


def _simulation_files(tmp_path: Path) -> tuple[Path, Path]:
    job = tmp_path / "sim.toml"
    job.write_text('name = "sim"\ncommand = ["true"]\n[resources]\ngpu = "V100"\n[schedule]\nestimated_hours = 1\n'
                   "deadline_hours = 4\nrestart_overhead_hours = 0.1\n")
    trace = tmp_path / "zone.json"
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 600}, "data": [1, 0, 1] * 20}))
    return job, trace


# --- submit says what happens next -----------------------------------------------------------------


def test_submit_without_wait_says_a_controller_must_run(tmp_path: Path, orch_home: Path) -> None:
    job = job_toml(tmp_path, command=python_command("pass"))
    out = orch("submit", str(job))
    assert out.returncode == 0
    assert "no controller is running" in out.stderr
    assert "orch controller" in out.stderr and "`orch run " in out.stderr  # or run it here, in one command
    assert len(out.stderr.splitlines()) <= 2
    # --json keeps stdout one JSON object; the hint goes to stderr all the same.
    out = orch("submit", str(job), "--json")
    assert out.returncode == 0 and "orch controller" in out.stderr
    assert set(json.loads(out.stdout)) == {"job_id", "estimate"}


def test_a_budget_below_the_on_demand_estimate_is_warned_about_with_the_shown_estimate(
    tmp_path: Path, orch_home: Path
) -> None:
    # 2 h on a V100: $1.84 on spot, $6.12 on on-demand. $4 pays for spot, not for on-demand.
    job = job_toml(tmp_path, command=python_command("pass"), hours=2.0, deadline_hours=10,
                   extra_schedule="budget_usd = 4.0")
    out = orch("submit", str(job), "--json")
    assert out.returncode == 0, out.stderr
    on_demand = json.loads(out.stdout)["estimate"]["on-demand"]["cost_usd"]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: the budget $4.00 is below the on-demand estimate ${on_demand:,.2f}: if spot runs "
                        "short and the deadline needs on-demand, the job stops at its budget (budget_exceeded)"]
    out = orch("submit", str(job))
    assert f"${on_demand:,.2f}" in out.stdout  # the table shows the very number the warning names


@pytest.mark.parametrize(("market", "budget"), [("auto", 100.0), ("spot", 4.0)])
def test_no_budget_warning_when_on_demand_fits_or_is_never_used(
    market: str, budget: float, tmp_path: Path, orch_home: Path
) -> None:
    job = job_toml(tmp_path, command=python_command("pass"), hours=2.0, deadline_hours=10, market=market,
                   extra_schedule=f"budget_usd = {budget}")
    out = orch("submit", str(job))
    assert out.returncode == 0, out.stderr
    assert "warning" not in out.stderr


# --- help, version, typos --------------------------------------------------------------------------


def test_version_comes_from_the_package_metadata() -> None:
    out = orch("--version")
    assert out.returncode == 0
    assert out.stdout == f"orch {importlib.metadata.version('orch')}\n"


def _walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        found.append((path, action))
        if isinstance(action, argparse._SubParsersAction):
            found.extend((path, pseudo) for pseudo in action._choices_actions)
            for name, child in action.choices.items():
                found.extend(_walk(child, f"{path} {name}"))
    return found


def test_every_flag_positional_and_command_has_help() -> None:
    actions = _walk(build_parser(), "orch")
    assert len(actions) > 40
    missing = [f"{path}: {a.option_strings or a.dest}" for path, a in actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert missing == []


def test_policy_and_providers_help_list_the_registered_names() -> None:
    policy_help = orch("simulate", "--help").stdout
    for name in policy_names():
        assert name in policy_help
    providers_help = orch("controller", "--help").stdout
    for name in known_providers():
        assert name in providers_help


@pytest.mark.parametrize(("argv", "line"), [
    (("stauts",), "orch: unknown command 'stauts'; did you mean 'status'?"),
    (("sumbit", "job.toml"), "orch: unknown command 'sumbit'; did you mean 'submit'?"),
    (("db", "upgrad"), "orch db: unknown command 'upgrad'; did you mean 'upgrade'?"),
    (("frobnicate",), "orch: unknown command 'frobnicate' (commands: submit, status, ls, logs, events, results, "
                      "dashboard, schema, cancel, run, controller, db, simulate, aws, agent, completion)"),
])
def test_a_mistyped_command_gets_a_suggestion(argv: tuple[str, ...], line: str) -> None:
    out = orch(*argv)
    assert out.returncode == 2
    assert out.stderr == line + "\n"


def test_a_usage_error_is_one_line_naming_the_command() -> None:
    out = orch("submit")
    assert out.returncode == 2
    _one_line(out.stderr, "orch submit: the following arguments are required: file")


# --- start-up --------------------------------------------------------------------------------------

HEAVY = ["sqlalchemy", "numpy", "boto3", "botocore", "kubernetes", "google.cloud", "alembic",
         "orchestrator.simulate", "orchestrator.store", "orchestrator.loop.reconciler", "pydantic",
         "prometheus_client", "orchestrator.core.spec_model"]

PROBE = """
import contextlib, io, json, sys
import orchestrator.cli.main
parser = orchestrator.cli.main.build_parser()
parser.format_help()
with contextlib.redirect_stdout(io.StringIO()):
    try:
        orchestrator.cli.main.main(["--help"])
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {h.split(".")[0] for h in HEAVY}
                        and any(m == h or m.startswith(h + ".") for h in HEAVY))))
"""


def test_orch_help_imports_no_heavy_module() -> None:
    """Not timed (bench/cli_startup.py times it): what `orch --help` must not load, whatever the machine."""
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
