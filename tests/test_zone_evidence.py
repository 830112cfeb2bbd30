"""Availability elsewhere from what the loop already sees: other jobs' spot instances (running, or
reclaimed) are evidence about their zone for every task of every job considering it, gathered once
per tick (`ZoneEvidence.of` over the tick's listing) and folded into each multi-zone task's view.

The sim provider's offers are stripped of their `available` flag here, as GCE's and AWS's carry none:
otherwise the flag would tell the policy what the evidence tells it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.core.spec import parse_spec
from orchestrator.loop.executor import Executor, TimedProvider
from orchestrator.loop.reconciler import Reconciler
from orchestrator.loop.zones import ZoneEvidence
from orchestrator.research.traces import Trace
from orchestrator.store import Store
from orchestrator.store.repo import new_id
from providers.base import zone_signals
from providers.sim import SimClock, SimProvider
from vocab import Market, Offer, Resources, ZoneSignal

GAP = 600.0
EAST, WEST = "us-east4-a", "us-west1-a"
REGIONS = {EAST: "us-east4", WEST: "us-west1"}
START = 1_700_000_000.0


class FlaglessSim(SimProvider):
    """The sim provider as a cloud without availability flags in its offers (GCE, AWS)."""

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        return [dataclasses.replace(o, available=None) for o in super().offers(resources, regions)]


def _job(store: Store, tmp: Path, *, regions: list[str], market: str, now: float) -> str:
    text = f"""
name = "z"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 20
deadline_hours = 60
market = "{market}"
[placement]
providers = ["sim"]
regions = {regions!r}
""".replace("'", '"')
    spec = parse_spec(text, source="z", submitted_at=now)
    return store.submit(spec, source="z", now=now, job_id=new_id(), checkpoint_uri=(tmp / new_id()).as_uri())


def _world(sqlite_store: Store, west: tuple[int, ...]) -> tuple[SimClock, FlaglessSim, Reconciler]:
    clock = SimClock(START)
    traces = {EAST: Trace(GAP, (1,) * len(west)), WEST: Trace(GAP, west)}
    sim = FlaglessSim(clock, traces, zone_regions=REGIONS)
    r = Reconciler(sqlite_store, {"sim": sim}, clock, tick_seconds=GAP, lease_seconds=1e12)
    return clock, sim, r


def _west_key() -> tuple[str, str, str, str]:
    return "sim", REGIONS[WEST], WEST, "p3.2xlarge"


def _seen_by(r: Reconciler, store: Store, job_id: str) -> dict[str, tuple[float, float]]:
    """(hours seen, hours seen available) of each zone of the job's (only) task, after its step."""
    task = store.tasks(job_id)[0]
    names, seen, _ = r.zone_memory[task.id]
    return {name: (s.seen_h, s.up_h) for name, s in zip(names, seen, strict=True)}


def test_another_jobs_running_spot_instance_shows_its_zone_up(sqlite_store: Store, tmp_path: Path) -> None:
    clock, _, r = _world(sqlite_store, (1,) * 20)
    pinned = _job(sqlite_store, tmp_path, regions=["us-west1"], market="spot", now=clock.now())
    r.tick()
    assert [(a.zone, a.market) for a in sqlite_store.attempts(pinned)] == [(WEST, Market.SPOT)]

    evidence = ZoneEvidence.of(r.observe())
    assert evidence.up == {_west_key()} and not evidence.down

    # A second job that may run in both regions sees us-west1-a up before it ever ran there ...
    mover = _job(sqlite_store, tmp_path, regions=[], market="auto", now=clock.now())
    r.zone_evidence = evidence  # type: ignore[attr-defined]  # what the Reconciler's tick sets
    r.tick(job_ids=[mover])
    assert _seen_by(r, sqlite_store, mover) == {EAST: (0.0, 0.0), WEST: (GAP / 3600.0, GAP / 3600.0)}


def test_without_the_evidence_nothing_is_seen(sqlite_store: Store, tmp_path: Path) -> None:
    """The control: the same world without the other job's instance leaves both zones unobserved (the
    offers carry no flags here)."""
    clock, _, r = _world(sqlite_store, (1,) * 20)
    mover = _job(sqlite_store, tmp_path, regions=[], market="auto", now=clock.now())
    assert ZoneEvidence.of(r.observe()) == ZoneEvidence()
    r.zone_evidence = ZoneEvidence()  # type: ignore[attr-defined]
    r.tick(job_ids=[mover])
    assert _seen_by(r, sqlite_store, mover) == {EAST: (0.0, 0.0), WEST: (0.0, 0.0)}


