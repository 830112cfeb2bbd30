"""The campaign bench's unkind world (`bench/_campaign_world.py`, issue 25), and a small campaign in it.

The draws must be what the bench's docs say: workers in one zone reclaimed at different moments (each
its own draw) where the data has counts, all of them where a 1-node trace reads 0; on-demand refused
during a drawn outage; notices on time, late or missing; item times that follow a length
distribution. And the loop must still do every item exactly once in that world.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import _campaign_world as cw
from bench._campaign_run import RunSpec, run_campaign
from bench._campaign_workers import CampaignWorkers
from orchestrator.research.traces import Trace
from orchestrator.store import make_engine
from orchestrator.store.engine import upgrade
from orchestrator.store.items import ItemStore
from providers.sim import SimClock, SimProvider
from tests.shared_data import data_missing
from vocab import CapacityError, LaunchRequest, Market, Resources

EPOCH = 1_700_000_000.0


def _data(name: str) -> cw.CampaignData:
    try:
        return cw.load(name)
    except (OSError, KeyError, ValueError):
        data_missing(f"{name}: traces not found under {cw.data_root()}")


def test_workers_of_one_zone_are_reclaimed_each_by_its_own_draw_on_count_traces() -> None:
    d = _data("aws-v100-16node")
    z = 0
    start = next(i for i in range(d.counts.shape[1]) if d.counts[z, i] >= 8)
    world = cw.World(d, seed=3, start_tick=start, epoch=EPOCH)
    ends = [world.reclaim_at(d.zones[z], EPOCH) for _ in range(16)]
    assert len(set(ends)) > 1  # not one trace's fate for all
    first_zero = start + next(j for j in range(d.counts.shape[1] - start) if d.counts[z, start + j] == 0)
    assert max(ends) <= world.at_tick(first_zero) + 1e-6  # a zone at 0 takes every node back
    assert min(ends) > EPOCH


def test_on_a_one_node_trace_a_down_tick_reclaims_everyone_and_up_ticks_draw_a_hazard() -> None:
    d = _data("aws-v100-preempt-2023-04")
    row = d.counts[0]
    start = next(i for i in range(len(row) - 400) if row[i:i + 300].all())  # 2.7 h of spot ahead
    first_down = start + int(np.argmin(row[start:]))
    assert row[first_down] == 0
    world = cw.World(d, seed=1, start_tick=start, epoch=EPOCH)
    ends = [world.reclaim_at(d.zones[0], EPOCH) for _ in range(200)]
    assert max(ends) <= world.at_tick(first_down) + 1e-6
    early = [e for e in ends if e < world.at_tick(first_down) - 1]
    assert early  # some workers lost to their own draw while the zone was up
    assert all(world.notice_at(e, EPOCH) is None or EPOCH <= world.notice_at(e, EPOCH) <= e for e in ends)


def test_on_demand_outages_refuse_launches_and_show_the_offer_unavailable(tmp_path: Path) -> None:
    d = _data("aws-v100-4node")
    world = cw.World(d, seed=0, start_tick=0, epoch=EPOCH)
    zone, (a, _b) = next((z, s[0]) for z, s in world.od_outages.items() if s)
    clock = SimClock(EPOCH)
    traces = {z: Trace(d.gap_s, tuple(int(x) for x in d.counts[i])) for i, z in enumerate(d.zones)}
    sim = SimProvider(clock, traces, epoch=EPOCH, reclaim_time=world.reclaim_at)
    engine = make_engine(f"sqlite:///{tmp_path / 'orch.db'}")
    upgrade(engine)
    workers = CampaignWorkers(sim, ItemStore(engine), item_seconds=14.0, world=world)
    clock.advance_to(EPOCH + (a + 0.01) * 3600)
    od = next(o for o in workers.offers(Resources(), []) if o.zone == zone and o.market is Market.ON_DEMAND)
    assert od.available is False
    with pytest.raises(CapacityError):
        workers.launch(LaunchRequest(job_id="j", task_id="t", attempt_id="a1", attempt_number=1, offer=od,
                                     command=("true",), env={}, checkpoint_uri="", grace_seconds=0.0,
                                     estimated_hours=1.0))
    engine.dispose()


def test_item_times_follow_the_length_distribution_and_are_seeded() -> None:
    a, b = cw.item_seconds(5000, 0), cw.item_seconds(5000, 0)
    assert np.array_equal(a, b)
    assert 16.0 < float(a.mean()) < 22.0  # 14.2 s x E[(L / 384)^2] for the stated log-normal
    assert float(np.median(a)) < float(a.mean())  # long sequences take far longer: a heavy right tail
    assert float(a.max()) <= cw.ESMFOLD_S * (cw.LENGTH_CLIP[1] / cw.ESMFOLD_L) ** 2 + 1e-9


def test_a_small_campaign_in_the_unkind_world_is_done_exactly_once() -> None:
    d = _data("aws-v100-preempt-2023-04")
    world = cw.World(d, seed=2, start_tick=0, epoch=SimClock().now())
    per = [float(x) for x in cw.item_seconds(300, 2)]
    traces = {z: Trace(d.gap_s, tuple(int(x) for x in d.counts[i])) for i, z in enumerate(d.zones)}
    r = run_campaign(RunSpec("world", "auto", 4, 6.0), traces, items=300, item_seconds=per, world=world,
                     estimate_s=cw.ESTIMATE_S)
    assert (r.state, r.items, r.lost, r.duplicates, r.refused_commits) == ("succeeded", 300, 0, 0, 0)
    assert r.deadline_met
    billed = r.spot_hours + r.on_demand_hours
    assert abs(billed - (sum(per) / 3600 + r.overhead_h + r.lost_h + r.idle_h)) < 1e-6, r
