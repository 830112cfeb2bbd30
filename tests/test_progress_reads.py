"""Progress from checkpoint storage within a per-tick budget (`orchestrator.loop.progress_reads`)."""

from __future__ import annotations

from pathlib import Path

from bench._scale_storage import Counter, SlowStorage
from orchestrator.job.checkpoint import StorageError
from orchestrator.job.checkpoint.heartbeat import Heartbeat, write_heartbeat
from orchestrator.job.checkpoint.manifest import Manifest, manifest_key
from orchestrator.loop.executor import Executor
from orchestrator.loop.progress_reads import ProgressReads, Want


class World:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.counter = Counter(0.0)
        self.broken: set[str] = set()

    def storage(self, uri: str) -> SlowStorage:
        if uri in self.broken:
            raise StorageError(f"{uri}: unreachable")
        return SlowStorage(uri, self.objects, self.counter)

    def beat(self, uri: str, at: float, seq: int | None, attempt: int = 0) -> None:
        s = self.storage(uri)
        if seq is not None:
            s.put_bytes(manifest_key(seq), Manifest(seq=seq, created_at=at, attempt=attempt, progress=seq / 10,
                                                    files=()).to_json())
        write_heartbeat(s, Heartbeat(attempt=attempt, at=at, progress=0.5, newest_checkpoint=seq))


def wants(n: int, *, ended: tuple[int, ...] = ()) -> list[Want]:
    return [Want(f"a{i}", f"t{i}", f"mem://{i}", 0, ended=i in ended) for i in range(n)]


def test_a_tick_reads_its_budget_never_read_first_then_the_stalest(tmp_path: Path) -> None:
    world, reads, ex = World(), ProgressReads(per_tick=3, interval_s=60.0), Executor()
    for i in range(5):
        world.beat(f"mem://{i}", 0.0, 1)
    reads.refresh(ex, world.storage, wants(5), now=100.0)
    assert sorted(a for a in (f"a{i}" for i in range(5)) if (r := reads.of(a)) and r[1]) == ["a0", "a1", "a2"]
    reads.refresh(ex, world.storage, wants(5), now=130.0)  # a3, a4 never read; a0-a2 read 30 s ago
    assert [a for a in (f"a{i}" for i in range(5)) if (r := reads.of(a)) and r[1]] == ["a3", "a4"]
    reads.refresh(ex, world.storage, wants(5), now=200.0)  # all past the interval: the stalest first
    assert [a for a in (f"a{i}" for i in range(5)) if (r := reads.of(a)) and r[1]] == ["a0", "a1", "a2"]
    held = reads.of("a3")
    assert held is not None and held[1] is False and held[0].heartbeat is not None, "last read kept, not fresh"


def test_an_ended_instance_is_read_whatever_the_budget() -> None:
    world, reads, ex = World(), ProgressReads(per_tick=1, interval_s=60.0), Executor()
    for i in range(3):
        world.beat(f"mem://{i}", 0.0, 1)
    reads.refresh(ex, world.storage, wants(3, ended=(1, 2)), now=10.0)
    fresh = [a for a in ("a0", "a1", "a2") if (r := reads.of(a)) and r[1]]
    assert fresh == ["a1", "a2"]


def test_the_manifest_is_read_again_only_when_the_heartbeat_names_a_newer_one() -> None:
    world, reads, ex = World(), ProgressReads(per_tick=10, interval_s=0.0), Executor()
    world.beat("mem://0", 0.0, 1)
    reads.refresh(ex, world.storage, wants(1), now=1.0)
    assert reads.reads == 2
    world.beat("mem://0", 5.0, 1)
    reads.refresh(ex, world.storage, wants(1), now=6.0)
    assert reads.reads == 1, "same checkpoint: the heartbeat alone"
    world.beat("mem://0", 9.0, 2)
    reads.refresh(ex, world.storage, wants(1), now=10.0)
    got = reads.of("a0")
    assert reads.reads == 2 and got is not None and got[0].manifest is not None and got[0].manifest.seq == 2


def test_a_failed_read_observes_nothing_and_is_tried_again() -> None:
    world, reads, ex = World(), ProgressReads(per_tick=10, interval_s=60.0), Executor()
    world.beat("mem://0", 0.0, 1)
    world.broken.add("mem://0")
    reads.refresh(ex, world.storage, wants(1), now=1.0)
    assert reads.of("a0") is None
    world.broken.clear()
    reads.refresh(ex, world.storage, wants(1), now=2.0)  # not held back by the interval
    got = reads.of("a0")
    assert got is not None and got[1]


