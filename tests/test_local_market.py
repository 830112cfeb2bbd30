"""The local provider's simulated spot market and its settings: pure functions, no processes."""

from __future__ import annotations

import csv
import itertools
import json
import statistics
from pathlib import Path

import pytest

from orchestrator.research.traces import traces_dir
from providers.local.market import (
    MARKET_HORIZON_SECONDS,
    MAX_DRAWS_PER_BLOCK,
    NEXT_TIME_BLOCKS,
    Block,
    RandomSchedule,
    SpotMarket,
    TraceError,
    build_market,
    load_trace,
)
from providers.local.settings import LocalSettings
from tests.shared_data import data_missing
from vocab import PermanentError

PUBLIC_ONE_NODE = "skypilot-org-spot-traces/availability/1-node/aws-10-26-2022/us-west-2a_k80_1.json"


def write_trace(path: Path, data: list[int], gap: float = 10.0) -> Path:
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return path


# --- the random model ------------------------------------------------------------------------------


def periods(schedule: RandomSchedule, blocks: int) -> tuple[list[float], list[float]]:
    """Lengths of the whole available and unavailable periods inside the first `blocks` blocks."""
    up: list[float] = []
    down: list[float] = []
    for index in range(blocks):
        block = schedule.block(index)
        available = block.first_available
        for a, b in itertools.pairwise(block.switches):
            available = not available  # the state entered at a
            (up if available else down).append(b - a)
    return up, down


def test_same_seed_gives_the_same_schedule() -> None:
    a = SpotMarket(LocalSettings(seed=7))
    b = SpotMarket(LocalSettings(seed=7))
    moments = [i * 37.0 for i in range(3000)]
    assert [a.available("local-a", t) for t in moments] == [b.available("local-a", t) for t in moments]
    assert RandomSchedule(7, "local-a", 1800, 300).block(3) == RandomSchedule(7, "local-a", 1800, 300).block(3)


def test_seed_and_zone_change_the_schedule() -> None:
    base = RandomSchedule(7, "local-a", 1800, 300).block(0)
    assert RandomSchedule(8, "local-a", 1800, 300).block(0) != base
    assert RandomSchedule(7, "local-b", 1800, 300).block(0) != base


def test_random_periods_have_the_configured_means() -> None:
    schedule = RandomSchedule(1, "local-a", 100.0, 20.0)
    up, down = periods(schedule, 20)
    assert len(up) + len(down) > 8000
    assert statistics.mean(up) == pytest.approx(100.0, rel=0.06)
    assert statistics.mean(down) == pytest.approx(20.0, rel=0.06)
    # Later blocks start available in the long-run share of time (100 / 120), not always.
    starts = [schedule.block(i).first_available for i in range(1, 400)]
    assert sum(starts) / len(starts) == pytest.approx(100 / 120, abs=0.06)


def test_random_market_starts_available_and_alternates() -> None:
    market = SpotMarket(LocalSettings(seed=3, mean_available_seconds=50, mean_unavailable_seconds=10))
    switches = RandomSchedule(3, "local-a", 50.0, 10.0).block(0).switches
    assert market.available("local-a", 0.0)
    assert market.next_unavailable("local-a", 0.0) == switches[0]
    gone = switches[0] + 1e-6
    assert not market.available("local-a", gone)
    assert market.next_unavailable("local-a", gone) == gone  # already gone: now
    assert market.next_available("local-a", gone) == switches[1]
    assert market.available("local-a", switches[1])


def test_a_period_that_crosses_a_block_boundary_is_found_in_the_next_block() -> None:
    schedule = RandomSchedule(5, "local-a", 50.0, 10.0)
    index = next(i for i in range(1, 200)
                 if schedule.block(i).first_available == schedule.block(i - 1).at(schedule.block(i).start - 1e-9))
    block, before = schedule.block(index), schedule.block(index - 1)
    last = before.switches[-1] + 1e-9  # the last period of the block before runs on into this one
    assert schedule.next_time(last, not before.at(last)) == block.switches[0]


