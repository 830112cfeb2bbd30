"""The live seam: the multi-zone default driven through offers and the sim provider (capacity errors,
reclamations, progress read from instances) makes the fast simulator's schedule."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import pytest

from orchestrator.core.policy.base import Situation, SpotHistory
from orchestrator.core.policy.multizone import get_multi_policy
from orchestrator.core.policy.multizone_base import Rates, ZoneSeen, move_costs
from orchestrator.core.policy.multizone_live import end_tick, observe, offer_for, situation, zones_of
from orchestrator.research import fastsim
from orchestrator.research.multizone_sim import run
from orchestrator.research.traces import Trace
from providers.sim import SimClock, SimProvider
from vocab import CapacityError, EndReason, LaunchRequest, Market, Resources

GAP = 600.0
NAMES = ("us-east4-a", "us-east4-b", "us-west1-a")
REGIONS = {"us-east4-a": "us-east4", "us-east4-b": "us-east4", "us-west1-a": "us-west1"}
SETUP = fastsim.Setup(task_h=4.0, deadline_h=7.0, overhead_h=0.2, price_ratio=3.15, gap_s=GAP)
FREE = Rates(checkpoint_gb=0.0)  # the sim provider models no copy time: compare without one


def _live(avail: npt.NDArray[np.bool_]) -> tuple[int, int, float]:
    """Drive the default tick by tick through the provider, as a live loop would; (launches,
    preemptions, finish hours)."""
    clock = SimClock(0.0)
    traces = {n: Trace(GAP, tuple(int(x) for x in avail[i])) for i, n in enumerate(NAMES)}
    sim = SimProvider(clock, traces, zone_regions=REGIONS, restart_overhead_hours=SETUP.overhead_h)
    policy = get_multi_policy("auto")
    offers = [dataclasses.replace(o, available=None) for o in sim.offers(Resources(), [])]  # no signal: as GCE
    zones = zones_of(offers)
    seen = tuple(ZoneSeen() for _ in zones)
    history: SpotHistory | None = SpotHistory()
    live, home, done_h, launches, preemptions = None, None, 0.0, 0, 0
    for tick in range(avail.shape[1]):
        clock.advance_to(tick * GAP)
        reclaimed = None
        if live is not None:
            inst = next(i for i in sim.instances() if i.instance_id == live.instance_id)
            done_h = SETUP.task_h * (inst.progress or 0.0)
            if inst.reason is EndReason.EXITED:
                return launches, preemptions, (inst.ended_at or 0.0) / 3600
            if inst.reason is EndReason.PREEMPTED:
                reclaimed, live, preemptions = inst.zone, None, preemptions + 1
        # Only a running *spot* instance shows its zone's spot capacity (as loop/zones.py passes it).
        running = live.zone if live is not None and live.market is Market.SPOT else None
        seen = observe(zones, seen, offers, running_zone=running,
                       reclaimed_zone=reclaimed, at_h=tick * GAP / 3600)
        failed: set[str] = set()
        while True:
            since = 0.0 if live is None else clock.now() - (live.launched_at or 0.0)
            owed = 0.0 if live is None else max(0.0, SETUP.overhead_h - since / 3600)
            task = Situation(elapsed_h=tick * GAP / 3600, deadline_h=SETUP.deadline_h, work_h=SETUP.task_h,
                             done_h=done_h, overhead_h=SETUP.overhead_h, price_ratio=SETUP.price_ratio,
                             current=None if live is None else live.market, spot_available=True,
                             tick_h=GAP / 3600, overhead_left_h=owed, history=history)
            m = situation(task, zones, seen, zone=None if live is None else live.zone, home=home, rates=FREE)
            choice = policy(m)
            offer = offer_for(choice, zones, offers, home)
            if offer is None:
                if live is not None:
                    sim.terminate(live)
                live = None
                break
            if live is not None and live.market is offer.market and (offer.market is Market.ON_DEMAND
                                                                     or live.zone == offer.zone):
                break
            try:
                started = sim.launch(LaunchRequest(
                    job_id="j", task_id="t", attempt_id=f"a{launches}", attempt_number=launches, offer=offer,
                    command=("true",), env={}, checkpoint_uri="file:///tmp/ckpt", grace_seconds=30.0,
                    estimated_hours=SETUP.task_h, progress=done_h / SETUP.task_h))
            except CapacityError:
                failed.add(offer.zone or "")
                seen = observe(zones, seen, [], capacity_errors=failed)
                continue
            if live is not None:
                sim.terminate(live)
            live, home, launches = started, started.zone, launches + 1
            break
        seen, history = end_tick(seen, history, tick * GAP / 3600, GAP / 3600)
    raise AssertionError("not finished within the trace")


@pytest.mark.parametrize("seed", range(6))
def test_the_live_seam_makes_the_fast_path_schedule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    avail = np.ones((3, 60), dtype=bool)
    for z in range(3):
        for _ in range(4):
            start = int(rng.integers(0, 50))
            avail[z, start : start + int(rng.integers(1, 12))] = False
    zones = zones_of([dataclasses.replace(o, available=None) for o in SimProvider(
        SimClock(0.0), {n: Trace(GAP, (1,)) for n in NAMES}, zone_regions=REGIONS).offers(Resources(), [])])
    fast = run(get_multi_policy("auto"), avail, SETUP, zones, move_costs(zones, FREE))
    launches, preemptions, finish_h = _live(avail)
    assert (launches, preemptions) == (fast.launches, fast.preemptions)
    assert finish_h == pytest.approx(fast.finish_h)
