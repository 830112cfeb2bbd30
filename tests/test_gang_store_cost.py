"""A gang attempt in the store (SQLite and PostgreSQL) and in the money derived from it: every node
counts in spent, projected, on-demand only, lost to preemptions and the hours, from its own record."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from orchestrator.cli.render import status_detail
from orchestrator.core.cost import attempt_cost, attempt_lost, hourly_price, job_cost
from orchestrator.core.model import AttemptState, NodeSpan, Outcome, Transition, spans_of
from orchestrator.core.spec import GangSpec, JobSpec, ScheduleSpec
from orchestrator.core.status import job_status
from orchestrator.store import Store
from orchestrator.store.tables import JobRow
from vocab import Billing, Instance, InstanceState, Market, Offer, Resources

CK = "file:///tmp/orch-ck/gang"


def gang_spec(nodes: int = 4) -> JobSpec:
    return JobSpec(name="gang", command=("python", "train.py"), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=10.0), gang=GangSpec(nodes, nodes, False))


def offer(market: Market = Market.SPOT, price: float = 1.0) -> Offer:
    return Offer(provider="local", region="r", zone="r-a", instance_type="p3.2xlarge", market=market,
                 price_per_hour=price, gpu="V100", gpu_count=1, gpu_memory_gb=16.0, architecture="volta",
                 on_demand_price_per_hour=3.0, billing=Billing(1, 60))


def spans(launched: float, prices: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)) -> list[NodeSpan]:
    return [NodeSpan(r, f"i-{r}", "r-a", Market.SPOT, p, launched + r) for r, p in enumerate(prices)]


def test_a_gang_attempt_records_its_nodes_once_and_ends_each(store: Store) -> None:
    job_id = store.submit(gang_spec(), source="g.toml", now=0.0, checkpoint_uri=CK)
    (task,) = store.tasks(job_id)
    attempt = store.begin_attempt(task, offer(), 100.0, nodes=4)
    assert attempt.nodes == 4 and attempt.node_spans == ()
    def version() -> int:
        with store.session() as s:
            return int(s.execute(select(JobRow.version).where(JobRow.id == job_id)).scalar_one())

    before = version()
    assert store.record_attempt_nodes(attempt.id, spans(100.0)) == 4
    assert store.record_attempt_nodes(attempt.id, spans(100.0)) == 0  # a repeated launch adds nothing
    assert store.record_attempt_nodes(attempt.id, spans(170.0)) == 0  # nor one that dates the same nodes later
    assert version() == before + 1  # the loop's snapshot reads the job again
    assert [n.rank for n in store.attempt_nodes(attempt.id)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="has 4 nodes: no rank 4"):
        store.record_attempt_nodes(attempt.id, [NodeSpan(4, "i-4", "r-a", Market.SPOT, 1.0, 100.0)])
    with pytest.raises(ValueError, match="no attempt nope"):
        store.record_attempt_nodes("nope", spans(100.0))
    assert store.end_attempt_node(attempt.id, "i-2", 50.0)  # before its launch: clamped to it
    assert not store.end_attempt_node(attempt.id, "i-2", 900.0)  # already ended
    assert not store.end_attempt_node(attempt.id, "i-9", 900.0)
    read = store.attempt(attempt.id)
    assert read is not None and read.node_spans == store.attempt_nodes(attempt.id)
    assert read.node_spans[2].ended_at == 102.0 and read.node_spans[3].ended_at is None
    # Every read path attaches the spans: by job, by several jobs, by task.
    assert store.attempts(job_id) == [read]
    assert store.attempts_of([job_id]) == {job_id: [read]}
    assert store.task_with_attempts(task.id)[1] == [read]
    # An elastic gang growing back: a second span of rank 2, from its new launch.
    assert store.record_attempt_nodes(attempt.id, [NodeSpan(2, "i-2b", "r-a", Market.ON_DEMAND, 3.0, 500.0)]) == 1
    assert [(n.rank, n.instance_id) for n in store.attempt_nodes(attempt.id)] == [
        (0, "i-0"), (1, "i-1"), (2, "i-2"), (2, "i-2b"), (3, "i-3")]
    store.attempt_running(attempt, "i-0", 110.0)
    store.end_attempt(store.attempt(attempt.id), Outcome.PREEMPTED, 1000.0,  # type: ignore[arg-type]
                      task_transitions=[Transition.PREEMPTED], message="one node reclaimed")
    ended = store.attempt(attempt.id)
    assert ended is not None and ended.state is AttemptState.ENDED and len(ended.node_spans) == 5


def single(**kw: object) -> object:
    from orchestrator.core.model import AttemptView

    base = AttemptView(id="a", task_id="t", number=0, provider="local", region="r", zone="r-a",
                       instance_type="p3", market=Market.SPOT, price_per_hour=1.0, on_demand_price_per_hour=3.0,
                       billing_increment_s=1, billing_minimum_s=60, state=AttemptState.ENDED,
                       outcome=Outcome.PREEMPTED, instance_id="i-0", launched_at=0.0, started_at=0.0,
                       ended_at=3600.0, exit_code=None, progress_start=0.0, progress_end=None,
                       last_checkpoint_at=1800.0)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_every_node_is_billed_from_its_own_record() -> None:
    one = single()
    assert attempt_cost(one, 0.0) == pytest.approx(1.0)  # type: ignore[arg-type]
    # Four nodes not yet recorded: four times the node price over the attempt's time.
    four = single(nodes=4)
    assert attempt_cost(four, 0.0) == pytest.approx(4.0)  # type: ignore[arg-type]
    assert attempt_lost(four) == pytest.approx(2.0)  # type: ignore[arg-type]  # half an hour on four nodes
    # Recorded: node 3 is on-demand at $3/h and ended after 30 min; node 2 outlived the attempt by 10 min.
    recorded = single(nodes=4, node_spans=(
        NodeSpan(0, "i-0", "r-a", Market.SPOT, 1.0, 0.0),
        NodeSpan(1, "i-1", "r-a", Market.SPOT, 1.0, 0.0),
        NodeSpan(2, "i-2", "r-a", Market.SPOT, 1.0, 0.0, 4200.0),
        NodeSpan(3, "i-3", "r-a", Market.ON_DEMAND, 3.0, 0.0, 1800.0)))
    assert attempt_cost(recorded, 0.0) == pytest.approx(1 + 1 + 4200 / 3600 + 1.5)  # type: ignore[arg-type]
    # Lost: the half hour since the checkpoint on nodes 0-2; node 3 had ended by then.
    assert attempt_lost(recorded) == pytest.approx(1.5)  # type: ignore[arg-type]
    cost = job_cost([recorded], now=0.0, remaining_usd=0.0, on_demand_only_usd=0.0)  # type: ignore[list-item]
    assert cost.spot_usd == pytest.approx(3 + 600 / 3600) and cost.on_demand_usd == pytest.approx(1.5)
    assert cost.spot_hours == pytest.approx(3 + 600 / 3600) and cost.on_demand_hours == pytest.approx(0.5)
    assert cost.preemptions == 1
    # While it runs, it costs what its live nodes cost.
    running = single(state=AttemptState.RUNNING, ended_at=None, outcome=None, nodes=4,
                     node_spans=recorded.node_spans[:2])  # type: ignore[attr-defined]
    assert hourly_price(running) == 2.0  # type: ignore[arg-type]
    assert hourly_price(single(nodes=4)) == 4.0  # type: ignore[arg-type]
    launching = single(state=AttemptState.LAUNCHING, ended_at=None, outcome=None, nodes=4,
                       node_spans=recorded.node_spans)  # type: ignore[attr-defined]
    assert attempt_cost(launching, 7200.0) == 0.0  # type: ignore[arg-type]  # pods waiting: nothing billed


def test_status_projects_and_compares_the_whole_gang(store: Store) -> None:
    job_id = store.submit(gang_spec(4), source="g.toml", now=0.0, checkpoint_uri=CK)
    (task,) = store.tasks(job_id)
    attempt = store.begin_attempt(task, offer(), 0.0, nodes=4)
    store.record_attempt_nodes(attempt.id, [NodeSpan(r, f"i-{r}", "r-a", Market.SPOT, 1.0, 0.0) for r in range(4)])
    store.attempt_running(attempt, "i-0", 0.0)
    tasks, attempts = store.tasks(job_id), store.attempts(job_id)
    status = job_status(job_id=job_id, name="gang", spec=gang_spec(4), created_at=0.0, deadline_at=None,
                        tasks=tasks, attempts=attempts, offers=[offer(), offer(Market.ON_DEMAND, 3.0)], now=3600.0)
    cost = status.cost
    assert cost.spent_usd == pytest.approx(4.0)  # an hour on four $1 nodes
    overhead = gang_spec().schedule.restart_overhead_hours
    assert cost.projected_usd == pytest.approx(4.0 + (10.0 + overhead) * 4.0)
    assert cost.on_demand_only_usd == pytest.approx((10.0 + overhead) * 3.0 * 4)
    # `orch status` (text and JSON) shows the gang: its nodes, and money for all of them.
    text = status_detail(status, width=200, utc=True)
    assert "4 x p3.2xlarge" in text and "spent $4.00" in text
    assert status.to_dict()["attempts"][0]["nodes"] == 4 and status.to_dict()["cost"]["spent_usd"] == 4.0
    single_node = job_status(job_id=job_id, name="gang", spec=gang_spec(1), created_at=0.0, deadline_at=None,
                             tasks=tasks, attempts=[], offers=[offer(), offer(Market.ON_DEMAND, 3.0)], now=3600.0)
    assert single_node.cost.on_demand_only_usd == pytest.approx(cost.on_demand_only_usd / 4)


def test_the_spans_of_a_launched_gang_are_what_the_provider_returned() -> None:
    nodes = [Instance("aws", "r", "r-a", f"i-{r}", "p3", Market.SPOT, InstanceState.PENDING, "a", node_rank=r,
                      launched_at=50.0 if r else None) for r in range(2)]
    assert spans_of(nodes, 0.9, 60.0) == (NodeSpan(0, "i-0", "r-a", Market.SPOT, 0.9, 60.0),
                                          NodeSpan(1, "i-1", "r-a", Market.SPOT, 0.9, 50.0))


def test_a_node_the_reaper_stopped_is_billed_to_then(store: Store) -> None:
    """A node recorded stopped whose stop never reached the cloud (the controller died in between: harness
    seed 1320) ran on until the reaper terminated it: its end moves to then, later only."""
    job_id = store.submit(gang_spec(), source="g.toml", now=0.0, checkpoint_uri=CK)
    (task,) = store.tasks(job_id)
    attempt = store.begin_attempt(task, offer(), 100.0, nodes=4)
    store.record_attempt_nodes(attempt.id, spans(100.0))
    assert store.end_attempt_node(attempt.id, "i-0", 900.0)  # the head exited: the cloud's end
    assert store.end_attempt_node(attempt.id, "i-1", 1000.0)  # recorded when the loop asked it to stop
    assert store.end_attempt_node(attempt.id, "i-3", 1200.0)
    assert store.reap_node_end(attempt.id, "i-1", 1060.0)  # it was still running: reaped at 1,060
    assert store.reap_node_end(attempt.id, "i-2", 1060.0)  # an open span is closed there
    assert not store.reap_node_end(attempt.id, "i-3", 1060.0)  # never earlier than an end recorded
    assert not store.reap_node_end(attempt.id, "i-9", 1060.0)
    ends = {n.instance_id: n.ended_at for n in store.attempt_nodes(attempt.id)}
    assert ends == {"i-0": 900.0, "i-1": 1060.0, "i-2": 1060.0, "i-3": 1200.0}


def _listed(attempt_id: str, instance_id: str, ended_at: float | None, rank: int) -> Instance:
    return Instance("local", "r", "r-a", instance_id, "p3.2xlarge", Market.SPOT,
                    InstanceState.TERMINATED if ended_at is not None else InstanceState.RUNNING, attempt_id,
                    launched_at=100.0, ended_at=ended_at, node_rank=rank)


def _ended_gang(store: Store, ended_at: float, outcome: Outcome = Outcome.SUCCEEDED) -> str:
    job_id = store.submit(gang_spec(), source="g.toml", now=0.0, checkpoint_uri=CK)
    (task,) = store.tasks(job_id)
    attempt = store.begin_attempt(task, offer(), 100.0, nodes=4)
    store.record_attempt_nodes(attempt.id, [NodeSpan(r, f"i-{r}", "r-a", Market.SPOT, 1.0, 100.0) for r in range(4)])
    store.attempt_running(attempt, "i-0", 110.0)
    transition = Transition.SUCCEED if outcome is Outcome.SUCCEEDED else Transition.PREEMPTED
    store.end_attempt(store.attempt(attempt.id), outcome, ended_at,  # type: ignore[arg-type]
                      task_transitions=[transition], message="ended")
    return attempt.id


def test_the_reaper_bills_a_gang_node_and_leaves_the_others_where_they_ended(store: Store) -> None:
    """Harness seed 4269: a gang succeeded at its head's exit and the controller died before recording the
    nodes' ends; the reaper stopped the other three later. Each reaped node is billed to the reaping; the
    head, which had exited, to the attempt's end, not to the reaping too."""
    from orchestrator.loop.ledger import reaped

    aid = _ended_gang(store, 1000.0)
    before = attempt_cost(store.attempt(aid), 5000.0)  # type: ignore[arg-type]
    for r in (1, 2, 3):
        reaped(store, store.attempt(aid), f"i-{r}", 1077.0)  # type: ignore[arg-type]
    after = store.attempt(aid)
    assert after is not None and after.ended_at == 1000.0
    assert [n.ended_at for n in after.node_spans] == [None, 1077.0, 1077.0, 1077.0]
    assert attempt_cost(after, 5000.0) - before == pytest.approx(3 * 77.0 / 3600.0)  # the three reaped nodes' run-on


def test_a_gang_node_left_open_is_closed_at_the_clouds_earlier_end(store: Store) -> None:
    """A gang attempt ended on a guess (lost at the tick that missed it) with its nodes' spans still open is
    billed to that guess; the listing's earlier end for a node closes that node's span there, and a later
    one changes nothing (never stretch a bill)."""
    from orchestrator.loop.ledger import settle_ends

    aid = _ended_gang(store, 1000.0, Outcome.LOST)
    a = store.attempt(aid)
    assert a is not None
    listed = [_listed(aid, "i-0", 940.0, 0), _listed(aid, "i-1", 1200.0, 1), _listed(aid, "i-2", None, 2)]
    assert settle_ends(store, listed, {aid: a}, 1300.0) == [aid]
    after = store.attempt(aid)
    assert after is not None and [n.ended_at for n in after.node_spans] == [940.0, None, None, None]
    assert settle_ends(store, listed, {aid: after}, 1400.0) == []
