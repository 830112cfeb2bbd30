"""The multi-zone benchmark's data: zone sets, setups and windows cut from the multi-region traces.

The traces (`../shared/data/multi-region/`, README there; `ORCH_MULTI_TRACES_DIR` overrides) are
read, never copied: 13 GCP H100 zones for one week at 10-minute ticks, and 3 AWS V100 4-node pools for
11 days at 5-minute ticks, aligned tick by tick within each folder.

Zone sets are drawn once with a fixed seed, by a rule, not picked by hand: every pair of zones of one
region; six pairs of zones in two regions; six sets of 3 and of 5 zones; all zones. Each set's order
(which the baselines try first) is shuffled by the same seed, so no baseline is lucky by the
alphabet. Windows start every 6 hours and last the deadline.

Fit / held-out split (`split`): a window is *early* if it ends by hour 84 of its trace (GCP: the first
half of the week; AWS: the first 84 of 263 hours) and *late* if it starts at or after hour 84. The
multi-zone default's few constants were chosen looking at early windows only; late windows were not
looked at until the table was made.
"""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.core.policy.multizone_base import MoveCosts, Zone, move_costs, region_of
from orchestrator.research import traces
from orchestrator.research.fastsim import Setup

ENV = "ORCH_MULTI_TRACES_DIR"
GCP, AWS = "gcp-h100-2025-10-wk1", "aws-v100-4node-2023-08"
# The README's reference prices, the same in every zone.
ON_DEMAND_USD, SPOT_USD = 3.06, 0.9701
STEP_H = 6.0
SPLIT_H = 84.0
SEED = 12


def data_dir() -> Path:
    configured = os.environ.get(ENV)
    # Beside the repository, as the single-zone traces are: ../shared/data/multi-region.
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data" / "multi-region"


def available() -> bool:
    return (data_dir() / GCP).is_dir() and (data_dir() / AWS).is_dir()


@functools.cache
def folder(name: str) -> tuple[tuple[Zone, ...], npt.NDArray[np.bool_], float]:
    """Zones (by file order), availability `[zone, tick]` and tick seconds of one aligned folder."""
    files = sorted((data_dir() / name).glob("*.json"))
    loaded = [traces.load_trace(f) for f in files]
    zones = tuple(Zone(f.name.split("_")[0], region_of(f.name.split("_")[0])) for f in files)
    return zones, traces.stack(loaded), loaded[0].gap_seconds


@dataclass(frozen=True, slots=True)
class ZoneSet:
    cloud: str  # folder
    kind: str  # "1 region, 2 zones", "2 regions", "3 zones", "5 zones", "all"
    members: tuple[int, ...]  # indices into the folder's zones, in try order

    def zones(self) -> tuple[Zone, ...]:
        every = folder(self.cloud)[0]
        return tuple(every[i] for i in self.members)

    def moves(self) -> MoveCosts:
        return move_costs(self.zones())

    @property
    def label(self) -> str:
        return "+".join(z.name for z in self.zones())


def zone_sets() -> list[ZoneSet]:
    rng = np.random.default_rng(SEED)
    out: list[ZoneSet] = []
    gcp = folder(GCP)[0]
    pairs = list(itertools.combinations(range(len(gcp)), 2))
    same = [p for p in pairs if gcp[p[0]].region == gcp[p[1]].region]
    other = [p for p in pairs if gcp[p[0]].region != gcp[p[1]].region]
    out += [ZoneSet(GCP, "1 region, 2 zones", _shuffled(p, rng)) for p in same]
    out += [ZoneSet(GCP, "2 regions", _shuffled(other[i], rng)) for i in rng.choice(len(other), 6, replace=False)]
    for size in (3, 5):
        for _ in range(6):
            out.append(ZoneSet(GCP, f"{size} zones", tuple(int(i) for i in rng.permutation(len(gcp))[:size])))
    out.append(ZoneSet(GCP, "all", tuple(int(i) for i in rng.permutation(len(gcp)))))
    aws = folder(AWS)[0]
    out += [ZoneSet(AWS, "2 regions", _shuffled(p, rng)) for p in itertools.combinations(range(len(aws)), 2)]
    out.append(ZoneSet(AWS, "all", tuple(int(i) for i in rng.permutation(len(aws)))))
    return out


def _shuffled(pair: tuple[int, int], rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(i) for i in rng.permutation(list(pair)))


def setups(cloud: str) -> list[tuple[str, Setup]]:
    gap = folder(cloud)[2]
    ratio = ON_DEMAND_USD / SPOT_USD
    return [(f"D={deadline:g} d={d:g}", Setup(24.0, float(deadline), d, ratio, gap))
            for deadline in (36, 48) for d in (0.05, 0.2)]


def starts(cloud: str, setup: Setup) -> list[int]:
    """First tick of every window of `setup` (every STEP_H hours, ending within the trace)."""
    assert setup.deadline_h is not None
    _, avail, gap = folder(cloud)
    per_h = 3600 / gap
    length = round(setup.deadline_h * per_h)
    return list(range(0, avail.shape[1] - length + 1, round(STEP_H * per_h)))


def split(cloud: str, setup: Setup, start: int) -> str:
    """"early" (ends by hour SPLIT_H), "late" (starts at or after it) or "both" (straddles it)."""
    assert setup.deadline_h is not None
    begin_h = start * folder(cloud)[2] / 3600
    if begin_h + setup.deadline_h <= SPLIT_H:
        return "early"
    return "late" if begin_h >= SPLIT_H else "both"


def windows(zs: ZoneSet, setup: Setup) -> npt.NDArray[np.bool_]:
    """`[window, zone, tick]` for a zone set."""
    assert setup.deadline_h is not None
    _, avail, gap = folder(zs.cloud)
    length = round(setup.deadline_h * 3600 / gap)
    sub = avail[list(zs.members)]
    return np.stack([sub[:, s : s + length] for s in starts(zs.cloud, setup)])


def past(zs: ZoneSet, start: int, hours: float) -> npt.NDArray[np.bool_]:
    """`[zone, tick]`: the set's availability over the `hours` before tick `start` (fewer at the trace's start)."""
    _, avail, gap = folder(zs.cloud)
    first = max(0, start - round(hours * 3600 / gap))
    return avail[list(zs.members), first:start]
