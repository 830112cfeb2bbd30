"""The names of the states a job can be in, with no imports, for the CLI's parser to list cheaply.

A job's state is derived from its tasks by `orchestrator.core.model.job_state` (never stored); these are
every state it gives a job that has tasks. tests/test_status_list.py checks the two agree.
"""

from __future__ import annotations

JOB_STATES: tuple[str, ...] = ("pending", "running", "preempted", "succeeded", "failed", "cancelled",
                               "budget_exceeded")
FINISHED_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "budget_exceeded"})
