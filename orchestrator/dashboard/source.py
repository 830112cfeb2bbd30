"""What the dashboard reads, handed in by the entry point that starts it.

The figures on the page must be the figures of `orch status --json`. The functions that compute
those live with the CLI (`orchestrator.cli.status.statuses_now`, `campaign_now`; the providers and
the store from `orchestrator.cli.wiring`), which sits above the dashboard in the layers. Rather than
a second copy, the CLI passes them in as this record (`orchestrator.cli.dashboard.cli_source`), and
tests and benchmarks build the same record from the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.core.campaign import CampaignStatus
    from orchestrator.core.model import AttemptView
    from orchestrator.core.status import JobStatus
    from orchestrator.store import Store
    from orchestrator.store.views import JobView
    from providers.base import Provider


@dataclass(frozen=True, slots=True)
class Source:
    """The read side of orch, as `orch status`, `orch events` and `orch logs` use it."""

    open_store: Callable[[], Store]
    # `orch status [--json]`: each job's status from three queries for the whole page.
    statuses: Callable[[Store, Sequence[JobView]], list[JobStatus]]
    # `orch status JOB --json`'s "campaign" part (None for a job without items).
    campaign: Callable[[Store, JobStatus], CampaignStatus | None]
    # `orch logs`: the providers by name, and one attempt's output so far (None: no log kept).
    providers: Callable[[Sequence[str]], dict[str, Provider]]
    read_log: Callable[[dict[str, Provider], AttemptView, str], str | None]
    # `orch status JOB --json`, whole (status, controller, campaign), from one job's status.
    job_json: Callable[[Store, JobStatus, float], dict[str, Any]]
    # `orch status --json`: the statuses of a page of jobs, as listed (with `controller`).
    list_json: Callable[[Store, Sequence[JobStatus], float], list[dict[str, Any]]]
