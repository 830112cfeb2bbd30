"""What the controller does for one GpuJob: finalizer, submission, status, events, cleanup.

`GpuJobSync.sync` is level-triggered: it looks at the object as it is (never at the event that woke
it) and at the backend's view of the job, and makes the two agree. Everything it needs to carry from
one call to the next lives on the object itself (`.status.jobId`, `.status.attempts`, ...), so a new
leader after a failover continues exactly where the old one stopped and emits no duplicate Events.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.core.spec import SpecError
from orchestrator.k8s.backend import (
    INVALID,
    PENDING,
    TERMINAL_PHASES,
    TERMINATING,
    GpuJobStatus,
    JobBackend,
    UnknownJob,
    render_status,
)
from orchestrator.k8s.convert import campaign_from_gpujob, source_of
from orchestrator.k8s.gpujob_items import ItemsNotReady
from orchestrator.k8s.kube import FINALIZER, GpuJobClient, KubeError, key_of
from orchestrator.k8s.metrics import Labels, Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one sync saw, for the metrics of the whole pass."""

    phase: str
    status: GpuJobStatus | None


class GpuJobSync:
    def __init__(self, client: GpuJobClient, backend: JobBackend, metrics: Metrics,
                 policies: Callable[[str], bool] | None = None,
                 remember: Callable[[dict[str, Any]], None] | None = None, campaigns: bool = True) -> None:
        """`remember` receives every object this class writes, so the next pass does not read a
        cache that the watch has not refreshed yet (and submit or announce the same thing twice).
        `campaigns`: whether campaign workers (pods) can reach an item service; if not, a campaign
        GpuJob is refused as Invalid rather than run by workers that cannot get their items."""
        self.client = client
        self.backend = backend
        self.metrics = metrics
        self.policies = policies
        self.remember = remember or (lambda obj: None)
        self.campaigns = campaigns

    def sync_all(self, objects: Iterable[Mapping[str, Any]]) -> None:
        """One pass over every GpuJob; one object's failure never stops the others."""
        outcomes: list[Outcome] = []
        for obj in objects:
            try:
                outcomes.append(self.sync(obj))
            except KubeError as exc:
                log.warning("sync %s: %s", key_of(obj), exc)
            except Exception:  # a backend failure on one job must not starve the others
                log.exception("sync %s failed", key_of(obj))
        self._publish(outcomes)

    def sync(self, obj: Mapping[str, Any]) -> Outcome:
        meta = obj.get("metadata") or {}
        status = dict(obj.get("status") or {})
        if meta.get("deletionTimestamp"):
            return self._finalize(obj, status)
        if FINALIZER not in (meta.get("finalizers") or []):
            obj = self.client.add_finalizer(obj)
            self.remember(obj)
            meta = obj["metadata"]
        job_id = str(status.get("jobId") or "")
        if status.get("phase") == INVALID and status.get("observedGeneration") == meta.get("generation"):
            return Outcome(INVALID, None)
        try:
            st = self.backend.status(job_id) if job_id else None
        except UnknownJob:
            st = None
        if status.get("phase") in TERMINAL_PHASES and (st is None or st.phase != status.get("phase")):
            return self._finished_already(obj, status, job_id, st)
        if st is None and job_id:
            log.warning("%s: the backend has no job %s; submitting again", key_of(obj), job_id)
        generation = status.get("observedGeneration", meta.get("generation"))
        submitted = st is None
        if st is None:
            new_id, not_submitted = self._submit(obj)
            if new_id is None:
                return Outcome(not_submitted, None)
            job_id, st = new_id, self.backend.status(new_id)
            generation = meta.get("generation")
        new = render_status(st, job_id=job_id, generation=generation)
        if meta.get("generation") not in (None, generation):
            new["message"] = (f"spec changed after submission (generation {meta.get('generation')}); the job runs "
                              f"generation {generation}. Create a new GpuJob to change it. {new['message']}").strip()
        if {k: status.get(k) for k in new} != new:
            self.remember(self.client.patch_status(obj, new))
        # Events after the status that records them is written: a failed write repeats nothing.
        if submitted:
            self._event(obj, "Submitted", f"submitted as job {job_id}")
        self._events(obj, status, st)
        return Outcome(st.phase, st)

    def _finished_already(self, obj: Mapping[str, Any], status: Mapping[str, Any], job_id: str,
                          st: GpuJobStatus | None) -> Outcome:
        """A GpuJob whose status says it ended: that status is the record, whatever the backend knows.

        A controller on an empty (or restored) store would otherwise run a finished job again. The
        status is left as written; a backend job still live for it is cancelled, never resumed.
        """
        if st is not None and not st.terminal:
            log.warning("%s ended %s, but job %s is live in the store; cancelling it", key_of(obj),
                        status.get("phase"), job_id)
            self.backend.cancel(job_id)
        return Outcome(str(status.get("phase")), None)

    def _submit(self, obj: Mapping[str, Any]) -> tuple[str | None, str]:
        """Submit the job (a campaign with its items, read and checked whole): its id, or None and the
        phase written instead: Invalid (with an InvalidSpec Event), or Pending while a ConfigMap is missing."""
        meta = obj["metadata"]
        try:
            spec, items = campaign_from_gpujob(obj, read_config_map=self.client.config_map, policies=self.policies)
            if items and not self.campaigns:
                raise SpecError(source_of(obj), "array", "this controller serves no item service for campaign "
                                "workers (set ORCH_K8S_ITEMS_URL; the Helm chart does)")
        except ItemsNotReady as exc:
            status = obj.get("status") or {}
            if status.get("phase") != PENDING or status.get("message") != str(exc):
                self.remember(self.client.patch_status(obj, {"phase": PENDING, "message": str(exc)}))
            return None, PENDING
        except SpecError as exc:
            self.remember(self.client.patch_status(obj, {"phase": INVALID, "message": str(exc),
                                                         "observedGeneration": meta.get("generation")}))
            self._event(obj, "InvalidSpec", str(exc), warning=True)
            return None, INVALID
        return self.backend.submit(spec, external_ref=str(meta.get("uid") or key_of(obj)), items=items), ""

    def _finalize(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> Outcome:
        """Deleting: cancel, wait until no attempt is alive, then let the resource go."""
        if FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return Outcome(TERMINATING, None)
        job_id = str(status.get("jobId") or "")
        if not job_id:
            # Submitted, but the status that records it was never written (an API error, a leader
            # that died in between): find the job by the resource's uid rather than abandon it.
            job_id = self.backend.find(str(obj["metadata"].get("uid") or key_of(obj))) or ""
        live = 0
        if job_id:
            try:
                self.backend.cancel(job_id)
                live = self.backend.status(job_id).live_attempts
            except UnknownJob:
                live = 0
        if live:
            if status.get("phase") != TERMINATING or status.get("liveAttempts") != live:
                self.remember(self.client.patch_status(obj, {"phase": TERMINATING, "liveAttempts": live,
                                                             "message": f"stopping {live} attempt(s) before deletion"}))
            return Outcome(TERMINATING, None)
        self.remember(self.client.remove_finalizer(obj))
        self._event(obj, "CleanedUp", "every attempt stopped; releasing the resource")
        return Outcome(TERMINATING, None)

    def _events(self, obj: Mapping[str, Any], old: Mapping[str, Any], st: GpuJobStatus) -> None:
        """Events from what changed since the status last written (stored on the object itself)."""
        before_attempts = int(old.get("attempts") or 0)
        if st.attempts > before_attempts:
            self._event(obj, "Launched", f"attempt {st.attempts} launched on {st.market or 'unknown'} capacity")
        before_pre = int(old.get("preemptions") or 0)
        if st.preemptions > before_pre:
            self.metrics.inc("orch_preemptions_total", st.preemptions - before_pre)
            self._event(obj, "Preempted", f"spot capacity reclaimed ({st.preemptions} so far); "
                        "resuming from the last checkpoint", warning=True)
        old_market = str(old.get("market") or "")
        if old_market and st.market and st.market != old_market:
            self._event(obj, "MarketSwitched", f"{old_market} -> {st.market}")
        if st.terminal and old.get("phase") != st.phase:
            self._event(obj, st.phase, st.message or f"job {st.phase.lower()}", warning=st.phase != "Succeeded")

    def _event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.metrics.inc("orch_events_total", reason=reason)
        self.client.event(obj, reason=reason, message=message, warning=warning)

    def _publish(self, outcomes: list[Outcome]) -> None:
        phases = Counter(o.phase for o in outcomes)
        self.metrics.replace("orch_gpujobs", {(("phase", p),): float(n) for p, n in phases.items()})
        cost: dict[Labels, float] = {}
        unpriced = 0
        for o in outcomes:
            if o.status is None:
                continue
            if o.status.cost_usd is None:
                unpriced += 1
            for market, usd in o.status.cost_by_market.items():
                key: Labels = (("market", market),)
                cost[key] = cost.get(key, 0.0) + usd
        self.metrics.replace("orch_cost_usd", cost)
        self.metrics.set("orch_unpriced_gpujobs", float(unpriced))
