"""`bench/policy.py --gang` on two tiny made-up datasets: the table, and where its constant came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import policy_gang as pg


@pytest.fixture
def two_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Two datasets of one zone each, 50 h at 30 minutes: spot for 8 nodes comes and goes."""
    folders = {"one": tmp_path / "one", "two": tmp_path / "two"}
    patterns = {"one": [16] * 20 + [4] * 12 + [16] * 68, "two": [8] * 30 + [0] * 30 + [16] * 40}
    for name, folder in folders.items():
        folder.mkdir()
        folder.joinpath("z-a_x.json").write_text(json.dumps({"metadata": {"gap_seconds": 1800},
                                                             "data": patterns[name]}))
    monkeypatch.setattr(pg, "_folders", lambda: folders)
    monkeypatch.setattr(pg, "DATASETS", tuple(folders))
    monkeypatch.setattr(pg, "SETUPS", (pg.Setup(8, 36.0, False), pg.Setup(8, 48.0, True)))
    monkeypatch.setattr(pg, "OFFSETS_H", (0.0,))
    monkeypatch.setattr(pg, "OVERHEAD_H", 0.5)
    pg.zones.cache_clear()
    return folders


def test_the_gang_table_holds_each_dataset_out_and_the_optimum_is_the_least(two_datasets: dict[str, Path]) -> None:
    lines, _ = pg.run(jobs=1)
    text = "\n".join(lines)
    assert "#### one: held out; the default's WAIT_SHARE = " in text and "chosen on two" in text
    assert "#### two: held out" in text and "chosen on one" in text
    rows = [line for line in lines if line.startswith("| N=8")]
    assert len(rows) == 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        default, _relaunch, net, up, opt = (tuple(float(x) for x in c.split(" / ")) for c in cells[1:6])
        assert default[3] == net[3] == up[3] == 0  # no misses for the deadline-aware ones
        assert opt[0] <= min(default[0], net[0], up[0]) + 1e-9
    pg.zones.cache_clear()
