"""One campaign through the real loop: store, reconciler, policy, `sim` provider over the public traces.

The job is submitted as `orch submit` would (`parse_spec` + `load_items_of` on a generated items file,
then `Store.submit` into SQLite in a temporary folder), and the `Reconciler` ticks every 60 simulated
seconds. Between ticks the simulated workers (`bench._campaign_workers`) work their items through the
`ItemStore`. Nothing of the loop is replaced: the slots, their markets, relaunches, item release on
reclamation and the bill are all the loop's own; the figures are read back from the store afterwards
(`job_status` for the money, the items table for what was done).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench._campaign_workers import CampaignWorkers
from bench._campaign_world import World
from orchestrator.core.model import AttemptView
from orchestrator.core.spec import parse_spec
from orchestrator.core.status import job_status
from orchestrator.job_files import load_items_of
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace, load_trace, traces_dir
from orchestrator.store import Store, make_engine
from orchestrator.store.engine import upgrade
from orchestrator.store.items import ItemStore
from providers.sim import SimClock, SimProvider

TICK_S = 60.0
ON_DEMAND_USD = 3.06  # p3.2xlarge (one V100), us-east-1 / us-west-2 on-demand
SPOT_USD = 0.918  # the spot price recorded in the V100 preemption traces (constant over the week)
OVERHEAD_H = 0.1  # launch to first item: boot, image, model load (the sim provider's default)
# The real preemption traces of one V100 (p3.2xlarge) in four AWS zones, 32 s ticks, 7.4 days, April 2023.
TRACE_FOLDER = "skypilot-org-spot-traces/preemption/1-node/aws-04-22-2023"
ZONES = ("us-east-1c", "us-east-1f", "us-west-2b", "us-west-2c")


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One row of the table: a campaign's market, deadline and workers."""

    label: str
    market: str  # auto, spot or on-demand
    workers: int
    deadline_h: float | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    run: RunSpec
    items: int
    state: str
    cost_usd: float
    spot_hours: float
    on_demand_hours: float
    finish_h: float | None  # from submission to the last item done; None: not finished
    launches: int
    preemptions: int
    lost: int  # items never done
    redone: int  # items started more than once (a worker was reclaimed or stopped holding them)
    duplicates: int  # items whose result was committed twice, or listed twice in the results (must be 0)
    refused_commits: int  # second commits the store refused (none expected here: a stopped worker commits nothing)
    ticks: int
    wall_s: float = 0.0
    # Where the billed hours beyond the items' work went (`waste`): launch to first item (restart
    # overhead), items in hand when a worker was reclaimed, and a worker alive with nothing in hand.
    overhead_h: float = 0.0
    lost_h: float = 0.0
    idle_h: float = 0.0

    @property
    def deadline_met(self) -> bool | None:
        if self.run.deadline_h is None:
            return None
        return self.finish_h is not None and self.finish_h <= self.run.deadline_h + 1e-9


def load_traces(folder: Path | None = None) -> dict[str, Trace]:
    base = (folder or traces_dir()) / TRACE_FOLDER
    return {z: load_trace(base / f"{z}_v100_1.json") for z in ZONES}


def job_toml(run: RunSpec, *, items: int, item_seconds: float) -> str:
    hours = items * item_seconds / 3600.0
    deadline = f"deadline_hours = {run.deadline_h}\n" if run.deadline_h is not None else ""
    return (f'name = "campaign-{run.label}"\ncommand = ["python3", "fold.py"]\n[resources]\ngpu = "V100"\n'
            f'[schedule]\nestimated_hours = {hours:.4f}\nmarket = "{run.market}"\n{deadline}'
            f'restart_overhead_hours = {OVERHEAD_H}\n[placement]\nproviders = ["sim"]\n'
            f'[array]\nitems = "items.txt"\nworkers = {run.workers}\n')


