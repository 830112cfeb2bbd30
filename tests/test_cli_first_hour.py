"""The CLI's first hour (issue 23): what a new user met, each fixed and checked here against the real
store, the real loop on the local provider and the real parser.

- whether a controller runs (its leases), said by submit and status, and `orch run` for one command;
- money: one rule for text (cents, never `-$0.00`) and one JSON shape (floats, null when unknown);
- narrow terminals drop columns, never cut money;
- kubectl habits: `-o json|wide`, `ls`, cancel several / `--all`, `events -f`, `logs --tail/--since/--attempt`,
  AGE, local or UTC times, colour at a terminal, completion, an ambiguous prefix listed, help everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from orchestrator.cli import render
from orchestrator.cli.main import build_parser, main
from orchestrator.cli.status import statuses_now
from orchestrator.cli.wiring import open_store
from orchestrator.core.cost import JobCost, job_cost, money, usd_text
from orchestrator.core.spec import JobSpec, ScheduleSpec
from orchestrator.store import Store
from orchestrator.store.tables import JobRow
from tests.loop_support import REPO, job_toml, python_command
from vocab import Resources

ORCH = [sys.executable, "-m", "orchestrator.cli"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def orch(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL", "COLUMNS", "NO_COLOR")}
    return subprocess.run([*ORCH, *argv], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**base, **env})


@pytest.fixture
def store(orch_home: Path) -> Store:
    return open_store()


def _bulk(store: Store, n: int, *, ids: list[str] | None = None, name: str = "bulk") -> list[str]:
    spec = JobSpec(name=name, command=("true",), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=1.0, policy="greedy"))
    return [store.submit(spec, source="t", now=time.time() - 90 + i, checkpoint_uri="file:///tmp/ck",
                         job_id=None if ids is None else ids[i]) for i in range(n)]


def _quick(tmp_path: Path, code: str = "pass") -> Path:
    return job_toml(tmp_path, command=python_command(code), market="on-demand")


# --- 1. is a controller running? ------------------------------------------------------------------


def test_submit_and_status_say_whether_a_controller_holds_the_job(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    (held,) = _bulk(store, 1)
    now = time.time()
    assert store.claim_jobs("orch-livecontroller", now, 60.0) == [held]

    code, out, err = run(capsys, "submit", str(_quick(tmp_path)))
    assert code == 0
    new = out.split()[2]
    assert "controller orch-livecontroller is running and takes it at its next tick" in err, err
    assert "waits for a controller" not in err  # the old line, said even while one ran

    _, detail, _ = run(capsys, "status", held)
    assert "controller orch-livecontroller holds this job" in detail
    _, detail, _ = run(capsys, "status", new)
    assert "none holds this job yet; controller orch-livecontroller is running" in detail
    _, listed, _ = run(capsys, "status", "-o", "json")
    assert {s["job_id"]: s["controller"] for s in json.loads(listed)} == {held: "orch-livecontroller", new: None}

    # A stopped controller releases its leases; a killed one's lease expires: neither is running.
    store.release_jobs("orch-livecontroller")
    store.claim_jobs("orch-died", now - 120.0, 60.0)
    _, detail, err = run(capsys, "status", held)
    assert "none running: start one with `orch controller`" in detail and f"`orch run {held[:8]}`" in detail
    _, _, err = run(capsys, "status")
    assert "2 pending job(s) and no controller running" in err
    # `orch cancel`'s brief pass over one job is not a controller.
    store.claim_jobs("cancel-123", time.time(), 30.0, job_ids=[held])
    assert store.live_controllers(time.time()) == {}
    # A job that finished under a controller keeps its lease until that controller stops: not "held".
    assert run(capsys, "cancel", new)[0] == 0
    with store.session() as s:
        s.execute(update(JobRow).where(JobRow.id == new).values(lease_owner="orch-x", lease_expires_at=now + 60))
    _, one, _ = run(capsys, "status", new, "--json")
    _, listed, _ = run(capsys, "ls", "--json")
    assert json.loads(one)["controller"] is None and json.loads(listed)[0]["controller"] is None


def test_orch_run_runs_a_submitted_job_here_and_a_file_in_one_command(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "submit", str(_quick(tmp_path, "print('hello')")))
    job_id = out.split()[2]
    code, out, _ = run(capsys, "run", job_id[:8], "--tick", "0.2")
    assert code == 0 and "state      succeeded" in out
    code, _, err = run(capsys, "run", job_id[:8])
    assert code == 1 and "already finished" in err

    code, out, _ = run(capsys, "submit", str(_quick(tmp_path)))
    held = out.split()[2]
    store.claim_jobs("orch-elsewhere", time.time(), 60.0, job_ids=[held])
    code, _, err = run(capsys, "run", held)  # before: one tick, then "pending" and exit 1
    assert code == 1 and "controller orch-elsewhere is running job" in err
    store.release_jobs("orch-elsewhere")

    code, out, _ = run(capsys, "run", str(_quick(tmp_path)), "--tick", "0.2", "-o", "json")
    final = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and final["state"] == "succeeded"


# --- 2 and 3. money: one text rule, one JSON shape, never cut off --------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (-0.005, "-$0.01"), (-0.0049, "$0.00"), (-0.0, "$0.00"), (0.0, "$0.00"), (0.004, "$0.00"),
    (-1.239, "-$1.24"), (12345.675, "$12,345.68"), (None, "-")])
def test_money_text_is_whole_cents_and_never_minus_zero(value: float | None, text: str) -> None:
    assert usd_text(value) == text
    assert usd_text(value, known=False) == "n/a"
    assert render.usd(value) == text  # the CLI's renderer is the same rule, not a copy


def test_money_in_json_is_always_a_float_and_null_when_the_price_is_unknown() -> None:
    empty = job_cost([], now=0.0, remaining_usd=0, on_demand_only_usd=0, state="pending")
    shown = empty.to_dict()
    for name in JobCost.__dataclass_fields__:
        if name.endswith("_usd") and shown[name] is not None:
            assert type(shown[name]) is float, (name, shown[name])  # before: `0` beside `0.0`
    assert shown["preemptions"] == 0 and type(shown["preemptions"]) is int
    assert all(v is None for k, v in empty.to_dict(known=False).items() if k.endswith("_usd"))
    assert money(-0.00001) == 0.0 and str(money(-0.00001)) == "0.0"  # no -0.0
    assert money(-0.005) == -0.005  # a negative saving is money


def test_a_short_negative_saving_shows_as_money_not_minus_zero(store: Store) -> None:
    status = statuses_now(store, [store.job(_bulk(store, 1)[0])])[0]  # type: ignore[list-item]
    for saved, shown in ((-0.004, "$0.00"), (-0.005, "-$0.01"), (-0.02, "-$0.02")):
        s = dataclasses.replace(status, state="succeeded",
                                cost=dataclasses.replace(status.cost, saved_usd=saved, projected_saved_usd=None))
        assert render.saved(s) == shown
        assert "-$0.00" not in render.status_detail(s) + render.status_rows([s])


def test_narrow_terminals_drop_columns_and_never_cut_money(store: Store) -> None:
    ids = _bulk(store, 3, name="a-rather-long-job-name-for-a-narrow-terminal")
    statuses = statuses_now(store, [j for j in (store.job(i) for i in ids) if j is not None])
    rich = [dataclasses.replace(s, cost=dataclasses.replace(s.cost, spent_usd=12345.678, projected_usd=98765.4321))
            for s in statuses]
    money_cell = re.compile(r"~?-?\$[\d,]+\.\d\d")
    whole = set(money_cell.findall(render.status_rows(rich)))
    for width in range(20, 140, 3):
        text = render.status_rows(rich, width, created={s.job_id: 0.0 for s in rich}, now=100.0)
        assert all(len(line) <= width for line in text.splitlines()), (width, text)
        assert "$" not in "".join(re.findall(r"\S*…", text)), (width, text)  # no money cell cut
        assert set(money_cell.findall(text)) <= whole
        if width >= 30:
            assert "$12,345.68" in text, (width, text)  # SPENT is the column kept longest
    wide = render.status_rows(rich, 40, wide=True)
    assert "DEADLINE" in wide and "$98,765.43" in wide and "PREEMPT" in wide  # -o wide ignores the width


# --- 5. kubectl and sky habits --------------------------------------------------------------------


def test_output_flags_ls_and_age(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _bulk(store, 2)
    _, as_o, _ = run(capsys, "status", "-o", "json")
    _, as_json, _ = run(capsys, "status", "--json")
    assert json.loads(as_o)[0].keys() == json.loads(as_json)[0].keys()
    _, listed, _ = run(capsys, "ls")
    header, *rows = listed.splitlines()
    assert header.split()[-1] == "AGE" and re.fullmatch(r"1m\d\ds", rows[0].split()[-1]), rows  # 89 s and up
    _, events, _ = run(capsys, "events", ids[0], "-o", "json")
    assert json.loads(events)[0]["kind"] == "submitted"
    assert render.age(0.0, 45.0) == "45s" and render.age(0.0, 3 * 3600 + 60) == "3h1m"
    assert render.age(0.0, 3 * 86400) == "3d"


def test_times_are_local_with_their_zone_or_utc_on_a_flag(store: Store) -> None:
    (job_id,) = _bulk(store, 1)
    local = orch("events", job_id, TZ="Asia/Tokyo")
    utc = orch("events", job_id, "--utc", TZ="Asia/Tokyo")
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST  submitted", local.stdout), local.stdout
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  submitted", utc.stdout), utc.stdout


def test_state_is_coloured_at_a_terminal_unless_no_color(store: Store) -> None:
    _bulk(store, 1)

    def at_terminal(**env: str) -> str:
        parent, child = pty.openpty()
        base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
        proc = subprocess.Popen([*ORCH, "ls"], cwd=REPO, stdout=child, stderr=subprocess.DEVNULL,
                                env={**base, "TERM": "xterm", **env})
        os.close(child)
        chunks = []
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=30)
        os.close(parent)
        return b"".join(chunks).decode()

    assert "\x1b[33mpending" in at_terminal()
    assert "\x1b[" not in at_terminal(NO_COLOR="1")
    assert "\x1b[" not in orch("ls").stdout  # a pipe


def test_cancel_several_or_all_asks_unless_yes(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = _bulk(store, 3)
    code, _, err = run(capsys, "cancel", a, b)  # stdin is not a terminal: nobody can answer
    assert code == 2 and "--yes" in err
    assert {s.state for s in statuses_now(store, store.jobs())} == {"pending"}
    code, out, _ = run(capsys, "cancel", a[:8], b, "--yes")
    assert code == 0 and out.count("cancelled job") == 2
    code, out, _ = run(capsys, "cancel", "--all", "-y")
    assert code == 0 and out == f"cancelled job {c}\n"
    code, out, _ = run(capsys, "cancel", "--all", "--yes")
    assert code == 0 and out == "no unfinished jobs\n"
    code, _, err = run(capsys, "cancel", a, "--all")
    assert code == 2 and "not both" in err


def test_events_follow_and_logs_tail_since_attempt(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "submit", str(_quick(tmp_path, "print('\\n'.join(f'line {i}' for i in range(5)))")))
    job_id = out.split()[2]
    follow = subprocess.Popen([*ORCH, "events", job_id, "-f", "--utc"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={k: v for k, v in os.environ.items() if k != "ORCH_DATABASE_URL"})
    assert run(capsys, "run", job_id, "--tick", "0.2")[0] == 0
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err  # ended with the job, by itself
    kinds = [line.split()[2] for line in out.splitlines()]
    assert kinds[0] == "submitted" and kinds[-1] == "finished", out  # before the fix, `finished` could be missed
    assert len(out.splitlines()) == len(set(out.splitlines()))  # each event once

    code, out, _ = run(capsys, "logs", job_id, "--tail", "2")
    whole = run(capsys, "logs", job_id)[1].splitlines()
    assert code == 0 and out.splitlines() == [whole[0], *whole[-2:]], (out, whole)
    assert len(whole) >= 1 + 5 and "line 4" in whole
    code, out, _ = run(capsys, "logs", job_id, "--attempt", "0")
    assert [ln for ln in out.splitlines() if ln.startswith("line")] == [f"line {i}" for i in range(5)]
    code, _, err = run(capsys, "logs", job_id, "--attempt", "7")
    assert code == 1 and "no attempt 7 (attempts: 0)" in err
    time.sleep(1.2)
    assert run(capsys, "logs", job_id, "--since", "1s")[1] == ""  # the only attempt ended before that
    assert run(capsys, "logs", job_id, "--since", "1s", "--attempt", "0")[:2] == (0, "")  # it exists: no error
    assert "line 4" in run(capsys, "logs", job_id, "--since", "1h")[1]
    bad = orch("logs", job_id, "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr and "90s" in bad.stderr


def test_an_ambiguous_prefix_lists_the_jobs_it_matches(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    ids = ["2aaaaaaa-0000-0000-0000-000000000000", "2bbbbbbb-0000-0000-0000-000000000000",
           "3ccccccc-0000-0000-0000-000000000000"]
    _bulk(store, 3, ids=ids)
    code, _, err = run(capsys, "status", "2")
    assert code == 2
    assert err.splitlines()[0] == "orch: '2' matches 2 jobs; give more of the id:"
    assert {line.split()[0] for line in err.splitlines()[1:]} == {i[:12] for i in ids[:2]}
    for command in ("logs", "events", "cancel", "results"):
        assert run(capsys, command, "2")[0] == 2
    assert run(capsys, "status", "2a")[0] == 0


# --- completion and help --------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _commands(child, f"{path} {name}".strip())
    return found


def test_every_command_and_option_has_help() -> None:
    empty = []
    for path, parser in _commands(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                # An alias (`ls`) shares its command's parser, and so its help.
                helps = {id(action.choices[a.dest]): a.help for a in action._choices_actions}
                empty += [f"{path} {name}" for name, child in action.choices.items() if not helps.get(id(child))]
            elif not action.help or action.help == argparse.SUPPRESS:
                empty.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not empty, f"without help: {empty}"


def test_completion_scripts_come_from_the_parser_and_complete_in_bash(capsys: pytest.CaptureFixture[str]) -> None:
    code, script, _ = run(capsys, "completion", "bash")
    assert code == 0
    for path, _ in _commands(build_parser()):
        assert f'"{path}") opts=' in script, path
    check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        shell = f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _orch; echo "${{COMPREPLY[@]}}"'
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=30)
        return done.stdout.split()

    assert complete("orch", "sta") == ["status"]
    assert set(complete("orch", "status", "--wa")) == {"--watch"}
    assert complete("orch", "ls", "-o", "") == ["table", "wide", "json"]
    assert complete("orch", "db", "") == ["--help", "-h", "upgrade"]
    code, zsh, _ = run(capsys, "completion", "zsh")
    assert zsh.startswith("#compdef orch\n") and "bashcompinit" in zsh