def test_a_reclamation_shows_its_zone_down_for_one_tick(sqlite_store: Store, tmp_path: Path) -> None:
    clock, _, r = _world(sqlite_store, (1,) + (0,) * 19)
    pinned = _job(sqlite_store, tmp_path, regions=["us-west1"], market="spot", now=clock.now())
    r.tick()
    clock.advance_to(START + GAP)
    evidence = ZoneEvidence.of(r.observe())  # the instance is reclaimed; its attempt is still live
    assert evidence.down == {_west_key()} and not evidence.up
    offers = r.job_offers(sqlite_store.job(pinned))  # type: ignore[arg-type]
    assert evidence.zones(offers) == (set(), {WEST})
    mover = _job(sqlite_store, tmp_path, regions=[], market="auto", now=clock.now())
    r.zone_evidence = evidence  # type: ignore[attr-defined]
    r.tick(job_ids=[mover])  # ... and a job that never ran there sees us-west1-a down
    assert _seen_by(r, sqlite_store, mover) == {EAST: (0.0, 0.0), WEST: (GAP / 3600.0, 0.0)}

    r.tick(job_ids=[pinned])  # this tick ends the attempt: the reclamation is old news from now on
    clock.advance_to(START + 2 * GAP)
    assert not ZoneEvidence.of(r.observe()).down


def test_evidence_is_matched_by_instance_type() -> None:
    """A running instance of another type says nothing about this type's spot capacity there."""
    other = ("sim", "us-west1", WEST, "p3.8xlarge")
    evidence = ZoneEvidence(up=frozenset({other}))
    clock = SimClock(START)
    sim = SimProvider(clock, {WEST: Trace(GAP, (1,))}, zone_regions={WEST: "us-west1"})
    assert evidence.zones(sim.offers(Resources(), [])) == (set(), set())
    assert ZoneEvidence(up=frozenset({_west_key()})).zones(sim.offers(Resources(), [])) == ({WEST}, set())


class SignallingSim(FlaglessSim):
    """A cloud that publishes a reading per zone (as AWS's placement scores): us-west1-a has no spot."""

    def zone_signals(self, offers: Sequence[Offer]) -> dict[str, ZoneSignal]:
        return {WEST: ZoneSignal(False, "test"), EAST: ZoneSignal(None, "test")}


def test_a_providers_signal_is_the_zones_observation(sqlite_store: Store, tmp_path: Path) -> None:
    clock = SimClock(START)
    traces = {EAST: Trace(GAP, (1,) * 4), WEST: Trace(GAP, (1,) * 4)}
    sim = SignallingSim(clock, traces, zone_regions=REGIONS)
    r = Reconciler(sqlite_store, {"sim": sim}, clock, tick_seconds=GAP, lease_seconds=1e12)
    mover = _job(sqlite_store, tmp_path, regions=[], market="auto", now=clock.now())
    r.tick()
    # Down where the provider says so; a signal of None is no observation.
    assert _seen_by(r, sqlite_store, mover) == {EAST: (0.0, 0.0), WEST: (GAP / 3600.0, 0.0)}


def test_signals_pass_through_a_controllers_timed_providers(sqlite_store: Store, tmp_path: Path) -> None:
    """A long-running controller wraps its providers (`Executor.timed`): the optional signals still reach
    the policy, bounded like every provider call, and a provider without them has none."""
    clock = SimClock(START)
    traces = {EAST: Trace(GAP, (1,) * 4), WEST: Trace(GAP, (1,) * 4)}
    executor = Executor(workers=2)
    try:
        r = Reconciler(sqlite_store, {"sim": SignallingSim(clock, traces, zone_regions=REGIONS)}, clock,
                       tick_seconds=GAP, lease_seconds=1e12, executor=executor)
        assert isinstance(r.providers["sim"], TimedProvider)
        assert zone_signals(r.providers["sim"], []) == {WEST: ZoneSignal(False, "test"), EAST: ZoneSignal(None, "test")}
        plain = executor.timed({"sim": FlaglessSim(clock, traces, zone_regions=REGIONS)})["sim"]
        assert zone_signals(plain, []) == {}
        mover = _job(sqlite_store, tmp_path, regions=[], market="auto", now=clock.now())
        r.tick()
        assert _seen_by(r, sqlite_store, mover) == {EAST: (0.0, 0.0), WEST: (GAP / 3600.0, 0.0)}
    finally:
        executor.shutdown()


def test_another_jobs_failed_launch_shows_its_zone_down(sqlite_store: Store, tmp_path: Path) -> None:
    """Failed launches need no gathering: the shared capacity memory carries them to every task at once."""
    clock, _, r = _world(sqlite_store, (0,) * 20)
    pinned = _job(sqlite_store, tmp_path, regions=["us-west1"], market="spot", now=clock.now())
    r.tick(job_ids=[pinned])
    assert [a.unbilled for a in sqlite_store.attempts(pinned)] == [True]  # refused: no spot in us-west1-a
    mover = _job(sqlite_store, tmp_path, regions=[], market="auto", now=clock.now())
    r.tick(job_ids=[mover])
    assert _seen_by(r, sqlite_store, mover)[WEST] == (GAP / 3600.0, 0.0)
