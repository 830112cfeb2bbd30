"""The real loop (reconciler + store + local provider + agent) with a job's own local options.

A job that names its own zones runs in them, not in the provider's default zones; a job whose
command cannot start fails without a billed attempt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.model import Outcome, TaskState
from orchestrator.store import Store
from tests.loop_support import job_toml, python_command, reconciler, run_until, submit

pytestmark = pytest.mark.slow


def test_a_job_that_names_its_zones_runs_in_them(tmp_path: Path, orch_home: Path, sqlite_store: Store) -> None:
    path = job_toml(tmp_path, command=python_command("print('done')"),
                    local={"availability": "always", "notice_seconds": 1, "zones": ["local-b"]})
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=60)

    task = sqlite_store.tasks(job_id)[0]
    assert task.state is TaskState.SUCCEEDED, [e.message for e in sqlite_store.events(job_id)]
    # The offers came from the job's own market from the first tick: one attempt, in local-b, and no
    # launch was ever tried in a zone the job did not name.
    attempts = sqlite_store.attempts(job_id)
    assert [(a.zone, a.outcome) for a in attempts] == [("local-b", Outcome.SUCCEEDED)]


def test_a_command_that_cannot_start_fails_the_job_and_bills_nothing(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    path = job_toml(tmp_path, command=["no-such-program-orch-test", "--fold"], market="on-demand")
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=60)

    assert sqlite_store.tasks(job_id)[0].state is TaskState.FAILED
    attempts = sqlite_store.attempts(job_id)
    assert attempts and all(a.unbilled for a in attempts)
    messages = " ".join(e.message for e in sqlite_store.events(job_id))
    assert "'no-such-program-orch-test' is not found on the job's PATH" in messages


def test_a_script_whose_interpreter_is_missing_is_never_billed(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    # The program exists (the provider's check passes), but exec fails: only the agent can tell.
    script = tmp_path / "job.sh"
    script.write_text("#!/no/such/interpreter\necho hi\n")
    script.chmod(0o755)
    path = job_toml(tmp_path, command=[str(script)], market="on-demand")
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=60)

    attempts = sqlite_store.attempts(job_id)
    assert attempts and all(a.unbilled for a in attempts), [(a.outcome, a.unbilled) for a in attempts]