def run_campaign(run: RunSpec, traces: Mapping[str, Trace], *, items: int = 10_000,
                 item_seconds: float | Sequence[float] = 14.0, start_tick: int = 0, max_hours: float = 24 * 7,
                 world: World | None = None, estimate_s: float | None = None) -> RunResult:
    """Submit the campaign and tick the loop until it finishes (or `max_hours` of simulated time pass).

    `item_seconds`: one figure for every item, or one per item. `world` (its epoch is the clock's
    start, 1,700,000,000): the unkind world's draws; `estimate_s` what the job file says an item
    takes (default: the items' mean)."""
    wall = time.perf_counter()
    clock = SimClock()
    start = clock.now()
    per = [float(item_seconds)] * items if isinstance(item_seconds, (int, float)) else list(item_seconds)
    estimate = sum(per) / max(1, len(per)) if estimate_s is None else estimate_s
    with tempfile.TemporaryDirectory(prefix="orch-campaign-") as tmp:
        folder = Path(tmp)
        (folder / "items.txt").write_text("".join(f"seq-{i:06d}\n" for i in range(items)))
        job_file = folder / "job.toml"
        job_file.write_text(job_toml(run, items=items, item_seconds=estimate))
        spec = parse_spec(job_file.read_text(), source=str(job_file), submitted_at=start)
        spec, parsed = load_items_of(spec, job_file)
        engine = make_engine(f"sqlite:///{folder / 'orch.db'}")
        try:
            upgrade(engine)
            store = Store(engine)
            job_id = store.submit(spec, source=str(job_file), now=start, checkpoint_uri=(folder / "ckpt").as_uri(),
                                  items=parsed)
            sim = SimProvider(clock, traces, spot_price=SPOT_USD, on_demand_price=ON_DEMAND_USD,
                              restart_overhead_hours=OVERHEAD_H, start_tick=start_tick, epoch=start,
                              reclaim_time=None if world is None else world.reclaim_at)
            workers = CampaignWorkers(sim, ItemStore(engine), item_seconds=item_seconds, world=world)
            loop = Reconciler(store, {"sim": workers}, clock, owner="bench", tick_seconds=TICK_S,
                              lease_seconds=1e12)
            ticks = 0
            while job_id in loop.tick():
                ticks += 1
                if clock.now() - start >= max_hours * 3600.0:
                    break
                clock.sleep(TICK_S)
                workers.work(clock.now())
            return _result(run, store, workers, job_id, start, ticks, time.perf_counter() - wall)
        finally:
            engine.dispose()


def _result(run: RunSpec, store: Store, workers: CampaignWorkers, job_id: str, start: float, ticks: int,
            wall_s: float) -> RunResult:
    job = store.job(job_id)
    assert job is not None
    attempts = store.attempts(job_id)
    items = workers.items
    counts = items.counts(job_id)
    results = list(items.results(job_id))
    listed = [r.index for r in results]
    last_done = max((r.done_at for r in results), default=None)
    end = max((a.ended_at for a in attempts if a.ended_at is not None), default=start)
    st = job_status(job_id=job_id, name=job.name, spec=job.spec, created_at=start, deadline_at=job.deadline_at,
                    tasks=store.tasks(job_id), attempts=attempts, offers=[], now=max(end, start))
    cost = st.cost
    finished = counts.left == 0 and last_done is not None
    overhead_h, lost_h, idle_h = waste(attempts, workers, end)
    return RunResult(
        run=run, items=counts.total, state=st.state, cost_usd=cost.spent_usd, spot_hours=cost.spot_hours,
        on_demand_hours=cost.on_demand_hours, finish_h=(last_done - start) / 3600.0 if finished and last_done else None,
        launches=sum(1 for a in attempts if not a.unbilled), preemptions=cost.preemptions,
        lost=counts.total - counts.done, redone=sum(1 for n in workers.starts.values() if n > 1),
        duplicates=sum(1 for n in workers.commits.values() if n > 1) + (len(listed) - len(set(listed))),
        refused_commits=workers.refused_commits, ticks=ticks, wall_s=wall_s, overhead_h=overhead_h, lost_h=lost_h,
        idle_h=idle_h)


def waste(attempts: Sequence[AttemptView], workers: CampaignWorkers, end: float) -> tuple[float, float, float]:
    """Billed worker hours that did no item, split three ways (hours): from launch to the first item
    started (the restart overhead, all of a life shorter than it), the item in hand when a worker's
    instance ended (redone by another), and the rest of each life with no item in hand (waiting
    for the last items, or idle until the loop noticed the exit)."""
    overhead = lost = idle = 0.0
    for a in attempts:
        w = workers.workers.get(a.id)
        if a.unbilled or w is None:
            continue
        stop = a.ended_at if a.ended_at is not None else end
        life = max(0.0, stop - a.launched_at)
        first = w.first_item_at if w.first_item_at is not None else stop
        head = min(life, max(0.0, first - a.launched_at))
        in_hand = max(0.0, stop - w.held_at) if w.held is not None else 0.0
        items = w.work_s
        overhead += head
        lost += in_hand
        idle += max(0.0, life - head - in_hand - items)
    return overhead / 3600.0, lost / 3600.0, idle / 3600.0
