"""The benchmark's setups and windows: the paper's Table 3, its variations, and a two-zone setup.

Windows come from `derived-random-start-2week/` of the public traces (the paper's 300 random starts
per environment; see the data folder's README). Window i of every environment starts at the same
tick of the same 27-day trace, so pairing us-west-2a and us-west-2b windows by index gives two zones
observed over the same hours.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.research import traces
from orchestrator.research.fastsim import Setup


@dataclass(frozen=True, slots=True)
class BenchSetup:
    name: str
    title: str
    setup: Setup
    # One tuple of environments per zone: one zone reads every environment of its tuple, window by window.
    zones: tuple[tuple[str, ...], ...]


ONE_ZONE = ("us-west-2a_k80_1", "us-west-2a_k80_8", "us-west-2a_v100_1", "us-west-2a_v100_8",
            "us-west-2b_k80_1", "us-west-2b_k80_8", "us-west-2b_v100_1", "us-west-2b_v100_8")
TWO_ZONE = (("us-west-2a_v100_1", "us-west-2a_v100_8"), ("us-west-2b_v100_1", "us-west-2b_v100_8"))


def setups() -> list[BenchSetup]:
    paper = Setup(task_h=48.0, deadline_h=60.0, overhead_h=0.2)
    return [
        BenchSetup("paper", "C = 48 h, D = 60 h, d = 0.2 h (the paper's Table 3)", paper, (ONE_ZONE,)),
        BenchSetup("d=0.05", "d = 0.05 h", Setup(48.0, 60.0, 0.05), (ONE_ZONE,)),
        BenchSetup("d=0.5", "d = 0.5 h", Setup(48.0, 60.0, 0.5), (ONE_ZONE,)),
        BenchSetup("D=52", "D = 52 h (tight)", Setup(48.0, 52.0, 0.2), (ONE_ZONE,)),
        BenchSetup("D=70", "D = 70 h (loose)", Setup(48.0, 70.0, 0.2), (ONE_ZONE,)),
        BenchSetup("two-zone", "two zones: us-west-2a + us-west-2b, V100 (1 and 8 GPUs), C = 48 h, "
                   "D = 60 h, d = 0.2 h", paper, TWO_ZONE),
    ]


@functools.cache
def env_windows(env: str) -> npt.NDArray[np.bool_]:
    """The 300 windows of one environment, `[window, tick]`."""
    folder = traces.traces_dir() / traces.WINDOWS_SUBDIR / env
    return traces.stack(traces.load_windows(folder))


def windows(bench: BenchSetup, every: int = 1) -> npt.NDArray[np.bool_]:
    """`[window, zone, tick]` for a setup; `every` > 1 keeps one window in `every` (for --quick)."""
    per_zone = [np.concatenate([env_windows(env)[::every] for env in envs]) for envs in bench.zones]
    return np.stack(per_zone, axis=1)


def available() -> bool:
    return (traces.traces_dir() / traces.WINDOWS_SUBDIR).is_dir()
