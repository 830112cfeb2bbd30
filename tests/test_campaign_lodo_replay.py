"""The fast replay of the unkind-world campaign (`bench/_campaign_lodo_replay.py`, issue 25).

It chooses launch rules on every 6 h start, so it must bill what it says: no reclamation means only the
first launches' overhead; a zone that blinks out reclaims every worker in it and costs a launch each;
the candidate ramp holds a just-returned zone to few workers; and its `--compare` reads the real
sweep's progress lines as `bench/campaign_lodo.py` writes them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench import _campaign_lodo_replay as rp
from bench import _campaign_world as cw
from orchestrator.core import campaign_plan as cp
from orchestrator.core import campaign_zones as cz
from orchestrator.job.item_records import ItemCounts
from tests.shared_data import data_missing


def _data(counts: list[list[int]]) -> cw.CampaignData:
    return cw.CampaignData("synthetic", "two zones", ("zone-a", "zone-b"), np.asarray(counts, dtype=np.int64),
                           600.0, 1)


def test_with_spot_always_up_only_the_first_launches_cost_overhead() -> None:
    data = _data([[1] * 400, [1] * 400])
    x, run = rp.replay(data, 0, 0, node_loss_per_h=0.0)
    work_h = float(cw.item_seconds(rp.ITEMS, 0).sum()) / 3600.0
    facts = cp.CampaignFacts(ItemCounts(queued=rp.ITEMS), hours_per_item=work_h / rp.ITEMS)
    first = cp.workers_wanted(facts, slots=rp.SLOTS, total_h=work_h, hours_left=rp.DEADLINE_H,
                              overhead_h=rp.OVERHEAD_H)
    assert run.launches == first  # no reclamation: nobody is relaunched, and the plan only ever shrinks
    assert run.billed_od_h == 0.0 and run.finish_h is not None and run.finish_h <= rp.DEADLINE_H
    assert math.isclose(run.billed_spot_h, work_h + first * rp.OVERHEAD_H, rel_tol=0.02)  # the tail is short
    assert x > 1.0


def test_a_zone_that_blinks_out_reclaims_its_workers_and_costs_launches() -> None:
    steady = [1] * 400
    blinking = [0 if i % 6 == 5 else 1 for i in range(400)]  # one 10-minute probe down each hour
    calm, calm_run = rp.replay(_data([steady, steady]), 0, 0, node_loss_per_h=0.0)
    rough, rough_run = rp.replay(_data([blinking, blinking]), 0, 0, node_loss_per_h=0.0)
    assert rough_run.launches > 3 * calm_run.launches
    assert len(rough_run.log) == rough_run.launches and all(w.zone is not None for w in rough_run.log)
    assert rough > calm + 0.05


def test_the_ramp_candidate_holds_a_just_returned_zone_to_few_workers() -> None:
    now = 1_000_000.0
    ages = cz.ZoneAges({"zone-a": now - 0.35 * 3600, "zone-b": -math.inf}, frozenset({"zone-a", "zone-b"}))
    allow = rp.ramp(1.0)  # 0.35 h of age: at most 3 workers
    assert allow(ages, {"zone-a"}, {"zone-a": 2}, now, 0.25) == {"zone-a"}
    assert allow(ages, {"zone-a"}, {"zone-a": 3}, now, 0.25) == set()
    assert allow(ages, {"zone-a", "zone-b"}, {"zone-a": 3, "zone-b": 9}, now, 0.25) == {"zone-b"}  # age unknown
    assert rp.shipped(ages, {"zone-a"}, {"zone-a": 3}, now, 0.25) == {"zone-a"}  # the shipped rule has no cap


def test_compare_reads_the_sweeps_progress_lines(tmp_path: Path) -> None:
    line = ("aws-v100-4node start 0 seed 0: 1.018 x bound, deadline met True, lost 0, duplicates 0, "
            "on-demand h 0.0, launches 14")
    log = tmp_path / "sweep.log"
    log.write_text(f"noise\n{line}\n")
    try:
        out = rp.compare(log)
    except (OSError, KeyError, ValueError):  # the public traces are not here: the parse alone
        assert rp.LINE.match(line) is not None
        return
    assert out[2].startswith("| aws-v100-4node | 0 | 0 | 1.018 |") and out[2].split("|")[6].strip() == "14"
    assert "over 1 runs" in out[-1]


def test_the_sweeps_summary_counts_every_run_over_the_target(tmp_path: Path) -> None:
    from bench import campaign_lodo

    log = tmp_path / "sweep.log"
    log.write_text("aws-v100-4node start 0 seed 0: 1.018 x bound, deadline met True, lost 0, duplicates 0, "
                   "on-demand h 0.0, launches 9\n"
                   "aws-v100-4node start 288 seed 0: 1.120 x bound, deadline met True, lost 0, duplicates 0, "
                   "on-demand h 0.0, launches 30\n")
    try:
        lines = campaign_lodo.summarise(log)
    except (OSError, KeyError, ValueError):
        data_missing("the public traces are not here")
    row = next(line for line in lines if line.startswith("| aws-v100-4node"))
    assert "| 2 (0, 24) | 1.069 |" in row and "| 1.120 | 1 | 2 of 2 | 0 | 0 |" in row
    assert lines[-1].endswith("(NOT met; 1 of 2 over)")
