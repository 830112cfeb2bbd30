"""One seed of the deterministic simulation harness: the real loop in its world, checked after every tick.

The real `Reconciler`, `Store` (SQLite in memory, or a fresh PostgreSQL schema) and executor (inline)
run against `bench._dst_world.World` through the fault seams of `bench._dst_faults`, on a `SimClock`
that moves one tick (60 s) at a time. Between ticks the world runs the job side (checkpoints,
heartbeats, campaign workers) up to the new time. After every tick and at the end the invariants of
`bench._dst_check` are checked; the run's trace (one line a tick: time, task and attempt states,
live instances) is what `--seed S` replays.

Determinism: ids come from a counter instead of `uuid4` (the store's `new_id` is replaced for the
run), every random choice from generators seeded by the seed (and an attempt's id), and the clock
is simulated. `python -m bench.dst` re-executes itself with PYTHONHASHSEED=0 so set orders are fixed
too.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from bench import _dst_check as check
from bench._dst_faults import ControllerCrash, Fault, FaultyProvider, FaultyStore, Seams, draw_faults
from bench._dst_scenario import Scenario, draw_scenario
from bench._dst_world import World
from orchestrator.core.spec import parse_spec
from orchestrator.job_files import load_items_of
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store, make_engine, repo
from orchestrator.store.engine import upgrade
from orchestrator.store.items import ItemStore
from providers.sim import SimClock

TICK_S = 60.0
LEASE_S = 180.0
EPOCH = 1_700_000_000.0
FAULT_RATE = 0.08  # faults per tick, over the first FAULT_TICKS ticks
FAULT_TICKS = 240
SETTLE_TICKS = 5  # ticks after every job is final, for leaks to show
# Seam faults that cost the loop time (seconds), counted against a deadline's feasibility.
HOLDING = {"capacity_od": 300.0, "timeout_launch": TICK_S, "lost_answer": TICK_S, "throttle": TICK_S,
           "crash": TICK_S, "db_drop": TICK_S, "omit": 3 * TICK_S, "storage_down": TICK_S}


@dataclass
class Outcome:
    seed: int
    violations: dict[str, list[str]] = field(default_factory=dict)
    trace: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)
    ticks: int = 0
    # by invariant ("deadline", "budget"): what the world (on-demand out, a held controller) broke
    excused: dict[str, list[str]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.violations)

    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()[:16]


class Controller:
    """One controller process: a `Reconciler` over its own seams; rebuilt from the store after a crash."""

    def __init__(self, owner: str, engine: Engine, world: World, clock: SimClock, faults: Sequence[Fault]) -> None:
        self.owner, self.engine, self.world, self.clock = owner, engine, world, clock
        self.seams = Seams(faults)
        self.crashes = 0
        self.r = self._build()

    def _build(self) -> Reconciler:
        self.seams.dead = False
        store = FaultyStore.of(self.engine, self.seams)
        return Reconciler(store, {"sim": FaultyProvider(self.world, self.seams)}, self.clock, owner=self.owner,
                          tick_seconds=TICK_S, lease_seconds=LEASE_S, storage=self.world.storage)

    def tick(self, n: int) -> None:
        self.seams.start_tick(n)
        try:
            self.r.tick()
        except ControllerCrash:
            self.crashes += 1
            self.r = self._build()  # memory dropped: a new process, from the store alone
        except Exception:
            logging.getLogger("orch.dst").debug("tick %d failed as a whole", n, exc_info=True)


@contextmanager
def _counter_ids(seed: int) -> Iterator[None]:
    """The store's ids from a counter for the run: the same seed makes the same ids, so the same trace."""
    original = repo.new_id
    counter = itertools.count(1)
    repo.new_id = lambda: f"{seed:x}{next(counter):011x}"
    try:
        yield
    finally:
        repo.new_id = original


def _engine(url: str | None) -> Engine:
    if url is None:
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", lambda conn, _rec: conn.execute("PRAGMA foreign_keys=ON"))
        return engine
    return make_engine(url)


def run_seed(seed: int, *, faults: Sequence[Fault] | None = None, url: str | None = None,
             inspect: Callable[[Store], None] | None = None) -> Outcome:
    """Run one seed (with `faults` instead of the seed's own, for shrinking) and check it; `inspect` is
    shown the store at the end (tests read its events)."""
    rng = random.Random(seed)
    scenario = draw_scenario(rng, EPOCH)
    drawn = draw_faults(random.Random(seed * 7919 + 1), FAULT_TICKS, FAULT_RATE)
    out = Outcome(seed=seed, faults=list(drawn if faults is None else faults))
    engine = _engine(url)
    try:
        with _counter_ids(seed), tempfile.TemporaryDirectory(prefix="orch-dst-") as tmp:
            upgrade(engine)
            _run(scenario, out, engine, Path(tmp), seed)
            if inspect is not None:
                inspect(Store(engine))
    finally:
        engine.dispose()
    return out


