"""The status text fits the terminal: every line of the table and of one job's detail within the width,
the columns that matter kept, whatever the names, zones and number of attempts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator.cli import render
from orchestrator.core.model import AttemptState, Outcome, TaskState
from orchestrator.core.status import JobStatus, job_status
from tests.test_cost import OFFERS, _spec, att, task


def _busy(state: TaskState = TaskState.RUNNING, **spec: Any) -> JobStatus:
    """A job with a 128-character name and 12 attempts on long-named instances in long-named zones."""
    attempts = [att(id=f"a{i}", number=i, outcome=Outcome.PREEMPTED, instance_type="g5.48xlarge-with-a-long-name",
                    zone="ap-southeast-2-lax-1a-local-zone", launched_at=1000.0 * i, ended_at=1000.0 * i + 900)
                for i in range(12)]
    attempts.append(att(id="live", number=12, state=AttemptState.RUNNING, outcome=None, launched_at=13_000.0,
                        ended_at=None))
    st = job_status(job_id="5c0e2a6f-1b7e-4d0c-9a55-0c2f3e4d5a6b", name="n" * 128, spec=_spec(**spec),
                    created_at=0.0, deadline_at=90_000.0, tasks=[task(state=state, progress_committed=0.42)],
                    attempts=attempts, offers=OFFERS, now=14_000.0)
    return replace(st, state="budget_exceeded") if state is TaskState.BUDGET_EXCEEDED else st


@pytest.mark.parametrize("width", [80, 60])
def test_every_line_fits_the_width(width: int) -> None:
    statuses = [_busy(), _busy(TaskState.BUDGET_EXCEEDED)]
    for text in (render.status_detail(statuses[0], width), render.status_rows(statuses, width)):
        too_wide = [line for line in text.splitlines() if len(line) > width]
        assert not too_wide, too_wide
    if width >= 80:  # narrower than that, lines are clipped as a last resort
        header = render.status_rows(statuses, width).splitlines()[0].split()
        assert {"JOB", "NAME", "STATE", "PROGRESS", "SPENT", "PROJECTED", "SAVED"} <= set(header)
    detail = render.status_detail(statuses[0], width)
    assert "OUTCOME" in detail and "ENDED" in detail and "preempted" in detail


def test_without_a_width_nothing_is_dropped_or_cut() -> None:
    detail = render.status_detail(_busy())
    assert "ap-southeast-2-lax-1a-local-zone" in detail and "n" * 128 in detail
    assert render.status_rows([_busy()]).splitlines()[0].split()[-1] == "PREEMPT"


def test_saved_reads_as_projected_while_running_and_as_nothing_when_stopped() -> None:
    running, stopped = _busy(), _busy(TaskState.BUDGET_EXCEEDED)
    assert render.saved(running).startswith("~$")
    assert "(projected, if it finishes as planned)" in render.status_detail(running)
    assert render.saved(stopped) == "-"
    assert "saved - (the job budget exceeded: nothing was saved)" in render.status_detail(stopped)
