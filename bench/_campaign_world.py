"""The campaign bench's unkind world (issue 25): what the public traces do not say, drawn with a seeded RNG.

`bench/campaign.py` first ran every worker on one 1-node trace per zone: all workers in a zone were
reclaimed at the same tick, on-demand never ran out, no notice ever came and every item took 14 s.
Here each of those is a draw, seeded, so a run is reproducible and the spread over seeds is reported:

- **Per-worker reclamation.** Where a dataset has counts (`nodes` > 1: the AWS 4-node pools and
  16-node counts, the GCP 16-VM probe rounds), a worker holds one of the counted nodes: when the count
  falls from a to b, each of the campaign's workers there is reclaimed with probability (a - b) / a,
  independently, and all of them when it reaches 0 (`reclaim_at`). Where the data is one instance's
  (1-node traces), a zone reading 0 reclaims every worker in it, and while it reads 1 each worker is
  also reclaimed at its own exponential time of rate `NODE_LOSS_PER_H`: the median per-node loss rate
  of the count traces while their zone had capacity (0.005-1.3 per node-hour over their 19 zones,
  median 0.18; `node_loss_rates`).
- **On-demand runs out.** Per zone, outages of on-demand capacity arrive as a Poisson process of
  `OD_OUTAGES_PER_DAY` and last uniformly `OD_OUTAGE_H` hours: the offer reads unavailable and a launch
  is refused (`CapacityError`), as a cloud's "insufficient capacity" does. No public trace records
  on-demand stock-outs; the rate is an assumption, stated in docs/benchmarks.md.
- **Notices arrive late or not at all.** A reclaimed worker hears of it `NOTICE_S` (AWS's two minutes)
  before with probability `NOTICE_P[0]`, at a uniform moment of those two minutes (late) with
  `NOTICE_P[1]`, and never with the rest. A worker that heard stops leasing items (the SDK ends its
  loop on the interruption) and finishes the one in hand if it can.
- **Item times follow sequence length, as ESMFold's do.** Lengths are log-normal with median 290 and
  mean 360 residues (the shape of UniProtKB/Swiss-Prot lengths), clipped to 30-1,500; an item takes
  14.2 s x (L / 384)^2 (ESMFold's paper: 14.2 s for 384 residues on one V100; its cost grows about
  with the square of the length in this range). The mean item is ~19 s, not the 14 s the job's
  estimate states (`ESTIMATE_S`): the campaign learns its rate from the items done.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.research import traces

NODE_LOSS_PER_H = 0.18
OD_OUTAGES_PER_DAY = 1.0
OD_OUTAGE_H = (1.0, 6.0)
NOTICE_S = 120.0
NOTICE_P = (0.7, 0.2)  # on time, late; the rest: none
LENGTH_MEDIAN, LENGTH_SIGMA, LENGTH_CLIP = 290.0, 0.66, (30, 1500)
ESMFOLD_S, ESMFOLD_L = 14.2, 384.0
ESTIMATE_S = 14.0  # what the job file says an item takes


@dataclass(frozen=True, slots=True)
class CampaignData:
    """One dataset's zones for a campaign: per zone, the count of spot nodes at each tick (of `nodes`)."""

    name: str
    title: str
    zones: tuple[str, ...]
    counts: npt.NDArray[np.int64]  # [zone, tick]
    gap_s: float
    nodes: int  # 1: one instance's trace (0/1); more: counts of that many nodes

    @property
    def hours(self) -> float:
        return float(self.counts.shape[1] * self.gap_s / 3600)


SKY = "skypilot-org-spot-traces"
# name -> (folder under ../shared/data/, title); the first four are counts, the last two one instance's.
FOLDERS = {
    "gcp-h100-wk1": ("gang/gcp-h100-16-wk1",
                     "GCP H100, 16 VMs asked per zone every 10 min, 13 zones, 1 week (2025-10)"),
    "aws-v100-4node": (f"spot-traces/{SKY}/preemption/4-node/aws-08-03-2023",
                       "AWS pools of 4 x p3.2xlarge alive, 3 zones, 11-18 days (2023-08)"),
    "aws-v100-16node": (f"spot-traces/{SKY}/availability/16-node/aws-08-27-2023",
                        "AWS free p3.2xlarge of 16, 3 zones, 11 days (2023-08)"),
    "aws-v100-preempt-2023-04": (f"spot-traces/{SKY}/preemption/1-node/aws-04-22-2023",
                                 "AWS preemptions of one p3.2xlarge, 4 zones, 7.4 days (2023-04)"),
    "aws-1node-2022": (f"spot-traces/{SKY}/availability/1-node/aws-10-26-2022",
                       "AWS 1-node probes of p3.2xlarge, us-west-2a/2b, 27 days (2022)"),
}


def data_root() -> Path:
    """`../shared/data/`: the parent of the spot-traces folder the project already reads."""
    return traces.traces_dir().parent


@functools.cache
def load(name: str) -> CampaignData:
    """The dataset's zones, cut to the shortest file (they are aligned from their first tick)."""
    folder, title = FOLDERS[name]
    files = sorted((data_root() / folder).glob("*.json"))
    if name == "aws-1node-2022":
        files = [f for f in files if f.stem.endswith("_v100_1")]
    if not files:
        raise FileNotFoundError(f"{data_root() / folder}: no trace files")
    rows, gaps, peak = [], set(), 1
    for f in files:
        doc = json.loads(f.read_text())
        rows.append(np.asarray(doc["data"], dtype=np.int64))
        gaps.add(float(doc["metadata"]["gap_seconds"]))
        peak = max(peak, int(doc["metadata"].get("nodes_asked", 0)), int(rows[-1].max()))
    if len(gaps) != 1:
        raise ValueError(f"{folder}: zones with different tick lengths {sorted(gaps)}")
    n = min(len(r) for r in rows)
    nodes = 1 if peak <= 1 else peak
    return CampaignData(name, title, tuple(f.name.split("_")[0] for f in files),
                        np.stack([r[:n] for r in rows]), gaps.pop(), nodes)


