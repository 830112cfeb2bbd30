"""Cloud SDKs are extras: the embedded default runs without them, and a missing one is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BLOCKER = str(REPO / "tests" / "import_blocker.py")
CLOUD = "boto3,botocore,s3transfer,google,kubernetes,requests,psycopg"
JOB = """
name = "x"
command = {command}
[resources]
gpu = "V100"
[schedule]
estimated_hours = 0.01
market = "on-demand"
[placement]
providers = ["{provider}"]
"""


def orch(tmp: Path, blocked: str, *argv: str, env: dict[str, str] | None = None,
         module: str = "orchestrator.cli") -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("ORCH_DATABASE_URL",)}
    full.update(ORCH_HOME=str(tmp / "home"), **(env or {}))
    return subprocess.run([sys.executable, BLOCKER, blocked, "-m", module, *argv], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=120)


def job(tmp: Path, provider: str, command: str = '["true"]') -> str:
    path = tmp / f"{provider}.toml"
    path.write_text(JOB.format(provider=provider, command=command))
    return str(path)


@pytest.mark.slow
def test_the_local_provider_runs_a_job_with_no_cloud_sdk_installed(tmp_path: Path) -> None:
    command = f'["{sys.executable}", "-c", "print(42)"]'
    out = orch(tmp_path, CLOUD, "submit", job(tmp_path, "local", command), "--wait", "--tick", "0.2")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(("provider", "blocked", "extra"), [
    ("aws", "boto3,botocore", "aws"), ("gcp", "google", "gcp"), ("kubernetes", "kubernetes", "kubernetes")])
def test_a_provider_without_its_extra_names_the_install_command(tmp_path: Path, provider: str, blocked: str,
                                                                extra: str) -> None:
    out = orch(tmp_path, blocked, "submit", job(tmp_path, provider))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert f"python3 -m pip install 'orch[{extra}]'" in out.stderr and f"provider '{provider}'" in out.stderr


def test_postgresql_without_its_driver_names_the_install_command(tmp_path: Path) -> None:
    out = orch(tmp_path, "psycopg", "status", env={"ORCH_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/orch"})
    assert out.returncode != 0 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "orch[postgres]" in out.stderr and "secret" not in out.stderr


def test_s3_checkpoints_without_the_aws_sdk_name_the_install_command() -> None:
    code = ("import sys\n"
            "from tests.import_blocker import Missing\n"
            "sys.meta_path.insert(0, Missing(['boto3', 'botocore']))\n"
            "from orchestrator.job.checkpoint.storage import open_storage, StorageError\n"
            "try:\n    open_storage('s3://bucket/prefix')\nexcept StorageError as e:\n    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "s3:// checkpoint storage needs the boto3 package" in res.stdout and "orch[aws]" in res.stdout


def test_the_agent_runs_without_the_control_planes_dependencies(tmp_path: Path) -> None:
    control_plane = "sqlalchemy,alembic,numpy,tenacity," + CLOUD
    out = orch(tmp_path, control_plane, "--", sys.executable, "-c", "print('job ran')", module="orchestrator.job.agent")
    assert out.returncode == 0, out.stderr
    assert "job ran" in out.stdout
