"""The `sim` provider keeps the Provider protocol while replaying availability traces."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.research.traces import Trace
from providers.base import Provider
from providers.sim import SimClock, SimProvider
from vocab import CapacityError, EndReason, InstanceState, LaunchRequest, Market, Offer, PermanentError, Resources

GAP = 600.0
T0 = 1_000_000.0


def _provider(data: dict[str, tuple[int, ...]], overhead_h: float = 0.1, **kw: object) -> tuple[SimClock, SimProvider]:
    clock = SimClock(T0)
    traces = {zone: Trace(GAP, values) for zone, values in data.items()}
    return clock, SimProvider(clock, traces, restart_overhead_hours=overhead_h, **kw)  # type: ignore[arg-type]


def _offer(p: SimProvider, zone: str, market: Market) -> Offer:
    return next(o for o in p.offers(Resources(), []) if o.zone == zone and o.market is market)


def _request(offer: Offer, attempt: str = "a-1", hours: float = 1.0, progress: float = 0.0) -> LaunchRequest:
    return LaunchRequest(job_id="j", task_id="t", attempt_id=attempt, attempt_number=0, offer=offer,
                         command=("true",), env={}, checkpoint_uri="file:///tmp/x", grace_seconds=120.0,
                         estimated_hours=hours, progress=progress)


def test_is_a_provider_with_one_spot_and_one_on_demand_offer_per_zone() -> None:
    clock, p = _provider({"z-a": (1, 0), "z-b": (0, 1)})
    assert isinstance(p, Provider)
    offers = p.offers(Resources(), [])
    assert sorted((o.zone, str(o.market), o.available) for o in offers) == [
        ("z-a", "on-demand", True), ("z-a", "spot", True), ("z-b", "on-demand", True), ("z-b", "spot", False)]
    assert {o.price_per_hour for o in offers if o.market is Market.SPOT} == {0.9731}
    clock.sleep(GAP)
    assert _offer(p, "z-a", Market.SPOT).available is False
    assert _offer(p, "z-b", Market.SPOT).available is True
    assert p.offers(Resources(), ["elsewhere"]) == []
    assert p.offers(Resources(gpus=("H100",)), []) == []


def test_spot_launch_without_capacity_is_a_capacity_error() -> None:
    clock, p = _provider({"z": (0, 1)})
    with pytest.raises(CapacityError) as caught:
        p.launch(_request(_offer(p, "z", Market.SPOT)))
    assert caught.value.retry_after == pytest.approx(GAP)
    assert p.instances() == []
    clock.sleep(GAP)
    assert p.launch(_request(_offer(p, "z", Market.SPOT))).state is InstanceState.RUNNING


def test_work_starts_after_the_overhead_and_finishes_with_exit_code_zero() -> None:
    clock, p = _provider({"z": (1,) * 10}, overhead_h=0.25)
    inst = p.launch(_request(_offer(p, "z", Market.ON_DEMAND), hours=1.0, progress=0.5))
    assert inst.progress == pytest.approx(0.5) and inst.launched_at == T0
    clock.sleep(0.25 * 3600 + 0.25 * 3600)  # overhead, then a quarter hour of work
    (now,) = p.instances()
    assert now.alive and now.progress == pytest.approx(0.75)
    clock.sleep(3600)
    (done,) = p.instances()
    assert done.state is InstanceState.TERMINATED and done.reason is EndReason.EXITED
    assert done.exit_code == 0 and done.progress == pytest.approx(1.0)
    assert done.ended_at == pytest.approx(T0 + 0.25 * 3600 + 0.5 * 3600)


def test_spot_is_reclaimed_at_the_first_unavailable_tick_and_keeps_its_progress() -> None:
    clock, p = _provider({"z": (1, 1, 1, 0, 1)}, overhead_h=0.0)
    clock.sleep(GAP / 2)  # launch mid-tick 0
    p.launch(_request(_offer(p, "z", Market.SPOT), hours=10.0))
    clock.sleep(2 * GAP)
    (alive,) = p.instances()
    assert alive.alive
    clock.sleep(GAP)
    (gone,) = p.instances()
    assert gone.reason is EndReason.PREEMPTED and gone.exit_code is None
    assert gone.ended_at == pytest.approx(T0 + 3 * GAP)
    assert gone.progress == pytest.approx((3 * GAP - GAP / 2) / 3600 / 10.0)
    assert p.notices() == []


def test_spot_runs_out_with_the_trace() -> None:
    clock, p = _provider({"z": (1, 1)}, overhead_h=0.0)
    p.launch(_request(_offer(p, "z", Market.SPOT), hours=10.0))
    clock.sleep(10 * GAP)
    (gone,) = p.instances()
    assert gone.reason is EndReason.PREEMPTED and gone.ended_at == pytest.approx(T0 + 2 * GAP)


def test_launch_is_idempotent_by_attempt_id() -> None:
    clock, p = _provider({"z": (1, 1, 1)})
    first = p.launch(_request(_offer(p, "z", Market.ON_DEMAND), attempt="a-7"))
    clock.sleep(60)
    again = p.launch(_request(_offer(p, "z", Market.ON_DEMAND), attempt="a-7"))
    assert again.instance_id == first.instance_id and again.launched_at == first.launched_at
    assert len(p.instances()) == 1


def test_terminate_is_idempotent_and_stops_the_work() -> None:
    clock, p = _provider({"z": (1,) * 20}, overhead_h=0.0)
    inst = p.launch(_request(_offer(p, "z", Market.ON_DEMAND), hours=5.0))
    clock.sleep(1800)
    p.terminate(inst)
    clock.sleep(1800)
    p.terminate(inst)
    (gone,) = p.instances()
    assert gone.reason is EndReason.TERMINATED and gone.ended_at == pytest.approx(T0 + 1800)
    assert gone.progress == pytest.approx(0.1)
    p.terminate(dataclasses.replace(inst, instance_id="never-launched"))  # not ours: not an error


def test_an_offer_for_an_unknown_zone_is_refused() -> None:
    _, p = _provider({"z": (1,)})
    bad = dataclasses.replace(_offer(p, "z", Market.SPOT), zone="mars")
    with pytest.raises(PermanentError, match="mars"):
        p.launch(_request(bad))


def test_start_tick_and_next_change() -> None:
    clock, p = _provider({"z": (0, 0, 1)}, start_tick=2)
    assert _offer(p, "z", Market.SPOT).available is True
    clock.sleep(100)
    assert p.next_change() == pytest.approx(T0 + GAP)


def test_sim_clock_only_moves_forward() -> None:
    clock = SimClock(5.0)
    clock.sleep(-3)
    clock.advance_to(1.0)
    assert clock.now() == 5.0
    clock.sleep(2.5)
    clock.advance_to(10.0)
    assert clock.now() == 10.0
