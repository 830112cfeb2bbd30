"""The controller's one dependency on the rest of orch: a `JobBackend`, and what it reports.

The controller mirrors GpuJobs into whatever implements `JobBackend` (live: the store and the
reconciler, `orchestrator.k8s.store_backend.StoreBackend`) and renders `GpuJobStatus` into
`.status`. Keeping the seam this narrow lets the controller's status logic be tested against a
scripted backend, and lets the store change without touching the controller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.core.spec import JobSpec
from orchestrator.job.item_records import ItemCounts
from orchestrator.job.items_format import ParsedItem

# .status.phase values, Kubernetes-style CamelCase (the store backend maps job states onto them).
TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Cancelled", "BudgetExceeded"})
# Phases only the controller writes: a spec that failed validation, a resource being deleted.
INVALID = "Invalid"
TERMINATING = "Terminating"
# Written by the controller before submission too: a campaign waiting for its items' ConfigMap.
PENDING = "Pending"


class UnknownJob(LookupError):
    """The backend has no job with this id (a wiped store): the controller submits it again."""


@dataclass(frozen=True, slots=True)
class GpuJobStatus:
    """One job as the backend sees it now.

    Money is None when it cannot be known: a cluster whose nodes have no catalog price
    (`price_source == "unknown"`) shows "unpriced" rather than a cost of $0 that would look free.
    """

    phase: str
    market: str | None = None
    progress: float = 0.0  # committed fraction of the work, 0..1
    cost_usd: float | None = 0.0
    projected_usd: float | None = None
    preemptions: int = 0
    attempts: int = 0  # attempts launched so far; a rise means a launch
    live_attempts: int = 0  # pods or instances still running or stopping
    deadline: float | None = None  # Unix seconds
    message: str = ""
    price_source: str = "catalog"
    cost_by_market: Mapping[str, float] = field(default_factory=dict)
    items: ItemCounts | None = None  # a campaign's items per state

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


class JobBackend(Protocol):
    """What the controller needs from orch. Every method must be safe to call again after a crash."""

    def submit(self, spec: JobSpec, *, external_ref: str, items: Sequence[ParsedItem] = ()) -> str:
        """Create the job (a campaign with its `items`, in the same transaction), or return the id of
        the one already made for `external_ref` (the uid)."""
        ...

    def find(self, external_ref: str) -> str | None:
        """The id of the job submitted for `external_ref`, if any (never creates one)."""
        ...

    def cancel(self, job_id: str) -> None:
        """Ask for the job to stop; idempotent. Attempts end later, through `reconcile_once`."""
        ...

    def status(self, job_id: str) -> GpuJobStatus:
        """Raises `UnknownJob` for an id the backend does not have."""
        ...

    def reconcile_once(self) -> None:
        """One observe-decide-act-record tick over every job."""
        ...


def _money(value: float | None) -> str:
    return "unpriced" if value is None else f"${value:,.2f}"


def _time(value: float | None) -> str:
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_status(st: GpuJobStatus, *, job_id: str, generation: int | None) -> dict[str, Any]:
    """`.status` for one job: display strings for the printer columns, numbers for tools."""
    out: dict[str, Any] = {
        "phase": st.phase,
        "market": st.market or "",
        "progress": f"{st.progress * 100:.1f}%",
        "progressFraction": round(st.progress, 6),
        "cost": _money(st.cost_usd),
        "projected": _money(st.projected_usd) if st.projected_usd is not None or st.cost_usd is None else "",
        "preemptions": st.preemptions,
        "attempts": st.attempts,
        "liveAttempts": st.live_attempts,
        "deadline": _time(st.deadline),
        "message": st.message,
        "jobId": job_id,
        "priceSource": st.price_source,
    }
    if st.cost_usd is not None:
        out["costUsd"] = round(st.cost_usd, 6)
    if st.projected_usd is not None:
        out["projectedUsd"] = round(st.projected_usd, 6)
    if st.items is not None:
        out.update(itemsTotal=st.items.total, itemsDone=st.items.done, itemsFailed=st.items.failed,
                   itemsQuarantined=st.items.quarantined)
    if generation is not None:
        out["observedGeneration"] = generation
    return out
