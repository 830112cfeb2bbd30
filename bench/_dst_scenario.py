"""What one seed of the deterministic simulation harness runs: the zones of its world and its mix of jobs.

Every choice is drawn from the seed's generator, in a fixed order, so a seed names one world and one
set of jobs. The mix covers what the loop must survive: single tasks and arrays, a campaign of
leased items with workers, gangs of 2-4 nodes (half of them elastic down to 2), jobs over one zone
and over several, jobs with a budget, and deadlines from loose to tight (the work plus a few restart
overheads, so on-demand must be bought in time).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench._dst_parts import ZoneSpec

HOUR = 3600.0
ON_DEMAND_USD = 3.06
REGIONS = {"sim-a": "r1", "sim-b": "r1", "sim-c": "r2"}


@dataclass(frozen=True, slots=True)
class JobPlan:
    name: str
    toml: str
    work_h: float
    deadline_h: float | None
    budget_usd: float | None
    items: int = 0  # a campaign's item count (0: not a campaign)
    item_seconds: float = 0.0
    nodes: int = 1  # a gang's size


@dataclass(frozen=True, slots=True)
class Scenario:
    zones: tuple[ZoneSpec, ...]
    jobs: tuple[JobPlan, ...]
    ckpt_every_s: float
    save_s: float
    p_corrupt: float
    p_worker_death: float
    horizon_s: float


def draw_scenario(rng: random.Random, epoch: float) -> Scenario:
    zones = tuple(_zone(rng, name, region, epoch) for name, region in REGIONS.items())
    jobs = tuple(_job(rng, i) for i in range(rng.randint(2, 5)))
    longest = max(j.deadline_h or 2.5 * j.work_h + 2.0 for j in jobs)
    return Scenario(zones=zones, jobs=jobs, ckpt_every_s=rng.choice([300.0, 600.0, 900.0]),
                    save_s=rng.uniform(5.0, 40.0), p_corrupt=rng.choice([0.0, 0.0, 0.05, 0.15]),
                    p_worker_death=rng.choice([0.0, 0.1, 0.3]), horizon_s=(longest + 6.0) * HOUR)


def _zone(rng: random.Random, name: str, region: str, epoch: float) -> ZoneSpec:
    """Spot outages of 10 min to 3 h, some zones scarce; an on-demand outage now and then."""
    scarce = rng.random() < 0.3
    spot: list[tuple[float, float]] = []
    t = epoch + rng.uniform(0.0, 2.0) * HOUR
    while t < epoch + 40 * HOUR:
        length = rng.uniform(600.0, (3.0 if not scarce else 8.0) * HOUR)
        spot.append((t, t + length))
        t += length + rng.uniform(0.3, 4.0 if not scarce else 1.5) * HOUR
    od: list[tuple[float, float]] = []
    if rng.random() < 0.25:
        s = epoch + rng.uniform(0.0, 12.0) * HOUR
        od.append((s, s + rng.uniform(0.25, 1.5) * HOUR))
    return ZoneSpec(name=name, region=region, spot_price=round(rng.uniform(0.85, 1.15), 4),
                    on_demand_price=ON_DEMAND_USD, spot_outages=tuple(spot), on_demand_outages=tuple(od))


def _job(rng: random.Random, i: int) -> JobPlan:
    kind = rng.choices(["single", "multi", "array", "campaign", "gang"], weights=[3, 3, 1, 2, 2])[0]
    nodes = rng.randint(2, 4) if kind == "gang" else 1
    min_nodes = rng.choice([nodes, 2]) if kind == "gang" else 1  # half the gangs elastic (down to 2)
    work_h = round(rng.uniform(0.4, 3.0), 3)
    overhead_h = 0.1
    deadline = rng.choice(["none", "loose", "tight", "tight"])
    deadline_h = None if deadline == "none" else round(
        work_h * rng.uniform(2.0, 3.0) if deadline == "loose" else work_h + rng.uniform(4.0, 8.0) * overhead_h, 3)
    market = rng.choices(["auto", "spot", "on-demand"], weights=[8, 1, 1])[0]
    if market == "spot":
        deadline_h = None
    budget = None
    if rng.random() < 0.3:
        budget = round(nodes * work_h * ON_DEMAND_USD * rng.uniform(0.5, 1.6), 2)
    regions = '["r1"]' if kind == "multi" else ('["r2"]' if kind == "single" else "[]")
    lines = [f'name = "dst-{i}-{kind}"', 'command = ["python3", "work.py"]', "[resources]", 'gpu = "V100"',
             f"nodes = {nodes}", f"min_nodes = {min_nodes}", "[schedule]", f"estimated_hours = {work_h}",
             f'market = "{market}"',
             f"restart_overhead_hours = {overhead_h}"]
    if deadline_h is not None:
        lines.append(f"deadline_hours = {deadline_h}")
    if budget is not None:
        lines.append(f"budget_usd = {budget}")
    lines += ["[env]", f'DST_OVERHEAD_S = "{rng.uniform(0.5, 1.0) * overhead_h * HOUR:.0f}"',
              "[placement]", 'providers = ["sim"]', f"regions = {regions}"]
    items, item_s = 0, 0.0
    if kind == "array":
        lines += ["[array]", "count = 2", "shard_size = 1"]
    elif kind == "campaign":
        items = rng.randint(20, 60)
        item_s = work_h * HOUR / items
        if item_s > 100.0:  # the worker holds one lease per item: keep items inside it
            item_s = rng.uniform(40.0, 100.0)
            work_h = round(items * item_s / HOUR, 4)
            lines[7] = f"estimated_hours = {work_h}"
        lines += ["[array]", 'items = "items.txt"', f"workers = {rng.randint(2, 3)}"]
    return JobPlan(name=f"dst-{i}-{kind}", toml="\n".join(lines) + "\n", work_h=work_h, deadline_h=deadline_h,
                   budget_usd=budget, items=items, item_seconds=item_s, nodes=nodes)
