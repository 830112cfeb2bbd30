"""A small statistical model of spot availability, for planning under uncertainty.

Availability is modelled as a semi-Markov process observed every `STEP_H` (the 10 minutes of the
public probe traces). What predicts the next step is summarised by three observable features:

- whether spot is available now;
- how long the current run (of availability or of outage) has lasted, in log-spaced buckets: the run
  lengths in the public traces are heavy-tailed (half of all outages last one probe, a few last
  days), so a run's age says much about its rest;
- how available spot has been recently (`SpotHistory.recent_available`, an exponentially weighted
  mean), in four buckets: availability comes in regimes of hours to days.

The model holds, per feature cell, the hazard (the probability that the run ends after this step) and,
per next availability, how the recent-availability bucket moves. It is fitted by counting
(`fit`) on traces, and shipped as constants (`orchestrator.core.policy._fitted`). Pure: numpy only.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.core.policy.base import RECENT_PRIOR, SpotHistory

STEP_H = 1.0 / 6.0
# A run that has lasted a steps (the current one included) is in bucket i when
# AGE_EDGES[i] <= a < AGE_EDGES[i + 1].
AGE_EDGES: tuple[int, ...] = (1, 2, 3, 4, 6, 9, 13, 19, 28, 42, 63)
RECENT_EDGES: tuple[float, ...] = (0.25, 0.5, 0.75)
N_AGES = len(AGE_EDGES)
N_RECENT = len(RECENT_EDGES) + 1
N_FEATURES = 2 * N_AGES * N_RECENT
_SMOOTHING = 5.0  # pseudo-observations pulling a sparse cell's hazard toward its age's mean


def feature(available: bool, run_steps: float, recent: float) -> int:
    """Index of a feature cell: (available, age bucket, recent bucket), row-major."""
    age = max(0, bisect.bisect_right(AGE_EDGES, run_steps + 1e-6) - 1)
    rec = bisect.bisect_right(RECENT_EDGES, recent)
    return (int(available) * N_AGES + age) * N_RECENT + rec


def feature_of(available: bool, history: SpotHistory | None) -> int:
    """The cell a policy is in, from what it has seen (no history: a fresh run, typical recent past)."""
    if history is None:
        return feature(available, 1.0, RECENT_PRIOR)
    return feature(available, history.current_run_h / STEP_H, history.recent_available)


def available_cells() -> npt.NDArray[np.bool_]:
    """Which feature cells have spot available."""
    return np.repeat(np.array([False, True]), N_AGES * N_RECENT)


@dataclass(frozen=True, slots=True)
class MarketModel:
    """Hazards `[available][age][recent]` and recent-bucket moves `[available next][recent][recent next]`."""

    hazard: tuple[tuple[tuple[float, ...], ...], ...]
    recent_moves: tuple[tuple[tuple[float, ...], ...], ...]

    def transitions(self) -> npt.NDArray[np.float64]:
        """`P[f, g]`: probability of feature cell g one step after cell f."""
        return _transitions(self)


@functools.cache
def _transitions(model: MarketModel) -> npt.NDArray[np.float64]:
    hazard = np.asarray(model.hazard, dtype=np.float64)
    moves = np.asarray(model.recent_moves, dtype=np.float64)
    widths = np.diff((*AGE_EDGES, AGE_EDGES[-1]))  # the last bucket never advances
    p = np.zeros((N_FEATURES, N_FEATURES))
    for a in (0, 1):
        for age in range(N_AGES):
            advance = 1.0 / widths[age] if widths[age] > 0 else 0.0
            for rec in range(N_RECENT):
                f = (a * N_AGES + age) * N_RECENT + rec
                h = hazard[a, age, rec]
                stay = (1.0 - h) * moves[a, rec]  # run goes on: next recent bucket given available = a
                p[f, (a * N_AGES + age) * N_RECENT : (a * N_AGES + age + 1) * N_RECENT] += stay * (1 - advance)
                if advance:
                    p[f, (a * N_AGES + age + 1) * N_RECENT : (a * N_AGES + age + 2) * N_RECENT] += stay * advance
                b = 1 - a  # run ends: a fresh run of the other kind
                p[f, (b * N_AGES) * N_RECENT : (b * N_AGES + 1) * N_RECENT] += h * moves[b, rec]
    p.setflags(write=False)
    return p


def cells_over_time(available: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """The feature cell at every step of a trace, as a policy watching it from the start would see.

    Built with the very `SpotHistory` and `feature_of` the policy uses live, so the model is fitted
    on exactly the features it is later asked about.
    """
    out = np.empty(len(available), dtype=np.int64)
    history = SpotHistory()
    for t, up in enumerate(available.tolist()):
        history = history.observe(bool(up), STEP_H)
        out[t] = feature_of(bool(up), history)
    return out


def fit(traces: Sequence[npt.NDArray[np.bool_]]) -> MarketModel:
    """Count hazards and recent-bucket moves over traces sampled every `STEP_H`."""
    ends = np.zeros((2, N_AGES, N_RECENT))
    at_risk = np.zeros((2, N_AGES, N_RECENT))
    moves = np.zeros((2, N_RECENT, N_RECENT))
    for trace in traces:
        cells = cells_over_time(np.asarray(trace, dtype=bool))
        up, rest = np.divmod(cells, N_AGES * N_RECENT)
        age, rec = np.divmod(rest, N_RECENT)
        now, nxt = slice(0, len(cells) - 1), slice(1, len(cells))
        np.add.at(at_risk, (up[now], age[now], rec[now]), 1)
        np.add.at(ends, (up[now], age[now], rec[now]), (up[nxt] != up[now]).astype(float))
        np.add.at(moves, (up[nxt], rec[now], rec[nxt]), 1)
    mean = ends.sum(axis=2, keepdims=True) / np.maximum(at_risk.sum(axis=2, keepdims=True), 1.0)
    hazard = (ends + _SMOOTHING * mean) / (at_risk + _SMOOTHING)
    moves = (moves + 0.1) / (moves + 0.1).sum(axis=2, keepdims=True)
    return MarketModel(_nested(np.clip(hazard, 1e-4, 1.0)), _nested(moves))


def _nested(a: npt.NDArray[np.float64]) -> tuple[tuple[tuple[float, ...], ...], ...]:
    return tuple(tuple(tuple(round(float(x), 6) for x in row) for row in plane) for plane in a)
