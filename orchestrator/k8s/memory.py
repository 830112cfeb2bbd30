"""`MemoryBackend`: a `JobBackend` in memory over any `Provider`, shipped beside the protocol.

It exists so the controller can be run and tested without a database: a deliberately small loop
(one task per job, spot first unless the job says on-demand, a new attempt after each preemption,
no deadline policy) that exercises every path the controller renders: launches, preemptions, market
changes, cost, cancellation. The live system plugs the store and the reconciler in instead.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from orchestrator.k8s.backend import GpuJobStatus, UnknownJob, phase_of
from orchestrator.model import TaskState
from orchestrator.spec import JobSpec
from providers.base import Clock as ClockProtocol
from providers.base import (
    EndReason,
    Instance,
    InstanceState,
    LaunchRequest,
    Market,
    Offer,
    Provider,
    ProviderError,
    SystemClock,
)


@dataclass
class _Attempt:
    id: str
    number: int
    offer: Offer
    started: float
    ended: float | None = None
    instance: Instance | None = None


@dataclass
class _Job:
    id: str
    spec: JobSpec
    state: TaskState = TaskState.PENDING
    attempts: list[_Attempt] = field(default_factory=list)
    preemptions: int = 0
    cancel: bool = False
    message: str = ""

    @property
    def live(self) -> _Attempt | None:
        return next((a for a in self.attempts if a.ended is None), None)


class MemoryBackend:
    def __init__(self, provider: Provider, *, clock: ClockProtocol | None = None,
                 checkpoint_root: str = "file:///tmp/orch-checkpoints") -> None:
        self.provider = provider
        self.clock = clock or SystemClock()
        self.checkpoint_root = checkpoint_root.rstrip("/")
        self.jobs: dict[str, _Job] = {}
        self._refs: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    def submit(self, spec: JobSpec, *, external_ref: str) -> str:
        with self._lock:
            if external_ref in self._refs:
                return self._refs[external_ref]
            job_id = f"job-{next(self._ids)}"
            self.jobs[job_id] = _Job(job_id, spec)
            self._refs[external_ref] = job_id
            return job_id

    def find(self, external_ref: str) -> str | None:
        with self._lock:
            return self._refs.get(external_ref)

    def cancel(self, job_id: str) -> None:
        with self._lock:
            self._job(job_id).cancel = True

    def _job(self, job_id: str) -> _Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise UnknownJob(job_id) from None

    def reconcile_once(self) -> None:
        with self._lock:
            seen = {i.attempt_id: i for i in self.provider.instances() if i.attempt_id}
            for job in self.jobs.values():
                self._observe(job, seen)
                if job.cancel and not job.state.terminal:
                    self._stop(job, TaskState.CANCELLED)
                elif job.state is TaskState.PENDING and not job.cancel:
                    self._launch(job)

    def _observe(self, job: _Job, seen: dict[str, Instance]) -> None:
        live = job.live
        if live is None:
            return
        inst = seen.get(live.id)
        live.instance = inst or live.instance
        if inst is None or inst.state is InstanceState.TERMINATED:
            live.ended = (inst.ended_at if inst else None) or self.clock.now()
            reason = inst.reason if inst else EndReason.LOST
            if inst is not None:
                self.provider.terminate(inst)  # releases the pod the provider held for us to read
            if reason is EndReason.EXITED and inst is not None and inst.exit_code == 0:
                job.state = TaskState.SUCCEEDED
            elif reason is EndReason.EXITED:
                job.state, job.message = TaskState.FAILED, f"exited with code {inst.exit_code if inst else '?'}"
            elif not job.state.terminal:
                job.preemptions += reason is EndReason.PREEMPTED
                job.state = TaskState.PENDING
        elif inst.state is InstanceState.RUNNING and job.state is TaskState.LAUNCHING:
            job.state = TaskState.RUNNING

    def _stop(self, job: _Job, target: TaskState) -> None:
        live = job.live
        if live is not None and live.instance is not None:
            self.provider.terminate(live.instance)
        if live is not None:
            live.ended = self.clock.now()
        job.state = target

    def _launch(self, job: _Job) -> None:
        spec = job.spec
        market = Market.ON_DEMAND if spec.schedule.market == "on-demand" else Market.SPOT
        offers = sorted((o for o in self.provider.offers(spec.resources, spec.placement.regions)
                         if o.market is market), key=lambda o: o.price_per_hour)
        if not offers:
            job.message = f"no {market} offer fits the job's resources"
            return
        number = len(job.attempts)
        attempt = _Attempt(f"{job.id}-a{number}", number, offers[0], self.clock.now())
        request = LaunchRequest(
            job_id=job.id, task_id=f"{job.id}-t0", attempt_id=attempt.id, attempt_number=number,
            offer=offers[0], command=spec.command, env=dict(spec.env),
            checkpoint_uri=spec.checkpoint.uri or f"{self.checkpoint_root}/{job.id}/t0",
            grace_seconds=spec.checkpoint.grace_seconds, image=spec.image, workdir=spec.workdir,
            estimated_hours=spec.schedule.estimated_hours,
            options=dict(spec.placement.options.get(self.provider.name, {})),
        )
        try:
            attempt.instance = self.provider.launch(request)
        except ProviderError as exc:
            job.message = f"launch failed: {exc}"
            return
        job.attempts.append(attempt)
        job.state, job.message = TaskState.LAUNCHING, ""

    def status(self, job_id: str) -> GpuJobStatus:
        with self._lock:
            job = self._job(job_id)
            now = self.clock.now()
            by_market: dict[str, float] = {}
            unpriced = any(a.offer.price_source == "unknown" for a in job.attempts)
            for a in job.attempts:
                seconds = a.offer.billing.billed_seconds((a.ended or now) - a.started)
                by_market[a.offer.market.value] = by_market.get(a.offer.market.value, 0.0) + \
                    a.offer.price_per_hour * seconds / 3600.0
            cost = sum(by_market.values())
            live = job.live
            current = live.offer if live else (job.attempts[-1].offer if job.attempts else None)
            progress = (live.instance.progress if live and live.instance else None) or 0.0
            projected = None if unpriced or current is None else \
                cost + (1.0 - progress) * job.spec.schedule.estimated_hours * current.price_per_hour
            return GpuJobStatus(
                phase=phase_of(job.state), market=current.market.value if current else None, progress=progress,
                cost_usd=None if unpriced else cost, projected_usd=projected, preemptions=job.preemptions,
                attempts=len(job.attempts), live_attempts=int(live is not None), deadline=job.spec.schedule.deadline,
                message=job.message, price_source="unknown" if unpriced else "catalog",
                cost_by_market={} if unpriced else by_market)
