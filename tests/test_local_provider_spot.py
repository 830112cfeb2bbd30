"""The local provider's simulated spot market, with real processes: reclamation with notice, capacity
errors while spot is unavailable, catalog prices, and a job's market fixed by its first launch.

The agent is the stand-in of tests/local_support.py; the `home` fixture checks no process is left.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers.catalog import load_catalog
from providers.local.records import InstanceDir
from tests import local_support
from tests.local_support import (
    BOTH_AGENTS,
    SAVER,
    STUBBORN,
    FakeClock,
    make,
    only,
    procs,
    record_and_pid,
    request,
    wait_for,
)
from vocab import CapacityError, EndReason, InstanceState, Market, PermanentError, Resources

# The shared fixtures, bound here so pytest finds them for this module's tests.
home, agent = local_support.home, local_support.agent


def write_trace(path: Path, data: list[int], gap: float) -> str:
    path.write_text(json.dumps({"metadata": {"gap_seconds": gap}, "data": data}))
    return str(path)


# --- spot reclamation ------------------------------------------------------------------------------


@BOTH_AGENTS
def test_spot_reclaimed_with_notice_and_the_job_saves(home: Path, agent: list[str], tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.json", [1, 0], gap=0.3)
    provider = make(home, agent)
    req = request(provider, SAVER, market=Market.SPOT, options={"trace": trace, "notice_seconds": 10})
    instance = provider.launch(req)
    idir = InstanceDir(home / "instances", instance.instance_id)
    wait_for(lambda: bool(provider.notices()))
    [notice] = provider.notices()
    assert notice.instance_id == instance.instance_id and notice.deadline == pytest.approx(notice.at + 10)
    written = json.loads(idir.notice_path.read_text())
    assert written == {"kind": "interruption", "at": notice.at, "deadline": notice.deadline}
    wait_for(lambda: only(provider).state is InstanceState.TERMINATED)
    ended = only(provider)
    assert ended.reason is EndReason.PREEMPTED and ended.exit_code == 0
    assert "saved" in provider.read_log(ended)
    assert provider.notices() == []


@BOTH_AGENTS
def test_spot_killed_at_the_notice_deadline(home: Path, agent: list[str], tmp_path: Path) -> None:
    clock = FakeClock()
    trace = write_trace(tmp_path / "trace.json", [1, 1, 0], gap=60.0)
    provider = make(home, agent, clock)
    instance = provider.launch(request(provider, STUBBORN, market=Market.SPOT, options={"trace": trace}))
    record, _ = record_and_pid(home, instance)
    assert record.reclaim_at == pytest.approx(clock.t + 120.0)
    wait_for(lambda: "ready" in provider.read_log(instance))  # the job ignores SIGTERM from now on
    clock.t += 119.0
    assert provider.notices() == []
    clock.t += 1.0
    [notice] = provider.notices()
    assert notice.deadline == pytest.approx(clock.t + 120.0)  # default notice: two minutes
    clock.t += 119.0
    assert only(provider).state is InstanceState.RUNNING
    assert len(procs(record)) == 2
    clock.t += 1.0
    ended = only(provider)
    assert ended.state is InstanceState.TERMINATED and ended.reason is EndReason.PREEMPTED
    assert ended.ended_at == clock.t
    assert procs(record) == []


def test_spot_launch_while_unavailable_is_a_capacity_error(home: Path, agent: list[str], tmp_path: Path) -> None:
    clock = FakeClock()
    trace = write_trace(tmp_path / "trace.json", [0, 1, 1], gap=100.0)
    provider = make(home, agent, clock)
    req = request(provider, market=Market.SPOT, options={"trace": trace})
    with pytest.raises(CapacityError) as info:
        provider.launch(req)
    assert info.value.retry_after == pytest.approx(100.0)
    assert provider.instances() == []
    offers = provider.offers(Resources(gpus=("V100",)), (), job_id="job-1")
    assert {o.available for o in offers if o.market is Market.SPOT} == {False}
    clock.t += 100.0
    assert {o.available for o in provider.offers(Resources(), (), job_id="job-1")
            if o.market is Market.SPOT} == {True}
    instance = provider.launch(req)
    assert instance.state is InstanceState.RUNNING
    provider.terminate(instance)


def test_on_demand_ignores_the_market(home: Path, agent: list[str], tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.json", [0], gap=100.0)
    provider = make(home, agent, FakeClock())
    instance = provider.launch(request(provider, options={"trace": trace}))
    record = InstanceDir(home / "instances", instance.instance_id).load()
    assert record is not None and record.reclaim_at is None
    provider.terminate(instance)


# --- a job's market, prices, option errors ------------------------------------------------------


def test_job_market_is_fixed_by_the_first_launch(home: Path, agent: list[str]) -> None:
    clock = FakeClock()
    provider = make(home, agent, clock)
    epoch = clock.t
    first = provider.launch(request(provider, options={"zones": ["local-a", "z9"], "notice_seconds": 7}))
    stored = json.loads((home / "markets" / "job-1.json").read_text())
    assert stored["epoch"] == epoch and stored["settings"]["notice_seconds"] == 7.0
    clock.t += 50
    restarted = make(home, agent, clock)
    assert {o.zone for o in restarted.offers(Resources(), ("local",), job_id="job-1")} == {"local-a", "z9"}
    assert {o.zone for o in restarted.offers(Resources(), ("local",))} == {"local-a", "local-b"}
    second = restarted.launch(request(restarted, attempt="att-2", options={"notice_seconds": 99}))
    record = InstanceDir(home / "instances", second.instance_id).load()
    assert record is not None and record.notice_seconds == 7.0
    for instance in (first, second):
        restarted.terminate(instance)


def test_offers_use_catalog_prices_and_filter_regions(home: Path, agent: list[str]) -> None:
    provider = make(home, agent)
    offers = provider.offers(Resources(gpus=("V100",), gpu_count=1), ())
    p3 = load_catalog().get("aws", "p3.2xlarge")
    assert p3 is not None
    price = p3.region("us-east-1")
    assert price is not None
    spot = [o for o in offers if o.instance_type == "p3.2xlarge" and o.market is Market.SPOT]
    assert [o.zone for o in spot] == ["local-a", "local-b"]
    assert {(o.price_per_hour, o.on_demand_price_per_hour, o.available) for o in spot} == \
        {(price.spot, price.on_demand, True)}
    assert {o.gpu for o in offers} == {"V100"}
    assert provider.offers(Resources(), ("us-east-1",)) == []
    assert provider.offers(Resources(gpus=("H100",)), ("local", "us-east-1"))


def test_bad_options_and_traces_fail_the_launch_clearly(home: Path, agent: list[str], tmp_path: Path) -> None:
    provider = make(home, agent)
    with pytest.raises(PermanentError, match=r"placement\.options\.local\.notice_seconds"):
        provider.launch(request(provider, options={"notice_seconds": "soon"}))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PermanentError, match=r"bad\.json: not valid JSON"):
        provider.launch(request(provider, market=Market.SPOT, options={"trace": "bad.json"},
                                workdir=str(tmp_path)))
    assert not (home / "markets" / "job-1.json").exists()
    assert provider.instances() == []
