"""The multi-zone optimum against brute force: every schedule of tiny windows, enumerated."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest

from orchestrator.core.policy.multizone_base import MoveCosts, Zone
from orchestrator.research.fastsim import Setup
from orchestrator.research.multizone_optimum import solve

GAP_S = 600.0


def _brute(avail: npt.NDArray[np.bool_], setup: Setup, zones: list[Zone], moves: MoveCosts) -> float:
    """Cheapest cost over every sequence of per-tick actions (idle, on-demand in a region, spot in a zone),
    simulated directly in seconds: an independent statement of the model in `multizone_optimum`."""
    assert setup.deadline_h is not None
    ticks = math.floor(setup.deadline_h * 3600 / GAP_S + 1e-9)
    regions = sorted({z.region for z in zones})
    rep = {r: next(i for i, z in enumerate(zones) if z.region == r) for r in regions}
    actions: list[tuple[str, str | int | None]] = [("idle", None)]
    actions += [("od", r) for r in regions] + [("spot", z) for z in range(len(zones))]
    work, d = setup.task_h * 3600, setup.overhead_h * 3600
    best = math.inf
    for plan in itertools.product(range(len(actions)), repeat=ticks):
        home: str | None = None
        market: tuple[str, str | int | None] | None = None
        owed = done = cost = 0.0
        for t, a in enumerate(plan):
            kind, where = actions[a]
            if kind == "idle":
                market = None
            elif kind == "od":
                if home is not None and where != home:
                    break  # on-demand runs where the checkpoint is
                if market != (kind, where):
                    market, owed, home = (kind, where), d, str(where)
            else:
                assert isinstance(where, int)
                if not avail[where, t]:
                    break
                if market != (kind, where):
                    to = zones[where].region
                    if home is not None:
                        owed = d + moves.transfer_h[rep[home]][where] * 3600
                        cost += moves.egress[rep[home]][where]
                    else:
                        owed = d
                    market, home = (kind, where), to
            if market is not None:
                progress = max(0.0, GAP_S - owed)
                owed = max(0.0, owed - GAP_S)
                done += progress
                cost += GAP_S / 3600 * (setup.price_ratio if market[0] == "od" else 1.0)
            if done >= work - 1e-6:
                best = min(best, cost)
                break
    return best


def _case(seed: int) -> tuple[npt.NDArray[np.bool_], Setup, list[Zone], MoveCosts]:
    rng = np.random.default_rng(seed)
    zones = [Zone("a1", "ra"), Zone("b1", "rb"), Zone("a2", "ra")][: 2 + seed % 2]
    n = len(zones)
    transfer = [[0.0 if zones[i].region == zones[j].region else (60.0 + 60 * (seed % 3)) / 3600 for j in range(n)]
                for i in range(n)]
    egress = [[0.0 if zones[i].region == zones[j].region else 0.05 for j in range(n)] for i in range(n)]
    overhead = (0.05, 0.2, 0.1)[seed % 3]
    setup = Setup(task_h=float(rng.choice([1 / 3, 0.5, 2 / 3])), deadline_h=1.0, overhead_h=overhead, gap_s=GAP_S)
    avail = rng.random((n, 6)) < 0.5
    return avail, setup, zones, MoveCosts(tuple(map(tuple, transfer)), tuple(map(tuple, egress)))


@pytest.mark.parametrize("seed", range(24))
def test_dp_equals_brute_force(seed: int) -> None:
    avail, setup, zones, moves = _case(seed)
    exact = _brute(avail, setup, zones, moves)
    got = solve(avail[None], setup, zones, moves)[0]
    assert got == pytest.approx(exact, abs=1e-4)


def test_windows_are_solved_independently() -> None:
    cases = [_case(s) for s in (0, 2, 4)]
    _, setup, zones, moves = cases[0]
    batch = np.stack([c[0] for c in cases])
    together = solve(batch, setup, zones, moves)
    alone = [solve(c[0][None], setup, zones, moves)[0] for c in cases]
    assert together == pytest.approx(alone, abs=1e-5)


def test_a_move_pays_its_transfer_and_egress() -> None:
    """Spot in a1 for two ticks, then only in b1 (another region), and a deadline that forbids waiting
    for b1: the optimum runs in a1, moves, and pays the fee; the transfer minute still fits in 4 ticks."""
    zones = [Zone("a1", "ra"), Zone("b1", "rb")]
    setup = Setup(task_h=0.5, deadline_h=5 / 6, overhead_h=0.05, price_ratio=100.0, gap_s=GAP_S)
    avail = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 1]], dtype=bool)
    free = MoveCosts(((0.0, 0.0), (0.0, 0.0)), ((0.0, 0.0), (0.0, 0.0)))
    paid = MoveCosts(((0.0, 60 / 3600), (60 / 3600, 0.0)), ((0.0, 2.0), (2.0, 0.0)))
    assert solve(avail[None], setup, zones, free)[0] == pytest.approx(4 / 6)
    assert solve(avail[None], setup, zones, paid)[0] == pytest.approx(4 / 6 + 2.0)
    # A 7-minute transfer eats the whole move tick (180 + 420 s): the work ends a tick later, at the deadline.
    slow = MoveCosts(((0.0, 420 / 3600), (420 / 3600, 0.0)), ((0.0, 2.0), (2.0, 0.0)))
    assert solve(avail[None], setup, zones, slow)[0] == pytest.approx(5 / 6 + 2.0)
    assert _brute(avail, setup, zones, slow) == pytest.approx(5 / 6 + 2.0)


def test_infeasible_deadline() -> None:
    zones = [Zone("a1", "ra")]
    moves = MoveCosts(((0.0,),), ((0.0,),))
    setup = Setup(task_h=1.0, deadline_h=1.0, overhead_h=0.05, gap_s=GAP_S)
    assert math.isinf(solve(np.ones((1, 1, 6), dtype=bool), setup, zones, moves)[0])
