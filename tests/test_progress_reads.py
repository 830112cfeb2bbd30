"""Progress from checkpoint storage within a per-tick budget (`orchestrator.loop.progress_reads`)."""

from __future__ import annotations

from pathlib import Path

from bench._scale_storage import Counter, SlowStorage
from orchestrator.checkpoint import StorageError
from orchestrator.checkpoint.heartbeat import Heartbeat, write_heartbeat
from orchestrator.checkpoint.manifest import Manifest, manifest_key
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