def test_attempts_no_longer_wanted_are_forgotten() -> None:
    world, reads, ex = World(), ProgressReads(), Executor()
    world.beat("mem://0", 0.0, None)
    reads.refresh(ex, world.storage, wants(1), now=1.0)
    reads.refresh(ex, world.storage, [], now=2.0)
    assert reads.of("a0") is None


def test_reads_run_at_once_and_a_slow_one_times_out() -> None:
    import threading
    import time
    gate = threading.Event()
    ex = Executor(call_timeout_s=0.5)

    def slow() -> int:
        gate.wait(5)
        return 1

    started = time.monotonic()
    out = ex.gather([lambda: time.sleep(0.2) or 2 for _ in range(8)] + [slow])
    assert time.monotonic() - started < 1.5, "eight 0.2 s reads at once, and one given up after 0.5 s"
    assert out[:8] == [2] * 8 and isinstance(out[8], Exception)
    gate.set()
    ex.shutdown()


def test_every_executor_shares_one_read_pool() -> None:
    """A process that makes many controllers (tests, the simulation harness) must not hold a pool each:
    the harness once ran out of threads after a few hundred seeds."""
    import threading

    from orchestrator.loop.executor import READ_THREADS
    Executor().gather([lambda: 1, lambda: 2])
    before = threading.active_count()
    for _ in range(20):
        assert Executor().gather([lambda: 1, lambda: 2]) == [1, 2]
    assert threading.active_count() - before < READ_THREADS


def test_a_failed_read_keeps_the_last_one_and_goes_first_next_tick() -> None:
    world, reads, ex = World(), ProgressReads(per_tick=1, interval_s=600.0), Executor()
    world.beat("mem://0", 0.0, 1)
    world.beat("mem://1", 0.0, 1)
    reads.refresh(ex, world.storage, wants(2), now=1.0)  # a0 read (never-read first, budget 1)
    world.broken.add("mem://0")
    reads.refresh(ex, world.storage, wants(2, ended=(0,)), now=2.0)  # a0 must be read: it fails
    held = reads.of("a0")
    assert held is not None and held[1] is False and held[0].heartbeat is not None, "the last read stands"
    world.broken.clear()
    reads.refresh(ex, world.storage, wants(2), now=3.0)  # within the interval, but first in line
    got = reads.of("a0")
    assert got is not None and got[1] is True


def test_tasks_the_budget_has_not_reached_yet_are_never_taken_for_silent(tmp_path: Path) -> None:
    """A controller beside more running tasks than it reads a tick: a task not read yet has no heartbeat
    in hand, which must not read as 20 minutes of silence (it once stopped every such task)."""
    from bench._scale_counters import CountingProvider
    from bench._scale_loop import job_toml
    from bench._scale_storage import Agents
    from orchestrator.core.spec import parse_spec
    from orchestrator.loop.reconciler import Reconciler
    from orchestrator.research.traces import Trace
    from orchestrator.store import Store, make_engine
    from orchestrator.store.engine import upgrade
    from providers.sim import SimClock, SimProvider

    engine = make_engine(f"sqlite:///{tmp_path / 'orch.db'}")
    upgrade(engine)
    store, clock = Store(engine), SimClock()
    spec = parse_spec(job_toml(hours=50.0), source="t", submitted_at=clock.now())
    for i in range(6):
        store.submit(spec, source="t", now=clock.now(), checkpoint_uri=f"mem://job{i}")
    sim = SimProvider(clock, {"a": Trace(source="a", gap_seconds=60.0, data=(1,) * 10_000, prices=None)},
                      epoch=clock.now())
    provider, agents = CountingProvider(sim), Agents(store, latency_s=0.0)
    r = Reconciler(store, {"sim": provider}, clock, tick_seconds=60.0, storage=agents.storage,
                   progress=ProgressReads(per_tick=1, interval_s=60.0))
    r.tick()
    provider.strip_progress = True
    agents.follow()
    clock.sleep(2 * 3600.0)  # every attempt is now two hours old, and none was read yet
    for _ in range(8):
        agents.beat(clock.now())
        r.tick()
        clock.sleep(60.0)
    attempts = [a for j in store.jobs() for a in store.attempts(j.id)]
    assert len(attempts) == 6 and all(a.live for a in attempts), [a.outcome for a in attempts]
    engine.dispose()
