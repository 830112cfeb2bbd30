"""The install a newcomer and CI make is the locked one, and the lock covers every dependency.

A fresh machine once resolved a moto release that broke 54 tests: installs that float drift away
from what was tested. The README's two commands and `.ci/run` install with `-c constraints.txt`,
the lock pins every package the project pulls in, and `.ci/run --latest` checks the drift.
"""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [block.strip() for block in blocks[:2]]


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt: {line!r} is not a plain name==version pin"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `name[extras]` needs on this interpreter, by its installed metadata."""
    visited: set[tuple[str, frozenset[str]]] = set()
    todo = [(canonicalize_name(name), extras)]
    while todo:
        current, wanted = todo.pop()
        if (current, wanted) in visited:
            continue
        visited.add((current, wanted))
        for req in map(Requirement, metadata.requires(current) or []):
            envs = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return {dist for dist, _ in visited} - {canonicalize_name(name)}


def test_the_readme_starts_with_the_two_newcomer_commands_both_locked() -> None:
    install_and_run, install_and_test = readme_commands()
    run_the_example = "orch submit examples/fold/job.toml --wait"
    assert install_and_run == f"python3 -m pip install -e . -c constraints.txt && {run_the_example}"
    assert install_and_test == "python3 -m pip install -e '.[dev]' -c constraints.txt && python3 -m pytest -q"


def test_ci_installs_with_the_lock_and_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    install, test = readme_commands()[1].split(" && ")
    assert test in script, ".ci/run must run the README's test command"
    assert any("pip install" in line and "-e '.[dev]' -c constraints.txt" in line for line in script), (
        f".ci/run must install as the README does: {install}"
    )


def test_the_lock_pins_every_package_the_project_needs_and_nothing_local() -> None:
    pins = locked()
    assert "orch" not in pins, "the project itself is installed editable, never pinned"
    missing = closure("orch", frozenset({"dev"})) - pins.keys()
    assert not missing, f"not in constraints.txt (run bash .ci/lock.sh -c constraints.txt): {sorted(missing)}"


def test_ci_run_refuses_an_unknown_option_before_installing_anything() -> None:
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--lastest"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip() == "usage: bash .ci/run [--latest]"
    assert "==" not in done.stdout