@pytest.mark.parametrize("means", [(1e-9, 1e-9), (1e-300, 1e300), (1.0, 1e12)])
def test_the_random_model_does_bounded_work_whatever_its_means(
    means: tuple[float, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth under the settings' bounds: no means make a question draw without end.

    The work is counted, not timed: blocks drawn per question, and draws per block."""
    schedule = RandomSchedule(0, "local-a", *means)
    drawn: list[Block] = []
    draw = schedule._draw

    def counted(index: int) -> Block:
        drawn.append(draw(index))
        return drawn[-1]

    monkeypatch.setattr(schedule, "_draw", counted)
    moments = (0.0, 3600.0, 86400.0 * 365, 1e12, 1e15)
    for t in moments:
        schedule.at(t)
        schedule.next_time(t, True)
        schedule.next_time(t, False)
    assert len(drawn) <= len(moments) * (1 + 2 * NEXT_TIME_BLOCKS)
    assert all(len(block.switches) <= MAX_DRAWS_PER_BLOCK for block in drawn)


def test_always_market_never_reclaims() -> None:
    market = SpotMarket(LocalSettings(availability="always"))
    assert market.available("local-b", 1e9)
    assert market.next_unavailable("local-b", 5.0) is None
    assert market.next_available("local-b", 5.0) == 5.0


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(PermanentError, match="unknown zone 'us-east-1a'"):
        SpotMarket(LocalSettings()).available("us-east-1a", 0.0)


# --- the trace model -------------------------------------------------------------------------------


def test_trace_model_replays_and_loops_a_trace(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.json", [1, 1, 0, 1, 0, 0], gap=10.0)
    market = build_market(LocalSettings(availability="trace", trace=str(path)))
    assert [market.available("local-a", t) for t in (0, 15, 25, 35, 45, 55)] == [1, 1, 0, 1, 0, 0]
    assert market.next_unavailable("local-a", 0.0) == 20.0
    assert market.next_unavailable("local-a", 25.0) == 25.0
    assert market.next_available("local-a", 25.0) == 30.0
    assert market.next_available("local-a", 45.0) == 60.0  # past the end: the trace starts over
    assert market.available("local-a", 65.0)
    assert market.next_unavailable("local-a", 61.0) == 80.0
    assert market.available("local-b", 15.0)  # one trace for every zone


def test_gap_seconds_override_speeds_a_trace_up(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.json", [1, 1, 0], gap=600.0)
    assert load_trace(path).gap_seconds == 600.0
    market = build_market(LocalSettings(availability="trace", trace=str(path), gap_seconds=0.5))
    assert market.next_unavailable("local-a", 0.0) == 1.0


def test_counts_above_one_mean_available(tmp_path: Path) -> None:
    trace = load_trace(write_trace(tmp_path / "t.json", [16, 0, 4]))
    assert trace.available == (True, False, True)


def test_trace_per_zone(tmp_path: Path) -> None:
    a = write_trace(tmp_path / "a.json", [1, 0])
    b = write_trace(tmp_path / "b.json", [0, 1])
    market = build_market(LocalSettings().with_options({"trace": {"local-a": str(a), "local-b": str(b)}}))
    assert market.available("local-a", 0.0) and not market.available("local-b", 0.0)
    assert market.next_available("local-b", 0.0) == 10.0


def test_trace_without_unavailability_or_beyond_horizon_never_reclaims(tmp_path: Path) -> None:
    market = build_market(LocalSettings(availability="trace", trace=str(write_trace(tmp_path / "a.json", [1, 2]))))
    assert market.next_unavailable("local-a", 0.0) is None
    late = write_trace(tmp_path / "late.json", [1] * 40 + [0], gap=86400.0)
    market = build_market(LocalSettings(availability="trace", trace=str(late)))
    assert MARKET_HORIZON_SECONDS < 40 * 86400.0
    assert market.next_unavailable("local-a", 0.0) is None


def check_against_manifest(root: Path, name: str) -> None:
    """The local provider reads `name` under the trace data `root` as its manifest.csv describes it."""
    with open(root / "manifest.csv") as handle:
        row = next(r for r in csv.DictReader(handle) if r["file"] == name)
    trace = load_trace(root / name)
    assert trace.gap_seconds == float(row["gap_seconds"])
    assert len(trace.available) == int(row["ticks"])
    assert sum(trace.available) / len(trace.available) == pytest.approx(float(row["frac_all_N_available"]),
                                                                        abs=1e-3)


def test_reads_a_public_trace_as_the_manifest_describes() -> None:
    root = traces_dir()  # $ORCH_TRACES_DIR, as every other trace-based test finds the data
    if not (root / "manifest.csv").is_file():
        data_missing(f"public spot traces not present under {root} (set ORCH_TRACES_DIR)")
    check_against_manifest(root, PUBLIC_ONE_NODE)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot be read"),
        ("{not json", "not valid JSON"),
        ("[1, 0]", "must be a JSON object"),
        ('{"data": [1, 0]}', "metadata.gap_seconds is missing"),
        ('{"metadata": {"gap_seconds": 0}, "data": [1]}', "gap_seconds must be greater than 0"),
        ('{"metadata": {"gap_seconds": 60}, "data": []}', "'data' must be a non-empty list"),
        ('{"metadata": {"gap_seconds": 60}, "data": [1, "x"]}', "data[1] must be a count"),
        ('{"metadata": {"gap_seconds": 60}, "data": [1, -1]}', "data[1] must be a count"),
        ('{"metadata": {"gap_seconds": 60}, "data": [true]}', "data[0] must be a count"),
    ],
)
def test_bad_trace_file_is_a_clear_error(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TraceError) as info:
        build_market(LocalSettings(availability="trace", trace=str(path)))
    assert str(path) in str(info.value)
    assert problem in str(info.value)
    assert isinstance(info.value, PermanentError)


# --- settings --------------------------------------------------------------------------------------


def test_options_override_and_coerce() -> None:
    settings = LocalSettings().with_options({"notice_seconds": 2, "seed": 9, "zones": ["z1"],
                                             "mean_available_seconds": 60})
    assert settings.notice_seconds == 2.0 and isinstance(settings.notice_seconds, float)
    assert settings.seed == 9 and settings.zones == ("z1",)
    assert settings.mean_unavailable_seconds == 300.0  # untouched keys keep their defaults
    assert LocalSettings.from_dict(settings.to_dict()) == settings


def test_a_trace_option_selects_the_trace_model(tmp_path: Path) -> None:
    settings = LocalSettings().with_options({"trace": "t.json", "gap_seconds": 1})
    assert settings.availability == "trace"
    resolved = settings.resolved(tmp_path)
    assert resolved.trace == str(tmp_path / "t.json")
    assert resolved.resolved(Path("/elsewhere")).trace == str(tmp_path / "t.json")  # absolute stays
    per_zone = LocalSettings().with_options({"trace": {"local-a": "a.json", "local-b": "/b.json"}})
    assert per_zone.resolved(tmp_path).trace_for("local-a") == str(tmp_path / "a.json")
    assert per_zone.resolved(tmp_path).trace_for("local-b") == "/b.json"
    assert LocalSettings.from_dict(per_zone.to_dict()) == per_zone


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bogus": 1}, "placement.options.local.bogus: unknown setting"),
        ({"notice_seconds": "fast"}, "placement.options.local.notice_seconds: must be a number"),
        ({"notice_seconds": True}, "placement.options.local.notice_seconds: must be a number"),
        ({"notice_seconds": -1}, "placement.options.local.notice_seconds: must be at least 0"),
        ({"mean_available_seconds": 0}, "placement.options.local.mean_available_seconds: must be at least 1"),
        ({"mean_unavailable_seconds": float("inf")}, "mean_unavailable_seconds: must be a finite number"),
        ({"seed": 1.5}, "placement.options.local.seed: must be an integer"),
        ({"seed": False}, "placement.options.local.seed: must be an integer"),
        ({"availability": "sometimes"}, "placement.options.local.availability: must be one of random, trace"),
        ({"availability": "trace"}, "placement.options.local.trace: is required when availability = 'trace'"),
        ({"availability": "random", "trace": "t.json"}, "placement.options.local.trace: is set but availability"),
        ({"trace": {"local-a": "a.json"}}, "placement.options.local.trace: has no trace for zone(s) local-b"),
        ({"trace": 3}, "placement.options.local.trace: must be a file path or a table"),
        ({"gap_seconds": 0}, "placement.options.local.gap_seconds: must be at least 0.01"),
        ({"zones": "local-a"}, "placement.options.local.zones: must be a non-empty list"),
        ({"zones": []}, "placement.options.local.zones: must be a non-empty list"),
        ({"zones": ["a", ""]}, "placement.options.local.zones[1]: must be a non-empty string"),
        ({"zones": ["a", "a"]}, "placement.options.local.zones: names a zone twice"),
        ({"price_provider": "azure"}, "placement.options.local.price_provider: unknown provider 'azure'"),
        ({"price_region": "mars-1"}, "placement.options.local.price_region: aws has no prices in 'mars-1'"),
        ({"terminate_grace_seconds": "5"}, "placement.options.local.terminate_grace_seconds: must be a number"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, object], message: str) -> None:
    with pytest.raises(PermanentError) as info:
        LocalSettings().with_options(options)
    assert message in str(info.value)
    assert info.value.provider == "local"


def test_settings_built_in_code_are_validated_too() -> None:
    with pytest.raises(PermanentError, match="local settings: notice_seconds: must be at least 0"):
        LocalSettings(notice_seconds=-5)
    assert LocalSettings(price_provider="gcp", price_region="us-central1").price_region == "us-central1"
