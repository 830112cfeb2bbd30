"""The `sim` provider: spot availability traces replayed against a simulated clock.

It lets the real reconciler, store and policies run a job through days of spot history in seconds:
`orch simulate` drives it, and the benchmarks check that the full loop on it agrees with the fast
policy-only simulator (`orchestrator.research.fastsim`). It follows the model of Wu et al., "Can't Be Late"
(NSDI 2024) and its simulator (`sky_spot/env.py`, `TraceEnv`):

- time is cut into ticks of the trace's `gap_seconds`; `data[i] >= nodes` means spot capacity in
  that zone during tick i (past the end of a trace there is none);
- a spot launch while the zone reads unavailable fails with `CapacityError`;
- an instance works one hour per hour once `restart_overhead_hours` have passed since its launch,
  from the committed fraction `request.progress` of `request.estimated_hours`, and exits with code 0
  when the work is done;
- a spot instance is reclaimed (`PREEMPTED`) at the start of the first later tick at which its zone
  reads unavailable; its progress up to that moment is kept, as if checkpointed continuously. The
  public traces have no interruption notices, so `notices()` has none.

State is computed from the clock when asked, so an instance "runs" without any thread; the provider
is an in-memory object and forgets everything with the process, as a simulation should.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from providers.catalog import InstanceType, load_catalog
from vocab import (
    Abilities,
    Billing,
    CapacityError,
    EndReason,
    Instance,
    InstanceState,
    LaunchRequest,
    Market,
    Notice,
    Offer,
    PermanentError,
    Resources,
)

# The prices of the paper's simulator (`sky_spot/utils.py`): p3.2xlarge, us-west-2.
DEFAULT_ON_DEMAND_PRICE = 3.06
DEFAULT_SPOT_PRICE = 0.9731
_EPS = 1e-9


class AvailabilityTrace(Protocol):
    """What the provider needs of a trace (`orchestrator.research.traces.Trace` is one)."""

    @property
    def gap_seconds(self) -> float: ...

    @property
    def data(self) -> Sequence[int]: ...

    @property
    def prices(self) -> Sequence[float] | None: ...


class SimClock:
    """A clock whose `sleep` moves simulated time forward instantly; `now` starts at `start`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds

    def advance_to(self, when: float) -> None:
        """Jump to `when` (never backwards): used to wake exactly at the next trace tick."""
        self._now = max(self._now, float(when))


class _Zone:
    """One zone's trace, indexed by simulated time, with the next outage precomputed."""

    def __init__(self, name: str, trace: AvailabilityTrace, nodes: int, epoch: float, start_tick: int,
                 region: str) -> None:
        if not math.isfinite(trace.gap_seconds) or trace.gap_seconds <= 0:
            raise ValueError(f"zone {name}: gap_seconds must be a finite number greater than 0")
        self.name = name
        self.region = region
        self.gap = float(trace.gap_seconds)
        self.epoch = epoch - start_tick * self.gap  # the time at which tick 0 of the trace began
        self.up = [count >= nodes for count in trace.data]
        self.prices = None if trace.prices is None else list(trace.prices)
        self.outages = [i for i, up in enumerate(self.up) if not up]  # sorted tick indices

    def tick(self, at: float) -> int:
        return math.floor((at - self.epoch) / self.gap + _EPS)

    def available(self, at: float) -> bool:
        i = self.tick(at)
        return 0 <= i < len(self.up) and self.up[i]

    def reclaimed_at(self, launched: float) -> float:
        """Start of the first tick after the launch tick at which the zone has no capacity."""
        after = self.tick(launched) + 1
        j = bisect.bisect_left(self.outages, after)
        first_off = self.outages[j] if j < len(self.outages) else max(after, len(self.up))
        return self.epoch + first_off * self.gap

    def spot_price(self, at: float, default: float) -> float:
        i = self.tick(at)
        if self.prices is None or not 0 <= i < len(self.prices):
            return default
        return self.prices[i]


