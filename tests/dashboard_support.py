"""Fixtures both dashboard test modules use: the store of the CLI's home, a job reclaimed twice by the
real loop on the `sim` provider, and the dashboard served over it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._dashboard_browser import served
from bench._dashboard_jobs import SimJob, sim_job
from orchestrator.cli.dashboard import cli_source
from orchestrator.cli.wiring import open_store
from orchestrator.store import Store


@pytest.fixture
def store(orch_home: Path) -> Store:
    return open_store()


@pytest.fixture
def reclaimed(store: Store, orch_home: Path) -> SimJob:
    """A job reclaimed twice that finished on on-demand before its deadline, through the real loop."""
    now = time.time()
    job = sim_job(store, name="reclaimed", start=now - 12 * 3600, hours=6, deadline_hours=10, budget_usd=40,
                  folder=orch_home)
    assert job.run_until(now)
    return job


@pytest.fixture
def url(store: Store) -> Iterator[str]:
    with served(cli_source()) as address:
        yield address
