"""The trace loader: the public format, and refusals that name the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.research import traces
from orchestrator.research.traces import Trace, TraceError, load_trace, load_windows
from tests.shared_data import data_missing


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_reads_the_public_format(tmp_path: Path) -> None:
    path = _write(tmp_path / "zone.json", {"metadata": {"gap_seconds": 600, "start_time": 3},
                                           "data": [1, 0, 2], "prices": [0.9, 1, 1.1]})
    trace = load_trace(path)
    assert trace == Trace(600.0, (1, 0, 2), (0.9, 1.0, 1.1), str(path))
    assert trace.hours == pytest.approx(0.5)
    assert trace.available().tolist() == [True, False, True]
    assert trace.available(nodes=2).tolist() == [False, False, True]


def test_window_cuts_data_and_prices(tmp_path: Path) -> None:
    trace = Trace(60.0, (1, 1, 0, 1), (1.0, 2.0, 3.0, 4.0))
    part = trace.window(1, 2)
    assert part.data == (1, 0) and part.prices == (2.0, 3.0)
    with pytest.raises(ValueError, match="outside"):
        trace.window(3, 2)


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ([1, 0], "must be a JSON object"),
        ({"data": [1]}, "missing key 'metadata'"),
        ({"metadata": {"gap_seconds": 60}}, "missing key 'data'"),
        ({"metadata": {"gap": 60}, "data": [1]}, "metadata must be an object with 'gap_seconds'"),
        ({"metadata": {"gap_seconds": 0}, "data": [1]}, "gap_seconds must be greater than 0"),
        ({"metadata": {"gap_seconds": -5}, "data": [1]}, "gap_seconds must be greater than 0"),
        ({"metadata": {"gap_seconds": "60"}, "data": [1]}, "gap_seconds must be a number"),
        ({"metadata": {"gap_seconds": 60}, "data": [1, 0.5]}, r"data\[1\] must be an integer count"),
        ({"metadata": {"gap_seconds": 60}, "data": [True]}, r"data\[0\] must be an integer count"),
        ({"metadata": {"gap_seconds": 60}, "data": ["1"]}, r"data\[0\] must be an integer count"),
        ({"metadata": {"gap_seconds": 60}, "data": [1, -1]}, r"data\[1\] must not be negative"),
        ({"metadata": {"gap_seconds": 60}, "data": []}, "data must be a non-empty list"),
        ({"metadata": {"gap_seconds": 60}, "data": [1], "prices": [1, 2]}, "prices must be a list as long"),
        ({"metadata": {"gap_seconds": 60}, "data": [1], "prices": ["x"]}, r"prices\[0\] must be"),
    ],
)
def test_bad_documents_name_the_file_and_the_problem(tmp_path: Path, doc: object, problem: str) -> None:
    path = _write(tmp_path / "bad.json", doc)
    with pytest.raises(TraceError, match=problem) as caught:
        load_trace(path)
    assert str(path) in str(caught.value)
    assert caught.value.source == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file") as caught:
        load_trace(tmp_path / "absent.json")
    assert "absent.json" in str(caught.value)


def test_bad_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"metadata": {"gap_seconds": 60},\n "data": [1, 0,', encoding="utf-8")
    with pytest.raises(TraceError, match=r"broken.json: not valid JSON: .* line 2"):
        load_trace(path)


def test_windows_load_in_numeric_order(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        _write(tmp_path / f"{n}.json", {"metadata": {"gap_seconds": 600}, "data": [n]})
    assert [t.data[0] for t in load_windows(tmp_path)] == [1, 2, 10]
    with pytest.raises(TraceError, match="no such folder"):
        load_windows(tmp_path / "nope")


def test_stack_refuses_ragged_traces() -> None:
    a, b = Trace(60.0, (1, 0)), Trace(60.0, (1,))
    with pytest.raises(ValueError, match="differ in length"):
        traces.stack([a, b])
    assert traces.stack([a, a]).shape == (2, 2)


def test_traces_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(traces.TRACES_ENV, str(tmp_path))
    assert traces.traces_dir() == tmp_path
    monkeypatch.delenv(traces.TRACES_ENV)
    assert traces.traces_dir().parts[-3:] == ("shared", "data", "spot-traces")


def test_public_windows_match_their_source_trace() -> None:
    """The paper's windows are cuts of the 2-week probe traces (README of the data folder)."""
    root = traces.traces_dir()
    folder = root / traces.WINDOWS_SUBDIR / "us-west-2a_v100_1"
    if not folder.is_dir():
        data_missing(f"public traces not found at {root} (set {traces.TRACES_ENV})")
    window = json.loads((folder / "7.json").read_text())
    full = load_trace(root / traces.ONE_NODE_SUBDIR / "us-west-2a_v100_1.json")
    start = window["metadata"]["start_time"]
    cut = full.window(start, len(window["data"]))
    assert np.array_equal(cut.available(), load_trace(folder / "7.json").available())
