"""The local provider's market over several zones and regions from a folder of aligned traces (the
format `orch simulate --traces` reads, ../shared/data/multi-region/): zones, traces and regions come
from the folder's files, and the real loop places a multi-zone job in the folder's regions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator.core.model import TaskState
from orchestrator.store import Store
from providers.local.market import TraceError, build_market, expand_folder
from providers.local.records import MarketFiles
from providers.local.settings import LocalSettings
from tests import local_support
from tests.local_support import SLEEPER, FakeClock, make, only
from tests.loop_support import job_toml, python_command, reconciler, run_until, submit
from tests.shared_data import data_missing
from vocab import CapacityError, Instance, LaunchRequest, Market, Offer, PermanentError, Resources

home, agent = local_support.home, local_support.agent
V100 = Resources(gpus=("V100",))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi-region"


def _folder(path: Path, zones: dict[str, list[int]], gap: float = 600.0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for zone, data in zones.items():
        (path / f"{zone}_v100_1.json").write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return path


def _spot(offers: list[Offer], zone: str) -> Offer:
    return next(o for o in offers if o.market is Market.SPOT and o.zone == zone and o.instance_type == "p3.2xlarge")


def test_a_folder_is_one_zone_per_file_in_the_region_its_name_says(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "t", {"us-east4-a": [0, 1], "us-east4-b": [1, 1], "europe-west1-c": [1, 0]})
    settings = expand_folder(LocalSettings().with_options({"traces": str(folder)}))
    assert settings.zones == ("europe-west1-c", "us-east4-a", "us-east4-b")
    assert settings.traces is None and settings.availability == "trace"
    assert dict(settings.trace or ()) == {z: str(folder / f"{z}_v100_1.json") for z in settings.zones}
    assert [settings.region_of(z) for z in settings.zones] == ["europe-west1", "us-east4", "us-east4"]
    market = build_market(settings)
    assert [market.available(z, 0.0) for z in settings.zones] == [True, False, True]
    # The default market keeps its zones in region `local`.
    assert LocalSettings().region_of("local-a") == "local"


def test_offers_and_launches_carry_each_zones_region(home: Path, agent: list[str], tmp_path: Path) -> None:
    folder = _folder(tmp_path / "t", {"us-east4-a": [0] * 4, "us-west1-b": [1] * 4}, gap=600.0)
    clock = FakeClock()
    provider = make(home, agent, clock)
    options = {"traces": str(folder), "notice_seconds": 1}
    offers = provider.offers(V100, (), job_id="job-1", options=options)
    assert {(o.zone, o.region) for o in offers} == {("us-east4-a", "us-east4"), ("us-west1-b", "us-west1")}
    assert _spot(offers, "us-east4-a").available is False and _spot(offers, "us-west1-b").available is True
    only_west = provider.offers(V100, ("us-west1",), job_id="job-1", options=options)
    assert {o.zone for o in only_west} == {"us-west1-b"}
    assert provider.offers(V100, ("local",), job_id="job-1", options=options) == []

    def launch(zone: str, attempt: str) -> Instance:
        return provider.launch(LaunchRequest(
            job_id="job-1", task_id="job-1-0", attempt_id=attempt, attempt_number=0, offer=_spot(offers, zone),
            command=SLEEPER, env={}, checkpoint_uri="file:///tmp/ckpt", grace_seconds=1.0, options=options))

    with pytest.raises(CapacityError, match="us-east4-a"):
        launch("us-east4-a", "att-1")
    instance = launch("us-west1-b", "att-2")
    listed = only(provider)
    assert (listed.zone, listed.region) == ("us-west1-b", "us-west1") and listed.instance_id == instance.instance_id
    # The job's market records the folder's files, zone by zone: a restart reads the same zones.
    stored = MarketFiles(home).load("job-1")
    assert stored is not None and stored.settings.zones == ("us-east4-a", "us-west1-b")
    assert stored.settings.region_names == "from-zones"
    # An offer whose region is not its zone's is refused, not launched.
    wrong = dataclasses.replace(_spot(offers, "us-west1-b"), region="local")
    with pytest.raises(PermanentError, match="is in region us-west1"):
        provider.launch(LaunchRequest(
            job_id="job-1", task_id="job-1-0", attempt_id="att-3", attempt_number=1, offer=wrong,
            command=SLEEPER, env={}, checkpoint_uri="file:///tmp/ckpt", grace_seconds=1.0, options=options))
    provider.terminate(listed)


@pytest.mark.parametrize(("files", "problem"), [
    ({"us-east4-a": ([1, 0], 600.0), "us-east4-b": ([1, 0, 1], 600.0)}, "not aligned"),
    ({"us-east4-a": ([1, 0], 600.0), "us-east4-b": ([1, 0], 300.0)}, "not aligned"),
    ({}, "holds no .json trace files"),
])
def test_a_folder_that_cannot_be_one_market_is_refused(tmp_path: Path, files: dict[str, tuple[list[int], float]],
                                                     problem: str) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    for zone, (data, gap) in files.items():
        _folder(folder, {zone: data}, gap=gap)
    with pytest.raises(TraceError, match=problem):
        build_market(LocalSettings().with_options({"traces": str(folder)}))


def test_folder_settings_that_contradict_are_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "t", {"us-east4-a": [1]})
    with pytest.raises(PermanentError, match="narrow them with \\[placement\\] regions"):
        LocalSettings().with_options({"traces": str(folder), "zones": ["a"]})
    with pytest.raises(PermanentError, match="availability is 'random'"):
        LocalSettings().with_options({"traces": str(folder), "availability": "random"})
    with pytest.raises(PermanentError, match="both set"):
        LocalSettings(availability="trace", traces=str(folder), trace="x.json")
    with pytest.raises(PermanentError, match="region_names: must be one of"):
        LocalSettings().with_options({"region_names": "everywhere"})
    with pytest.raises(TraceError, match="second trace for zone"):
        (folder / "us-east4-a_other.json").write_text((folder / "us-east4-a_v100_1.json").read_text())
        build_market(LocalSettings().with_options({"traces": str(folder)}))
    with pytest.raises(TraceError, match="not a folder"):
        build_market(LocalSettings().with_options({"traces": str(tmp_path / "missing")}))


def test_the_public_multi_region_folders_are_markets(tmp_path: Path) -> None:
    if not SHARED.is_dir():
        data_missing(f"the public multi-region traces are not at {SHARED}")
    gcp = build_market(LocalSettings().with_options({"traces": str(SHARED / "gcp-h100-2025-10-wk1")}))
    assert len(gcp.settings.zones) == 13
    assert {gcp.settings.region_of(z) for z in gcp.settings.zones} >= {"us-central1", "europe-west3", "asia-south2"}
    aws = build_market(LocalSettings().with_options({"traces": str(SHARED / "aws-v100-4node-2023-08")}))
    assert [aws.settings.region_of(z) for z in aws.settings.zones] == ["us-east-1", "us-east-2", "us-west-2"]


@pytest.mark.slow
def test_the_loop_runs_a_job_in_the_folders_zones(tmp_path: Path, orch_home: Path, sqlite_store: Store) -> None:
    """Spot only in us-west1-b: the real loop (multi-zone policy, local provider, agent) runs the job there,
    in region us-west1, and never launches in the zone whose trace is empty."""
    _folder(tmp_path / "traces", {"us-east4-a": [0] * 50, "us-west1-b": [1] * 50}, gap=60.0)
    path = job_toml(tmp_path, command=python_command("print('done')"),
                    local={"traces": "traces", "notice_seconds": 1})
    job_id = submit(sqlite_store, path, orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=60)
    assert sqlite_store.tasks(job_id)[0].state is TaskState.SUCCEEDED, [e.message for e in sqlite_store.events(job_id)]
    billed = [(a.zone, a.region, a.market) for a in sqlite_store.attempts(job_id) if not a.unbilled]
    assert billed == [("us-west1-b", "us-west1", Market.SPOT)]
