"""JobTotals (per-task shares of the budget sums) equals the from-scratch projection after any updates."""

from __future__ import annotations

import dataclasses
import random

import pytest

from orchestrator.core.cost import attempt_cost, hourly_price
from orchestrator.core.model import AttemptState, AttemptView, Outcome, TaskState, TaskView
from orchestrator.core.spec import parse_spec
from orchestrator.core.status import measured_overhead_hours, remaining_usd
from orchestrator.core.totals import JobTotals
from vocab import Market

SHARDS = 12
SPEC = parse_spec(f"""
name = "t"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 24
budget_usd = 500
[array]
count = {SHARDS}
shard_size = 1
""", source="job.toml", submitted_at=0.0)


def _task(i: int, state: TaskState, progress: float) -> TaskView:
    fields = {f.name: None for f in dataclasses.fields(TaskView)}
    fields.update(id=f"t{i}", job_id="j", index=i, state=state, progress_committed=progress,
                  progress_reported=progress, item_start=i, item_end=i + 1, checkpoint_uri="file:///x", failures=0)
    return TaskView(**fields)  # type: ignore[arg-type]


def _attempt(task_id: str, n: int, rng: random.Random) -> AttemptView:
    fields = {f.name: None for f in dataclasses.fields(AttemptView)}
    launched = rng.uniform(0, 3600)
    ended = rng.random() < 0.6
    fields.update(id=f"{task_id}-a{n}", task_id=task_id, number=n, provider="sim", region="r", zone="z",
                  instance_type="p3", market=Market.SPOT, price_per_hour=rng.choice((0.9, 1.2, 3.06)),
                  on_demand_price_per_hour=3.06, billing_increment_s=1, billing_minimum_s=60,
                  state=AttemptState.ENDED if ended else AttemptState.RUNNING,
                  outcome=Outcome.PREEMPTED if ended else None, launched_at=launched, started_at=launched,
                  ended_at=launched + 600 if ended else None, progress_start=0.0, unbilled=False,
                  productive_at=launched + rng.uniform(60, 600) if rng.random() < 0.7 else None,
                  nodes=rng.choice((1, 1, 4)), node_spans=())  # gangs too: every node counts in both sums
    return AttemptView(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(5))
def test_the_kept_sums_equal_the_projection_after_random_updates(seed: int) -> None:
    rng = random.Random(seed)
    now = 7200.0
    states = (TaskState.PENDING, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.LAUNCHING)
    tasks = {f"t{i}": _task(i, rng.choice(states), rng.random()) for i in range(SHARDS)}
    attempts = {tid: [_attempt(tid, n, rng) for n in range(rng.randint(0, 3))] for tid in tasks}
    totals = JobTotals.of(SPEC, tasks.values(), lambda tid: attempts[tid], idle=0.92, now=now)
    for _ in range(40):
        tid = rng.choice(list(tasks))
        tasks[tid] = _task(int(tid[1:]), rng.choice(states), rng.random())
        if rng.random() < 0.5:
            attempts[tid] = [*attempts[tid], _attempt(tid, len(attempts[tid]), rng)]
        totals.update(tasks[tid], attempts[tid])
        every = [a for tid2 in tasks for a in attempts[tid2]]
        overhead = measured_overhead_hours(SPEC, every)
        assert totals.spent == pytest.approx(sum(attempt_cost(a, now) for a in every))
        assert totals.overhead_h() == pytest.approx(overhead)
        skip = rng.choice(list(tasks))
        assert totals.others_usd(skip) == pytest.approx(
            remaining_usd(SPEC, list(tasks.values()), every, idle=0.92, overhead_h=overhead, skip=skip))
        assert totals.others_hourly(skip) == pytest.approx(sum(
            hourly_price(a) for a in every if a.task_id != skip and a.state is not AttemptState.ENDED))