def node_loss_rates() -> list[float]:
    """Per count-trace zone: nodes lost per node-hour while the zone had capacity before and after."""
    out = []
    for name in ("gcp-h100-wk1", "aws-v100-4node", "aws-v100-16node"):
        d = load(name)
        for row in d.counts:
            prev, nxt = row[:-1], row[1:]
            keep = (prev >= 1) & (nxt >= 1)
            hours = float((prev[keep] * d.gap_s / 3600).sum())
            if hours > 0:
                out.append(float(np.maximum(0, prev - nxt)[keep].sum()) / hours)
    return out


def item_seconds(items: int, seed: int) -> npt.NDArray[np.float64]:
    """Each item's work seconds on one V100, from a drawn sequence length (see the module's docstring)."""
    rng = np.random.default_rng([seed, 1])
    lengths = np.clip(np.exp(rng.normal(math.log(LENGTH_MEDIAN), LENGTH_SIGMA, items)), *LENGTH_CLIP)
    return np.asarray(ESMFOLD_S * (lengths / ESMFOLD_L) ** 2, dtype=np.float64)


@dataclass
class World:
    """The draws of one run: a dataset from `start_tick`, with simulated time 0 at `epoch`."""

    data: CampaignData
    seed: int
    start_tick: int
    epoch: float
    node_loss_per_h: float = NODE_LOSS_PER_H
    od_outages: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _log_keep: npt.NDArray[np.float64] = field(init=False, repr=False)
    _launches: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        c = self.data.counts.astype(np.float64)
        prev = np.concatenate([c[:, :1], c[:, :-1]], axis=1)
        keep = np.where(prev > 0, np.minimum(1.0, c / np.maximum(prev, 1.0)), 1.0)
        # log of the chance that a node held through tick i-1 is still held at tick i; a zone at 0
        # takes every node back (a large finite penalty keeps the running sums comparable).
        step = np.where(c <= 0, -1e6, np.log(np.maximum(keep, 1e-300)))
        self._log_keep = np.cumsum(step, axis=1)
        rng = np.random.default_rng([self.seed, 2])
        horizon_h = self.data.hours
        for zone in self.data.zones:
            spells, t = [], 0.0
            while True:
                t += rng.exponential(24.0 / OD_OUTAGES_PER_DAY)
                if t >= horizon_h:
                    break
                spells.append((t, t + rng.uniform(*OD_OUTAGE_H)))
            self.od_outages[zone] = spells

    # --- time <-> trace ticks ---------------------------------------------------------------------

    def tick(self, at: float) -> int:
        return self.start_tick + math.floor((at - self.epoch) / self.data.gap_s + 1e-9)

    def at_tick(self, i: int) -> float:
        return self.epoch + (i - self.start_tick) * self.data.gap_s

    def zone_index(self, zone: str) -> int:
        return self.data.zones.index(zone)

    # --- the draws ----------------------------------------------------------------------------------

    def reclaim_at(self, zone: str, launched_at: float) -> float:
        """When a spot worker launched in `zone` at `launched_at` is reclaimed: its own draw."""
        self._launches += 1
        rng = np.random.default_rng([self.seed, 3, self._launches])
        z = self.zone_index(zone)
        i = self.tick(launched_at)
        log_keep = self._log_keep[z]
        n = len(log_keep)
        if i + 1 >= n:
            return self.at_tick(max(i + 1, n))
        floor = log_keep[i] + math.log(max(rng.random(), 1e-300))
        # the first tick after the launch tick whose survival falls below the draw
        j = int(np.searchsorted(-log_keep[i + 1:], -floor, side="right")) + i + 1
        at = self.at_tick(min(j, n))
        if self.data.nodes == 1 and self.node_loss_per_h > 0:
            at = min(at, launched_at + rng.exponential(1.0 / self.node_loss_per_h) * 3600.0)
        return at

    def notice_at(self, reclaimed_at: float, launched_at: float) -> float | None:
        """When the worker hears that it will be reclaimed at `reclaimed_at`; None: it never does."""
        rng = np.random.default_rng([self.seed, 4, self._launches])
        u = rng.random()
        if u < NOTICE_P[0]:
            at = reclaimed_at - NOTICE_S
        elif u < NOTICE_P[0] + NOTICE_P[1]:
            at = reclaimed_at - NOTICE_S * rng.random()
        else:
            return None
        return max(at, launched_at)

    def on_demand_up(self, zone: str, at: float) -> bool:
        h = (at - self.epoch) / 3600.0
        return not any(a <= h < b for a, b in self.od_outages.get(zone, ()))

    def spot_up(self, zone: str, at: float) -> bool:
        i = self.tick(at)
        row = self.data.counts[self.zone_index(zone)]
        return 0 <= i < len(row) and bool(row[i] >= 1)


def starts(data: CampaignData, *, every_h: float, deadline_h: float, offset_h: float = 0.0,
           tail_h: float = 6.0) -> list[int]:
    """Start ticks every `every_h` hours from `offset_h`, leaving the deadline and `tail_h` of trace after."""
    per_h = 3600.0 / data.gap_s
    last = data.counts.shape[1] - math.ceil((deadline_h + tail_h) * per_h)
    return list(range(round(offset_h * per_h), last + 1, max(1, round(every_h * per_h))))


def names() -> Sequence[str]:
    return tuple(FOLDERS)
