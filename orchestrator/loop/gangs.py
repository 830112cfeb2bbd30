"""What the loop keeps of gangs between ticks: the releases a provider has not finished yet.

A gang holds resources besides its nodes (an EC2 placement group, a GCE resource policy, a PodGroup)
that its provider can delete only once every node is gone, which on a cloud takes a while after the
attempt has ended. `ReleaseGang` asks once at once, and, while the provider answers "still in use",
again at each tick after the listing. Kept in memory: a controller that restarts before the release
leaves an empty placement group or resource policy behind (they cost nothing and bound no instance;
docs/gangs.md says so).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.core.model import AttemptView
from providers.base import LaunchesGangs, Provider
from vocab import LaunchRequest, Offer, ProviderError

log = logging.getLogger("orch.reconciler")

# A release that a provider has refused this many ticks is given up (and logged), not asked for ever.
MAX_RELEASE_TRIES = 720


def release_request(job_id: str, a: AttemptView, checkpoint_uri: str) -> LaunchRequest:
    """The request a gang was launched with, as far as releasing it needs (its attempt and region): the
    offer may no longer be offered by then."""
    offer = Offer(provider=a.provider, region=a.region, zone=a.zone, instance_type=a.instance_type, market=a.market,
                  price_per_hour=a.price_per_hour, gpu="", gpu_count=0, gpu_memory_gb=0.0, architecture="",
                  on_demand_price_per_hour=0.0)
    return LaunchRequest(job_id=job_id, task_id=a.task_id, attempt_id=a.id, attempt_number=a.number, offer=offer,
                         command=(), env={}, checkpoint_uri=checkpoint_uri, grace_seconds=0.0, nodes=a.nodes)


@dataclass
class GangReleases:
    # By attempt id: the request and how many times it was refused. Steps of several jobs add to it from
    # the executor's threads while the tick retries: changed under the lock, never during a provider call.
    waiting: dict[str, tuple[LaunchRequest, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def release(self, provider: Provider, request: LaunchRequest) -> None:
        """Release now if the provider can; otherwise keep it for the next ticks."""
        with self._lock:
            self.waiting.setdefault(request.attempt_id, (request, 0))
        self._try(provider, request)

    def retry(self, providers: Mapping[str, Provider]) -> None:
        with self._lock:
            requests = [request for request, _ in self.waiting.values()]
        for request in requests:
            provider = providers.get(request.offer.provider)
            if provider is not None:
                self._try(provider, request)

    def _try(self, provider: Provider, request: LaunchRequest) -> None:
        attempt_id = request.attempt_id
        try:
            done = not isinstance(provider, LaunchesGangs) or provider.release_gang(request)
        except ProviderError as exc:
            log.warning("releasing the gang of attempt %s failed: %s", attempt_id, exc)
            done = False
        with self._lock:
            tries = self.waiting.get(attempt_id, (request, 0))[1] + 1
            if done or tries >= MAX_RELEASE_TRIES:
                if not done:
                    log.warning("gave up releasing the gang of attempt %s after %d tries", attempt_id, tries)
                self.waiting.pop(attempt_id, None)
            else:
                self.waiting[attempt_id] = (request, tries)
