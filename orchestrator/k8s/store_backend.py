"""The live `JobBackend`: GpuJobs mirrored into orch's store and run by the same reconciler as the CLI.

Money, state and progress come from `orchestrator.core.status.job_status`, the one place they are derived,
so `kubectl get gpujobs` and `orch status` cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.exc import IntegrityError

from orchestrator.core.model import AttemptState, AttemptView
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import JobStatus, job_status
from orchestrator.job.items_format import ParsedItem
from orchestrator.k8s.backend import GpuJobStatus, UnknownJob
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from orchestrator.store.items import ItemStore
from orchestrator.store.repo import new_id
from orchestrator.store.views import JobView
from vocab import Market, Offer

# A job whose live attempts all wait for capacity (a pod without a node, an image being pulled).
LAUNCHING = "Launching"
_PHASES = {"pending": "Pending", "running": "Running", "preempted": "Preempted", "succeeded": "Succeeded",
           "failed": "Failed", "cancelled": "Cancelled", "budget_exceeded": "BudgetExceeded"}


class StoreBackend:
    def __init__(self, store: Store, reconciler: Reconciler, *, checkpoint_root: str,
                 offers: Callable[[JobSpec, str], list[Offer]] | None = None) -> None:
        self.store = store
        self.reconciler = reconciler
        self.checkpoint_root = checkpoint_root.rstrip("/")
        self._offers = offers
        self.items = ItemStore(store.engine)

    def submit(self, spec: JobSpec, *, external_ref: str, items: Sequence[ParsedItem] = ()) -> str:
        existing = self.store.job_by_ref(external_ref)
        if existing is not None:
            return existing.id
        job_id = new_id()
        try:
            self.store.submit(spec, source=f"GpuJob {external_ref}", now=self.reconciler.clock.now(), job_id=job_id,
                              checkpoint_uri=spec.checkpoint.uri or f"{self.checkpoint_root}/{job_id}",
                              external_ref=external_ref, items=items)
        except IntegrityError:
            # Another replica mirrored it first (the unique external_ref): theirs is the job.
            raced = self.store.job_by_ref(external_ref)
            if raced is None:
                raise
            return raced.id
        return job_id

    def find(self, external_ref: str) -> str | None:
        job = self.store.job_by_ref(external_ref)
        return job.id if job is not None else None

    def cancel(self, job_id: str) -> None:
        self.store.request_cancel(job_id, self.reconciler.clock.now())

    def reconcile_once(self) -> None:
        self.reconciler.tick()

    def job_status(self, job_id: str) -> JobStatus:
        return self._read(job_id)[1]

    def _read(self, job_id: str) -> tuple[JobView, JobStatus]:
        job = self.store.job(job_id)
        if job is None or job.id != job_id:
            raise UnknownJob(job_id)
        offers = self._offers(job.spec, job.id) if self._offers and job.finished_at is None else []
        return job, job_status(job_id=job.id, name=job.name, spec=job.spec, created_at=job.created_at,
                               deadline_at=job.deadline_at, tasks=self.store.tasks(job.id),
                               attempts=self.store.attempts(job.id), offers=offers, now=self.reconciler.clock.now())

    def status(self, job_id: str) -> GpuJobStatus:
        job, st = self._read(job_id)
        # A campaign's progress is its items settled (done or quarantined), not its worker slots'.
        items = self.items.counts(job_id) if job.spec.array is not None and job.spec.array.is_campaign else None
        last = self.store.last_event(job_id)
        cost = st.cost
        priced = st.price_known
        phase = _PHASES.get(st.state, "Pending")
        if phase == "Running" and not self._any_started(st.attempts):
            phase = LAUNCHING
        return GpuJobStatus(
            phase=phase,
            market=st.market,
            progress=(items.done + items.quarantined) / items.total if items and items.total else st.progress,
            cost_usd=cost.spent_usd if priced else None,
            projected_usd=cost.projected_usd if priced else None,
            preemptions=cost.preemptions,
            attempts=sum(1 for a in st.attempts if not a.unbilled),
            live_attempts=sum(1 for a in st.attempts if a.state is not AttemptState.ENDED),
            deadline=st.deadline_at,
            message=last.message if last is not None else "",
            price_source="catalog" if priced else "unknown",
            cost_by_market={str(Market.SPOT): cost.spot_usd, str(Market.ON_DEMAND): cost.on_demand_usd},
            items=items,
        )

    @staticmethod
    def _any_started(attempts: Sequence[AttemptView]) -> bool:
        """Whether some live attempt runs the job. An attempt stays launching (and unbilled) until its
        instance runs the job (a pod bound to a node with its container started), so the store knows."""
        live = [a for a in attempts if a.state is not AttemptState.ENDED]
        return not live or any(a.state is AttemptState.RUNNING for a in live)