@dataclass(slots=True)
class _Attempt:
    instance_id: str
    request: LaunchRequest
    zone: _Zone
    market: Market
    launched_at: float
    work_starts_at: float
    done_at: float  # when the work would be finished if nothing stopped it
    reclaimed_at: float | None  # spot only
    terminated_at: float | None = None

    def ending(self, now: float) -> tuple[float, EndReason] | None:
        """What ended this attempt by `now`, if anything: the earliest of done, reclaimed, terminated."""
        events = [(self.done_at, 0, EndReason.EXITED)]
        if self.reclaimed_at is not None:
            events.append((self.reclaimed_at, 1, EndReason.PREEMPTED))
        if self.terminated_at is not None:
            events.append((self.terminated_at, 2, EndReason.TERMINATED))
        at, _, reason = min(events)
        return (at, reason) if at <= now + _EPS else None

    def progress(self, at: float) -> float:
        hours = self.request.estimated_hours
        if hours <= 0:
            return 1.0
        worked_h = max(0.0, at - self.work_starts_at) / 3600.0
        return min(1.0, self.request.progress + worked_h / hours)


class SimProvider:
    """A `Provider` over availability traces, one per zone.

    Zones are in one simulated region (`region`) unless `zone_regions` names each zone's region: then
    offers, launches and instances carry the zone's own region, so the loop and the multi-zone
    policies see a multi-region placement (e.g. the aligned per-zone traces of a multi-region folder).
    """

    name = "sim"
    abilities = Abilities()

    def __init__(
        self,
        clock: SimClock,
        traces: Mapping[str, AvailabilityTrace],
        *,
        region: str = "sim",
        instance_type: str = "p3.2xlarge",
        spot_price: float = DEFAULT_SPOT_PRICE,
        on_demand_price: float = DEFAULT_ON_DEMAND_PRICE,
        restart_overhead_hours: float = 0.1,
        start_tick: int = 0,
        nodes: int = 1,
        epoch: float | None = None,
        billing: Billing | None = None,
        zone_regions: Mapping[str, str] | None = None,
        reclaim_time: Callable[[str, float], float] | None = None,
    ) -> None:
        """`epoch` (default: the clock's now) is when tick `start_tick` of every trace begins.

        `reclaim_time(zone, launched_at)`, if given, says when a spot instance launched then is
        reclaimed, instead of the zone's next outage: a benchmark that draws each instance's fate
        on its own (several instances in one zone are not all taken back at once)."""
        if not traces:
            raise ValueError("the sim provider needs at least one trace (one per zone)")
        # NaN passes `x <= 0` unnoticed (it fails every comparison): finiteness is checked first.
        if not (math.isfinite(spot_price) and math.isfinite(on_demand_price) and spot_price > 0
                and on_demand_price > 0):
            raise ValueError("prices must be finite numbers greater than 0")
        if not (math.isfinite(restart_overhead_hours) and restart_overhead_hours >= 0):
            raise ValueError("restart_overhead_hours must be a finite number, not negative")
        if not math.isfinite(clock.now()) or (epoch is not None and not math.isfinite(epoch)):
            raise ValueError("the simulated clock and epoch must be finite")
        self.clock = clock
        self.region = region
        self.instance_type = instance_type
        self.spot_price = float(spot_price)
        self.on_demand_price = float(on_demand_price)
        self.overhead_s = restart_overhead_hours * 3600.0
        self.billing = billing or Billing()
        start = clock.now() if epoch is None else float(epoch)
        placed = zone_regions or {}
        if set(placed) - set(traces):
            raise ValueError(f"zone_regions names zones without a trace: {sorted(set(placed) - set(traces))}")
        self.zones = {name: _Zone(name, t, nodes, start, start_tick, placed.get(name, region))
                      for name, t in traces.items()}
        self.kind = _instance_kind(instance_type)
        self.reclaim_time = reclaim_time
        self._attempts: dict[str, _Attempt] = {}  # by attempt id
        self._by_instance: dict[str, _Attempt] = {}

    # --- Provider protocol ----------------------------------------------------------------------

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        if not self.kind.satisfies(resources):
            return []
        now = self.clock.now()
        out: list[Offer] = []
        for zone in self.zones.values():
            if regions and zone.region not in regions:
                continue
            out.append(self._offer(zone, Market.SPOT, zone.spot_price(now, self.spot_price), zone.available(now)))
            out.append(self._offer(zone, Market.ON_DEMAND, self.on_demand_price, True))
        return out

    def launch(self, request: LaunchRequest) -> Instance:
        now = self.clock.now()
        known = self._attempts.get(request.attempt_id)
        if known is not None:
            return self._view(known, now)
        offer = request.offer
        zone = self.zones.get(offer.zone or "")
        if offer.provider != self.name or zone is None or offer.region != zone.region:
            raise PermanentError(f"sim: no zone {offer.zone!r} in region {offer.region}", provider=self.name,
                                 code="unknown-zone")
        if offer.market is Market.SPOT and not zone.available(now):
            retry = max(zone.gap - ((now - zone.epoch) % zone.gap), 1.0)
            raise CapacityError(f"sim: no spot capacity in {zone.name} at tick {zone.tick(now)}",
                                provider=self.name, code="no-capacity", retry_after=retry)
        work_starts = now + self.overhead_s
        left_h = max(0.0, 1.0 - request.progress) * max(0.0, request.estimated_hours)
        if not math.isfinite(left_h):
            raise PermanentError(f"sim: the work left ({left_h} h) is not a finite number", provider=self.name,
                                 code="bad-request")
        attempt = _Attempt(
            instance_id=f"sim-{len(self._attempts) + 1:06d}",
            request=request,
            zone=zone,
            market=offer.market,
            launched_at=now,
            work_starts_at=work_starts,
            done_at=work_starts + left_h * 3600.0,
            reclaimed_at=self._reclaimed_at(zone, now) if offer.market is Market.SPOT else None,
        )
        self._attempts[request.attempt_id] = attempt
        self._by_instance[attempt.instance_id] = attempt
        return self._view(attempt, now)

    def instances(self) -> list[Instance]:
        now = self.clock.now()
        return [self._view(a, now) for a in self._attempts.values()]

    def terminate(self, instance: Instance) -> None:
        attempt = self._by_instance.get(instance.instance_id)
        if attempt is None:
            return  # never ours, or long gone: terminating it is not an error
        now = self.clock.now()
        if attempt.terminated_at is None and attempt.ending(now) is None:
            attempt.terminated_at = now

    def notices(self) -> list[Notice]:
        return []

    # --- helpers --------------------------------------------------------------------------------

    def _reclaimed_at(self, zone: _Zone, launched: float) -> float:
        if self.reclaim_time is None:
            return zone.reclaimed_at(launched)
        return max(launched, min(zone.reclaimed_at(launched), self.reclaim_time(zone.name, launched)))

    def reclaims(self) -> dict[str, float]:
        """Attempt id -> when its spot instance is (or was) reclaimed: what the world knows and the
        loop does not (a benchmark draws interruption notices from it)."""
        return {a.request.attempt_id: a.reclaimed_at for a in self._attempts.values() if a.reclaimed_at is not None}

    def next_change(self) -> float:
        """When the next trace tick begins in any zone: a loop can sleep exactly until then."""
        now = self.clock.now()
        return min(z.epoch + (z.tick(now) + 1) * z.gap for z in self.zones.values())

    def _offer(self, zone: _Zone, market: Market, price: float, available: bool) -> Offer:
        k = self.kind
        return Offer(
            provider=self.name, region=zone.region, zone=zone.name, instance_type=k.name, market=market,
            price_per_hour=price, gpu=k.gpu, gpu_count=k.gpu_count, gpu_memory_gb=k.gpu_memory_gb,
            architecture=k.architecture, on_demand_price_per_hour=self.on_demand_price,
            price_source="trace" if market is Market.SPOT and zone.prices is not None else "catalog",
            available=available, billing=self.billing,
        )

    def _view(self, a: _Attempt, now: float) -> Instance:
        ended = a.ending(now)
        at = now if ended is None else ended[0]
        r = a.request
        return Instance(
            provider=self.name, region=a.zone.region, zone=a.zone.name, instance_id=a.instance_id,
            instance_type=self.kind.name, market=a.market,
            state=InstanceState.RUNNING if ended is None else InstanceState.TERMINATED,
            attempt_id=r.attempt_id, job_id=r.job_id, task_id=r.task_id, launched_at=a.launched_at,
            ended_at=None if ended is None else ended[0],
            exit_code=0 if ended is not None and ended[1] is EndReason.EXITED else None,
            reason=None if ended is None else ended[1], progress=a.progress(at),
        )


def _instance_kind(name: str) -> InstanceType:
    """The catalog's record for `name`, or a one-V100 stand-in for a name the catalog lacks."""
    found = load_catalog().find(name)
    if found is not None:
        return found
    return InstanceType(provider="sim", name=name, gpu="V100", gpu_count=1, gpu_memory_gb=16.0,
                        architecture="volta", vcpus=8, memory_gb=61.0, regions=())
