"""The `orch` command line, in process: exit codes, messages, JSON shapes, nothing stored on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.cli.wiring import open_store
from tests.loop_support import FOLD, job_toml, python_command


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


BAD_FILES = {
    "syntax": ('name = "x\n', ""),
    "unknown key": ('name = "x"\ncommand = ["true"]\ncolour = 1\n[resources]\n[schedule]\nestimated_hours = 1\n',
                    "colour"),
    "wrong type": ('name = "x"\ncommand = ["true"]\n[resources]\n[schedule]\nestimated_hours = "ten"\n',
                   "schedule.estimated_hours"),
    "shell string": ('name = "x"\ncommand = "python fold.py"\n[resources]\n[schedule]\nestimated_hours = 1\n',
                     "command"),
    "impossible deadline": ('name = "x"\ncommand = ["true"]\n[resources]\n[schedule]\nestimated_hours = 10\n'
                            "deadline_hours = 5\n", "schedule.deadline"),
    "unknown gpu": ('name = "x"\ncommand = ["true"]\n[resources]\ngpu = "Z9000"\n[schedule]\nestimated_hours = 1\n',
                    "resources.gpu"),
    "budget too small": ('name = "x"\ncommand = ["true"]\n[resources]\ngpu = "V100"\n[schedule]\n'
                         "estimated_hours = 100\nbudget_usd = 1\n", "schedule.budget_usd"),
    "unknown provider": ('name = "x"\ncommand = ["true"]\n[resources]\n[schedule]\nestimated_hours = 1\n'
                         '[placement]\nproviders = ["nimbus"]\n', "placement.providers"),
    "bad local option": ('name = "x"\ncommand = ["true"]\n[resources]\n[schedule]\nestimated_hours = 1\n'
                         "[placement.options.local]\nnotice_seconds = -1\n", "placement.options.local"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_job_file_exits_2_names_file_and_field_and_stores_nothing(
    case: str, tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, field = BAD_FILES[case]
    path = tmp_path / "job.toml"
    path.write_text(text)
    code, out, err = _run(capsys, "submit", str(path))
    assert code == 2
    assert err.startswith(f"orch: {path}: {field}"), err
    assert "Traceback" not in err and out == ""
    assert open_store().jobs() == []


def test_a_missing_file_is_refused_cleanly(tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "submit", str(tmp_path / "nope.toml"))
    assert code == 2 and "cannot read the file" in err


def test_submit_prints_the_estimate_and_status_json_has_the_documented_keys(
    tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = job_toml(tmp_path, command=python_command("pass"), hours=2.0, deadline_hours=10)
    code, out, _ = _run(capsys, "submit", str(path), "--json")
    assert code == 0
    submitted = json.loads(out)
    spot, od = submitted["estimate"]["spot"], submitted["estimate"]["on-demand"]
    assert spot["instance_type"] == "p3.2xlarge" and spot["price_per_hour"] == pytest.approx(0.918)
    assert od["cost_usd"] == pytest.approx(3.06 * (2.0 + 0.0005), rel=1e-3)

    code, out, _ = _run(capsys, "status", submitted["job_id"][:8], "--json")
    status = json.loads(out)
    assert code == 0 and status["job_id"] == submitted["job_id"] and status["state"] == "pending"
    assert set(status["cost"]) >= {"spent_usd", "projected_usd", "on_demand_only_usd", "saved_usd", "lost_usd",
                                   "preemptions", "spot_usd", "on_demand_usd"}
    assert status["cost"]["spent_usd"] == 0
    # Nothing ran yet: projected is the whole work at the spot price, savings against on-demand.
    assert status["cost"]["projected_usd"] == pytest.approx(2.0 * 0.918, rel=1e-3)

    code, out, _ = _run(capsys, "status")
    assert code == 0 and submitted["job_id"][:8] in out and "PROJECTED" in out


def test_submit_wait_runs_the_job_to_the_end(
    tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = job_toml(tmp_path, command=python_command("print('hello from the job')"), market="on-demand")
    code, out, _ = _run(capsys, "submit", str(path), "--wait", "--tick", "0.2")
    assert code == 0, out
    assert "succeeded" in out
    job_id = out.split()[2]
    code, out, _ = _run(capsys, "logs", job_id)
    assert code == 0 and "hello from the job" in out
    code, out, _ = _run(capsys, "events", job_id, "--json")
    kinds = [e["kind"] for e in json.loads(out)]
    assert kinds[0] == "submitted" and "succeed" in kinds and kinds[-1] == "finished"


def test_cancel_of_a_pending_job(tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = job_toml(tmp_path, command=python_command("pass"))
    _run(capsys, "submit", str(path), "--json")
    job_id = open_store().jobs()[0].id
    code, out, _ = _run(capsys, "cancel", job_id)
    assert code == 0 and "cancelled" in out
    code, out, _ = _run(capsys, "status", job_id, "--json")
    assert json.loads(out)["state"] == "cancelled"


def test_unknown_job_is_a_clear_error(orch_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "status", "deadbeef")
    assert code == 1 and "no job 'deadbeef'" in err


def test_the_example_job_file_is_valid(orch_home: Path) -> None:
    from orchestrator.cli.main import prepare

    spec, offers = prepare(str(FOLD / "job.toml"), 0.0 + 1.8e9)
    assert spec.placement.options["local"]["trace"] == "spot-market.json"
    assert any(o.market == "spot" for o in offers)


def test_a_provider_that_is_not_set_up_is_a_clear_error(
    tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCH_AWS_SETTINGS", raising=False)
    path = tmp_path / "job.toml"
    path.write_text('name = "x"\ncommand = ["true"]\n[resources]\ngpu = "V100"\n[schedule]\nestimated_hours = 1\n'
                    '[placement]\nproviders = ["aws"]\n')
    code, out, err = _run(capsys, "submit", str(path))
    assert code == 1 and out == ""
    assert err.startswith("orch: provider 'aws' is not set up:") and "aws.toml" in err and "Traceback" not in err
    assert open_store().jobs() == []


def test_an_unreachable_database_is_a_clear_error_without_the_password(
    orch_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_DATABASE_URL", "postgresql://orch:s3cret@127.0.0.1:1/orch")
    code, _, err = _run(capsys, "status")
    assert code == 1 and err.startswith("orch: cannot use the database") and "s3cret" not in err


def test_the_estimate_of_an_array_job_counts_one_restart_overhead_per_shard(
    tmp_path: Path, orch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 4 shards on 4 instances: 2 h of work plus 4 boots of 0.5 h, as the budget check and the status count it.
    path = tmp_path / "job.toml"
    path.write_text('name = "arr"\ncommand = ["true"]\n[resources]\ngpu = "V100"\n[schedule]\nestimated_hours = 2\n'
                    "restart_overhead_hours = 0.5\n[array]\ncount = 100\nshard_size = 25\n")
    code, out, _ = _run(capsys, "submit", str(path), "--json")
    assert code == 0
    on_demand = json.loads(out)["estimate"]["on-demand"]
    assert on_demand["hours"] == pytest.approx(4.0)
    assert on_demand["cost_usd"] == pytest.approx(4.0 * on_demand["price_per_hour"], rel=1e-4)
    job = open_store().jobs()[0]
    status = json.loads(_run(capsys, "status", job.id, "--json")[1])
    assert status["cost"]["on_demand_only_usd"] == pytest.approx(on_demand["cost_usd"], rel=1e-3)
