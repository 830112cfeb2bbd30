"""Exit status 0 is success, whatever the notice: the whole loop with the local provider's simulated
market. A job that finishes inside its notice window (the reclamation is announced, the job completes
its last step and exits 0) must be recorded `succeeded`, not `preempted` and relaunched on on-demand."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.core.cost import attempt_cost
from orchestrator.core.model import Outcome, TaskState
from orchestrator.store import Store
from tests.loop_support import job_toml, python_command, reconciler, run_until, submit, write_trace

pytestmark = pytest.mark.slow

# Waits for the notice (the agent forwards it as SIGTERM), then "finishes its last item" and exits 0
# well inside the notice window.
FINISH_ON_NOTICE = (
    "import signal, sys, time\n"
    "def done(*_):\n"
    "    print('finished at 40/40', flush=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, done)\n"
    "open('started', 'w').close()\n"
    "time.sleep(120)\n"
    "sys.exit(3)\n"
)


def test_a_job_that_exits_0_inside_its_notice_window_succeeded(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # Spot for 6 s, then reclaimed with a 10 s notice; no spot afterwards.
    write_trace(work / "market.json", [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], gap=3.0)
    path = job_toml(work, command=python_command(FINISH_ON_NOTICE), deadline_hours=5.0,
                    local={"trace": "market.json", "notice_seconds": 10, "zones": ["local-a"]})
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=60)

    [task] = sqlite_store.tasks(job_id)
    attempts = sqlite_store.attempts(job_id)
    assert (work / "started").exists(), "the job ran on spot before the notice"
    kinds = [e.kind for e in sqlite_store.events(job_id)]
    assert "notice" in kinds, "the reclamation was announced while the job ran"
    assert task.state is TaskState.SUCCEEDED
    assert [(a.market.value, a.outcome) for a in attempts] == [("spot", Outcome.SUCCEEDED)]
    assert attempts[0].exit_code == 0
    assert "requeue" not in kinds and "preempted" not in kinds
    assert attempt_cost(attempts[0], r.clock.now()) > 0
