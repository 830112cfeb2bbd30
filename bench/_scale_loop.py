"""One steady-state measurement of the reconcile loop: N running tasks, optionally among many finished.

Only public entry points are used (`Store.submit`, `Reconciler.tick`, the `sim` provider), so the
same measurement runs before and after the loop is rebuilt. Finished work is made by the real loop
too: short jobs are submitted, ticked until they succeed, and their provider is then dropped (a
cloud forgets a terminated instance after a while), so the measured ticks see only the running work.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench._scale_counters import CountingProvider, QueryCounter
from bench._scale_fill import clone_jobs
from bench._scale_storage import Agents
from orchestrator.core.spec import parse_spec
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import upgrade
from providers.sim import SimClock, SimProvider

TICK_S = 60.0
ARRAY_SHARDS = 100
SHAPES = ("single", "array")
TEMPLATES = 200  # finished jobs made by the loop; more are copies of these
_HOURS = 500.0  # per task: nothing finishes while it is measured (a job holds at most 87,600 h)


def job_toml(*, hours: float, shards: int = 1) -> str:
    """A spot job on the sim provider; with `shards` > 1 an array job of that many one-item shards."""
    array = f"\n[array]\ncount = {shards}\nshard_size = 1\n" if shards > 1 else ""
    return (f'name = "scale"\ncommand = ["true"]\n[resources]\ngpu = "V100"\n[schedule]\n'
            f'estimated_hours = {hours * shards}\nmarket = "spot"\n[placement]\nproviders = ["sim"]\n{array}')


@dataclass
class LoopResult:
    """Medians over the measured ticks; `calls` is the mean count of each provider method per tick."""

    shape: str
    running: int
    stored: int
    jobs: int
    tick_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # the tick's CPU time in this process (load-proof)
    rows: list[int] = field(default_factory=list)
    task_rows: list[int] = field(default_factory=list)  # of `rows`, task and attempt rows
    statements: list[int] = field(default_factory=list)
    task_updates: list[int] = field(default_factory=list)
    calls: dict[str, float] = field(default_factory=dict)
    alive: int = 0  # instances alive at the sim provider while measured: the running tasks
    setup_s: float = 0.0

    @property
    def tick(self) -> float:
        return statistics.median(self.tick_s)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_s)

    @property
    def rows_per_tick(self) -> float:
        return statistics.median(self.rows)

    @property
    def task_rows_per_tick(self) -> float:
        return statistics.median(self.task_rows)

    @property
    def statements_per_tick(self) -> float:
        return statistics.median(self.statements)

    @property
    def task_updates_per_tick(self) -> float:
        return statistics.median(self.task_updates)


def _always() -> Trace:
    return Trace(source="always", gap_seconds=TICK_S, data=(1,) * 200_000, prices=None)


def _submit(store: Store, clock: SimClock, toml: str, count: int, ckpt: str) -> None:
    spec = parse_spec(toml, source="scale", submitted_at=clock.now())
    for i in range(count):  # each job its own prefix: the heartbeats phase reads each task's own objects
        store.submit(spec, source="scale", now=clock.now(), checkpoint_uri=f"{ckpt}/{i}")


def _finish(store: Store, clock: SimClock, count: int, ckpt: str, max_ticks: int = 8) -> None:
    """Store `count` finished single-task jobs: up to `TEMPLATES` run to success by the loop on a provider
    then dropped, the rest copies of those (`bench._scale_fill`: the same rows, without running 90,000
    jobs through the loop first)."""
    if count <= 0:
        return
    made = min(count, TEMPLATES)
    _run_to_success(store, clock, made, ckpt, max_ticks)
    if count > made:
        templates = store.jobs(limit=made)
        clone_jobs(store.engine, [j.id for j in templates], count - made)


def _run_to_success(store: Store, clock: SimClock, count: int, ckpt: str, max_ticks: int) -> None:
    _submit(store, clock, job_toml(hours=0.01), count, ckpt)
    r = Reconciler(store, {"sim": SimProvider(clock, {"a": _always()}, epoch=clock.now())}, clock,
                   tick_seconds=TICK_S)
    for _ in range(max_ticks):
        if not r.tick():
            return
        clock.sleep(3600.0)
    raise RuntimeError(f"{count} short jobs did not finish in {max_ticks} ticks")


def _jobs(shape: str, tasks: int) -> tuple[int, int]:
    """(jobs, shards per job) for `tasks` running tasks of this shape."""
    if shape == "single":
        return tasks, 1
    shards = min(ARRAY_SHARDS, tasks)
    return -(-tasks // shards), shards


def measure_loop(url: str, tasks: int, shape: str, *, ticks: int = 3, stored: int = 0,
                 warmup: int = 2) -> LoopResult:
    """Submit `tasks` running tasks (plus finished jobs up to `stored` tasks), then time `ticks` quiet ticks."""
    return measure_phases(url, tasks, shape, ticks=ticks, stored=stored, warmup=warmup, phases=(QUIET,))[QUIET]


QUIET, PROGRESS, HEARTBEATS = "quiet", "progress", "heartbeats"
PHASES = (QUIET, PROGRESS, HEARTBEATS)


def measure_phases(url: str, tasks: int, shape: str, *, ticks: int = 3, stored: int = 0, warmup: int = 2,
                   phases: tuple[str, ...] = PHASES) -> dict[str, LoopResult]:
    """Both steady states of one store, measured in turn:

    - `quiet`: every task running and none reporting progress yet (the sim's restart overhead has
      not passed): nothing changes, so a tick reads and decides but writes nothing;
    - `progress`: the clock moved past the restart overhead, so every running task reports new
      progress on every tick, as a live job's heartbeats do: each tick writes every task;
    - `heartbeats`: progress the production way: the provider reports none, every task's agent writes
      a heartbeat each tick and a checkpoint every ten, and the loop reads them from checkpoint storage
      whose every GET takes `bench._scale_storage.LATENCY_S` (`loop.progress_reads`: a budget a tick).
    """
    engine = make_engine(url)
    upgrade(engine)
    store = Store(engine)
    clock = SimClock()
    jobs, shards = _jobs(shape, tasks)
    results = {p: LoopResult(shape, jobs * shards, max(stored, jobs * shards), jobs) for p in phases}
    counter = QueryCounter(engine)
    try:
        with tempfile.TemporaryDirectory(prefix="orch-scale-") as tmp:
            ckpt = Path(tmp).as_uri()
            start = time.perf_counter()
            _finish(store, clock, stored - jobs * shards, ckpt)
            _submit(store, clock, job_toml(hours=_HOURS, shards=shards), jobs, ckpt)
            sim = SimProvider(clock, {"a": _always()}, epoch=clock.now())
            provider = CountingProvider(sim)
            agents = Agents(store)
            r = Reconciler(store, {"sim": provider}, clock, tick_seconds=TICK_S, storage=agents.storage)
            for _ in range(warmup):  # the first ticks launch everything: not the steady state
                r.tick()
                clock.sleep(TICK_S)
            setup = time.perf_counter() - start
            for phase, result in results.items():
                if phase == PROGRESS:
                    clock.sleep(sim.overhead_s)  # work begins: from here every tick sees new progress
                    r.tick()  # the first one also notes when each attempt became productive
                if phase == HEARTBEATS:
                    provider.strip_progress = True  # from here the loop reads heartbeats and manifests
                    agents.follow()
                result.setup_s = setup
                result.alive = sum(1 for i in sim.instances() if i.alive)
                _measure(r, clock, counter, provider, ticks, result, agents if phase == HEARTBEATS else None)
    finally:
        counter.close()
        engine.dispose()
    return results


def _measure(r: Reconciler, clock: SimClock, counter: QueryCounter, provider: CountingProvider, ticks: int,
             result: LoopResult, agents: Agents | None = None) -> None:
    calls: Counter[str] = Counter()
    for _ in range(ticks):
        clock.sleep(TICK_S)
        provider.calls.clear()
        if agents is not None:
            agents.beat(clock.now())
            agents.counter.gets = 0
        with counter.watching():
            start, cpu_start = time.perf_counter(), time.process_time()
            r.tick()
            result.tick_s.append(time.perf_counter() - start)
            result.cpu_s.append(time.process_time() - cpu_start)
        result.rows.append(counter.rows)
        result.task_rows.append(counter.task_rows)
        result.statements.append(counter.statements)
        result.task_updates.append(counter.task_updates)
        calls.update(provider.calls)
        if agents is not None:
            calls["storage GET"] += agents.counter.gets
    result.calls = {m: n / ticks for m, n in calls.items()}