def _submit(scenario: Scenario, store: Store, folder: Path, now: float) -> dict[str, Any]:
    plans = {}
    for plan in scenario.jobs:
        job_file = folder / f"{plan.name}.toml"
        job_file.write_text(plan.toml)
        if plan.items:
            (folder / "items.txt").write_text("".join(f"seq-{i:04d}\n" for i in range(plan.items)))
        spec = parse_spec(plan.toml, source=str(job_file), submitted_at=now)
        spec, items = load_items_of(spec, job_file)
        job_id = repo.new_id()
        store.submit(spec, source=str(job_file), now=now, job_id=job_id, checkpoint_uri=f"mem://{job_id}",
                     items=items or None)
        plans[job_id] = plan
    return plans


def _run(scenario: Scenario, out: Outcome, engine: Engine, folder: Path, seed: int) -> None:
    clock = SimClock(EPOCH)
    store = Store(engine)
    plans = _submit(scenario, store, folder, clock.now())
    world = World(clock.now, scenario.zones, seed=seed, items=ItemStore(engine), ckpt_every_s=scenario.ckpt_every_s,
                  save_s=scenario.save_s, item_seconds={j: p.item_seconds for j, p in plans.items() if p.items},
                  p_corrupt=scenario.p_corrupt, p_worker_death=scenario.p_worker_death)
    rng = random.Random(seed * 104729 + 7)
    main = Controller("ctl-a", engine, world, clock, out.faults)
    second: Controller | None = None
    second_until = stalled_until = -1
    state = check.State(plans=plans)
    settled = 0
    for n in itertools.count():
        if clock.now() - EPOCH > scenario.horizon_s:
            break
        world.advance(clock.now())
        for f in [f for f in out.faults if f.tick == n and f.kind in ("storm", "duplicate_notices", "corrupt_ckpt",
                                                                      "storage_down", "second_controller", "stall")]:
            out.injected.append(str(f))
            if f.kind == "storm":
                zone = sorted(world.zones)[f.arg % len(world.zones)]
                world.storm(zone, clock.now(), clock.now() + f.arg * 600.0)
            elif f.kind == "duplicate_notices":
                world.duplicate_notices = True
            elif f.kind == "corrupt_ckpt" and world.storages:
                world.corrupt(sorted(world.storages)[f.arg % len(world.storages)], missing=f.arg % 2 == 1)
            elif f.kind == "storage_down" and world.storages:
                world.storages[sorted(world.storages)[f.arg % len(world.storages)]].fail_reads = True
            elif f.kind == "second_controller":
                second = second or Controller("ctl-b", engine, world, clock, [])
                second_until = n + f.arg * 3
            elif f.kind == "stall":
                stalled_until = n + f.arg  # the main controller is paused (a long GC, a partition)
        if n <= stalled_until and not (second and n <= second_until):
            world.holds.append((clock.now(), TICK_S, True))
        for f in out.faults:
            if f.tick == n and f.kind in HOLDING:
                world.holds.append((clock.now(), HOLDING[f.kind], False))
        order = [c for c in (main, second if n <= second_until else None) if c is not None]
        if n > stalled_until or len(order) > 1:
            rng.shuffle(order)
            for c in order:
                if c is main and n <= stalled_until:
                    continue
                c.tick(n)
        world.duplicate_notices = False
        for s in world.storages.values():
            s.fail_reads = False
        out.trace.append(check.trace_line(n, clock.now(), store, world))
        check.after_tick(state, store, world, clock.now(), out.violations)
        out.ticks = n + 1
        if check.all_final(store):
            settled += 1
            if settled > SETTLE_TICKS:
                break
        clock.sleep(TICK_S)
    world.advance(clock.now())
    check.at_end(state, store, world, ItemStore(engine), clock.now(), out.violations)
    out.excused = state.excused
    out.injected += main.seams.injected


def shortest_failing_prefix(seed: int, faults: Sequence[Fault], *, url: str | None = None) -> list[Fault]:
    """The shortest prefix of `faults` with which the seed still fails (binary search on its length;
    a failure with no fault at all gives the empty list)."""
    lo, hi = 0, len(faults)
    if run_seed(seed, faults=[], url=url).failed:
        return []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run_seed(seed, faults=faults[:mid], url=url).failed:
            hi = mid
        else:
            lo = mid
    return list(faults[:hi])

