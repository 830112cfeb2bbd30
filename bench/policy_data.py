"""The leave-one-dataset-out benchmark's data: every public dataset that fits, read as aligned zones.

Five datasets (the issue's list; folders under `../shared/data/`, READMEs there), each a set of zones
observed over the same hours:

- `gcp-h100-wk1`: GCP H100 launch probes, 13 zones, one week at 10 minutes (`multi-region/`);
- `aws-v100-4node`: AWS pools of 4 x p3.2xlarge, 3 zones, 11 days at 5 minutes (`multi-region/`);
- `aws-1node-2022`: AWS 1-node launch probes, us-west-2a/2b x {V100, K80} x {1, 8 GPUs}, 27 days at
  10 minutes; two aligned zones per instance type (`spot-traces/.../availability/1-node`);
- `aws-v100-preempt-2023-04`: real preemptions of one p3.2xlarge in four zones, 7.4 days at 32 s
  (`spot-traces/.../preemption/1-node/aws-04-22-2023`);
- `aws-v100-16node`: how many of 16 p3.2xlarge were free, 3 zones, 11 days at 5 minutes, read as
  "at least one" (`spot-traces/.../availability/16-node`; the zones' files are cut to the shortest).

A trace is brought to a coarser tick (`resample`) by calling a tick available only if every sample
that overlaps it is: a reclamation inside a tick is a reclamation (the pessimistic reading).
Windows start on a grid of `GRID_H` hours at each of `OFFSETS_H` (`MULTI_OFFSETS_H` for zone sets), so
no result rests on one grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench import _multi_data
from orchestrator.core.policy.multizone_base import Zone, region_of
from orchestrator.research import traces

GRID_H = 6.0
OFFSETS_H: tuple[float, ...] = (0.0, 1.5, 3.0, 4.5)
# The multi-zone tables use two offsets: a multi-zone window costs ~10 single-zone ones on 2 shared cores.
MULTI_OFFSETS_H: tuple[float, ...] = (0.0, 3.0)
SKY = "skypilot-org-spot-traces"


@dataclass(frozen=True, slots=True)
class Dataset:
    """Aligned zones of one dataset: availability `[zone, tick]` at `gap_s` seconds a tick.

    `groups` lists the zone sets that were observed together and make sense as one task's choices
    (for the 2022 probes: the two zones of one instance type; elsewhere: every zone)."""

    name: str
    title: str
    zones: tuple[Zone, ...]
    avail: npt.NDArray[np.bool_]
    gap_s: float
    groups: tuple[tuple[int, ...], ...]

    @property
    def hours(self) -> float:
        return float(self.avail.shape[1] * self.gap_s / 3600)


def resample(row: npt.NDArray[np.bool_], gap_s: float, new_gap_s: float) -> npt.NDArray[np.bool_]:
    """`row` at `new_gap_s`: a new tick is available only if every old sample overlapping it is."""
    if abs(new_gap_s - gap_s) < 1e-9:
        return np.asarray(row, dtype=bool)
    ticks = int(len(row) * gap_s // new_gap_s)
    first = np.floor(np.arange(ticks) * new_gap_s / gap_s).astype(int)
    last = np.ceil((np.arange(ticks) + 1) * new_gap_s / gap_s).astype(int)
    down = np.concatenate([[0], np.cumsum(~np.asarray(row, dtype=bool))])
    out: npt.NDArray[np.bool_] = (down[np.minimum(last, len(row))] - down[first]) == 0
    return out


def _load(files: list[Path], nodes: int = 1) -> tuple[npt.NDArray[np.bool_], float]:
    loaded = [traces.load_trace(f) for f in files]
    gap = loaded[0].gap_seconds
    if any(t.gap_seconds != gap for t in loaded):
        raise SystemExit(f"{files[0].parent}: zones with different tick lengths")
    length = min(len(t) for t in loaded)
    return np.stack([t.available(nodes)[:length] for t in loaded]), gap


def _zone(path: Path) -> Zone:
    name = path.name.split("_")[0]
    return Zone(name, region_of(name))


@functools.cache
def datasets() -> tuple[Dataset, ...]:
    sky = traces.traces_dir() / SKY
    out = []
    for folder, name, title in (
            (_multi_data.GCP, "gcp-h100-wk1", "GCP H100, 13 zones, 1 week (2025-10)"),
            (_multi_data.AWS, "aws-v100-4node", "AWS V100 4-node pools, 3 zones, 11 days (2023-08)")):
        zones, avail, gap = _multi_data.folder(folder)
        out.append(Dataset(name, title, zones, avail, gap, (tuple(range(len(zones))),)))
    files = sorted((sky / "availability/1-node/aws-10-26-2022").glob("*.json"))
    avail, gap = _load(files)
    zones = tuple(Zone(f.stem, region_of(f.name.split("_")[0])) for f in files)
    kinds = sorted({f.stem.split("_", 1)[1] for f in files})
    groups = tuple(tuple(i for i, f in enumerate(files) if f.stem.endswith("_" + k)) for k in kinds)
    out.append(Dataset("aws-1node-2022", "AWS 1-node probes, us-west-2a/2b x V100/K80 x 1/8 GPUs, 27 days (2022)",
                       zones, avail, gap, groups))
    files = sorted((sky / "preemption/1-node/aws-04-22-2023").glob("*.json"))
    avail, gap = _load(files)
    out.append(Dataset("aws-v100-preempt-2023-04", "AWS V100 preemptions, 4 zones, 7.4 days (2023-04)",
                       tuple(_zone(f) for f in files), avail, gap, (tuple(range(len(files))),)))
    files = sorted((sky / "availability/16-node/aws-08-27-2023").glob("*.json"))
    avail, gap = _load(files)
    out.append(Dataset("aws-v100-16node", "AWS V100 16-node counts read as >= 1 free, 3 zones, 11 days (2023-08)",
                       tuple(_zone(f) for f in files), avail, gap, (tuple(range(len(files))),)))
    return tuple(out)


def dataset(name: str) -> Dataset:
    return next(d for d in datasets() if d.name == name)


def at_gap(d: Dataset, gap_s: float) -> npt.NDArray[np.bool_]:
    """`[zone, tick]` of `d` at `gap_s` (never finer than the data)."""
    gap_s = max(gap_s, d.gap_s)
    return np.stack([resample(row, d.gap_s, gap_s) for row in d.avail])


def starts(total_ticks: int, gap_s: float, deadline_h: float, offsets_h: tuple[float, ...] | None = None) -> list[int]:
    """First ticks of every window of `deadline_h`: every `GRID_H` hours from each offset (default
    `OFFSETS_H`), within the trace."""
    per_h = 3600 / gap_s
    length = round(deadline_h * per_h)
    out: set[int] = set()
    for off in OFFSETS_H if offsets_h is None else offsets_h:
        out.update(range(round(off * per_h), total_ticks - length + 1, round(GRID_H * per_h)))
    return sorted(out)


def fit_series(exclude: str | None) -> list[npt.NDArray[np.bool_]]:
    """Every zone of every dataset but `exclude`, at the model's 10-minute step: what a fold fits on."""
    return [row for d in datasets() if d.name != exclude for row in at_gap(d, 600.0)]


def available() -> bool:
    return _multi_data.available() and (traces.traces_dir() / SKY).is_dir()
