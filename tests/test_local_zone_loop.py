"""The real loop (reconciler + store + local provider + agent) with a job's own local options.

A job that names its own zones runs in them, not in the provider's default zones; a job whose
command cannot start fails without a billed attempt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.model import Outcome, TaskState
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
    billed = [a for a in sqlite_store.attempts(job_id) if not a.unbilled]
    assert [a.zone for a in billed] == ["local-b"] and billed[0].outcome is Outcome.SUCCEEDED
    # Nothing was ever placed in a zone the job did not name, billed or not.
    assert all(a.zone == "local-b" for a in sqlite_store.attempts(job_id) if a.outcome is not Outcome.LAUNCH_FAILED)


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
