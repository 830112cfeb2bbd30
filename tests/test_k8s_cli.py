"""`orch submit --kubernetes` as a user runs it: the real CLI in a subprocess, and what importing it costs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

JOB = 'name = "fold"\ncommand = ["python", "f.py"]\n[schedule]\nestimated_hours = 2\n'


def orch(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import sys; from orchestrator.cli.main import main; sys.exit(main())",
                           *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def no_cluster(tmp_path: Path) -> dict[str, str]:
    """A user with no kubeconfig, outside any cluster: an empty home, KUBECONFIG naming a missing file."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG"))}
    env.update(HOME=str(home), KUBECONFIG=str(tmp_path / "missing" / "config"), ORCH_HOME=str(tmp_path / "orch"))
    return env


def test_submit_without_a_kubeconfig_says_how_to_point_at_one(tmp_path: Path, no_cluster: dict[str, str]) -> None:
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    done = orch(["submit", "--kubernetes", str(job)], no_cluster)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert "no kubeconfig found" in lines[0] and str(tmp_path / "missing" / "config") in lines[0]
    assert "KUBECONFIG" in lines[0]


def test_a_broken_kubeconfig_is_named_in_one_line(tmp_path: Path, no_cluster: dict[str, str]) -> None:
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [\n")
    done = orch(["submit", "--kubernetes", str(job)], {**no_cluster, "KUBECONFIG": str(broken)})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot use the kubeconfig at {broken}" in lines[0]


def test_a_bad_job_file_is_refused_before_looking_for_a_cluster(tmp_path: Path, no_cluster: dict[str, str]) -> None:
    job = tmp_path / "job.toml"
    job.write_text(JOB.replace("estimated_hours = 2", "estimated_hours = -2"))
    done = orch(["submit", "--kubernetes", str(job)], no_cluster)
    assert done.returncode != 0 and "estimated_hours" in done.stderr and "kubeconfig" not in done.stderr


def test_importing_the_kubernetes_cli_loads_no_heavy_modules() -> None:
    """`orch --help` imports the CLI; the client, the database layer and numpy wait until a command runs."""
    code = ("import sys, orchestrator.cli.k8s; "
            "print(','.join(m for m in ('kubernetes', 'sqlalchemy', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""
