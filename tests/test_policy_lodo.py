"""A guard on the leave-one-dataset-out evaluation (`bench/policy_lodo.py`), not the benchmark itself.

A small fixed slice, each scored with the availability model fitted on the *other* datasets: single
zone on the 2023-04 V100 preemption traces (C 48, D 60, d 0.2), and multi-zone on the V100 4-node
pools, the issue's spot-scarce case (C 24, D 36, d 0.2, every pair and all three zones), windows on
one grid offset. It fails on a miss, on the default costing more than Uniform Progress (single- or
multi-zone) by over 1% on the slice's mean, or on any cost under the exact optimum. The full tables:
`python bench/policy.py` and `python bench/policy.py --multi` (docs/benchmarks.md). Skipped without the
public traces, except in CI, where that is a failure (`tests/shared_data.py`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from bench import policy_data, policy_lodo
from tests.shared_data import data_missing


@pytest.fixture(autouse=True)
def _public_traces() -> None:
    if not policy_data.available():
        data_missing("public traces not found under ../shared/data (set ORCH_TRACES_DIR)")


@pytest.fixture
def one_offset() -> Iterator[None]:
    saved = policy_data.OFFSETS_H, policy_data.MULTI_OFFSETS_H
    policy_data.OFFSETS_H = policy_data.MULTI_OFFSETS_H = (0.0,)
    yield
    policy_data.OFFSETS_H, policy_data.MULTI_OFFSETS_H = saved


def test_the_fold_model_is_fitted_without_the_held_out_dataset() -> None:
    held_out = "aws-v100-preempt-2023-04"
    series = policy_data.fit_series(held_out)
    every = policy_data.fit_series(None)
    assert len(every) - len(series) == len(policy_data.dataset(held_out).zones)
    assert policy_lodo.fold_model(held_out) != policy_lodo.fold_model(None)


def _check(up: policy_lodo.Cells, default: policy_lodo.Cells, best: policy_lodo.Cells) -> None:
    assert up.met.all() and default.met.all() and best.met.all()
    floor = best.cost * (1 - 1e-5)  # the optimum's tables are single precision
    assert (default.cost >= floor).all() and (up.cost >= floor).all()
    assert default.cost.mean() <= 1.01 * up.cost.mean()


@pytest.mark.usefixtures("one_offset")
def test_single_zone_held_out_v100_preemptions() -> None:
    name = "aws-v100-preempt-2023-04"
    cells = {c: policy_lodo.single_cells(name, "d=0.2", c) for c in policy_lodo.COLUMNS}
    assert len(cells[policy_lodo.UP].cost) == 4 * 20  # 4 zones, a window every 6 h over 7.4 days
    _check(cells[policy_lodo.UP], cells[policy_lodo.DEFAULT], cells[policy_lodo.OPT])


@pytest.mark.usefixtures("one_offset")
def test_multi_zone_held_out_v100_pools_where_spot_is_scarce() -> None:
    name = "aws-v100-4node"
    sets = policy_lodo.zone_sets(name)
    assert sets == [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    cells = {c: policy_lodo.merge([policy_lodo.multi_cells(name, "D=36 d=0.2", c, z) for z in sets])
             for c in policy_lodo.COLUMNS}
    _check(cells[policy_lodo.UP], cells[policy_lodo.DEFAULT], cells[policy_lodo.OPT])
    assert np.median(cells[policy_lodo.DEFAULT].cost / cells[policy_lodo.UP].cost) <= 1.0
