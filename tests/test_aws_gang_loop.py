"""A gang job on `aws` through the real loop: the reconciler and SQLite store against moto over HTTP.

The loop launches the gang as one RunInstances of N in a cluster placement group; EC2 (the test)
reclaims one node; the loop must stop the other two, end the attempt as preempted, launch a new gang,
and delete the first gang's placement group once its nodes have left it. No node boots here: the
test plays EC2, every decision is the loop's.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.core.cost import attempt_cost
from orchestrator.core.model import Outcome
from orchestrator.job_files import load_spec
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from providers.aws.gang import group_name
from tests import aws_placement
from tests.aws_support import REGION, AwsWorld, preempt
from tests.test_aws_e2e import JOB_TOML, Loop
from tests.test_aws_gang import states

pytestmark = pytest.mark.slow


def test_the_loop_launches_a_gang_in_one_call_and_replaces_it_whole_when_one_node_is_reclaimed(
        aws_world: AwsWorld, sqlite_store: Store, tmp_path: Path) -> None:
    bucket = f"orch-gang-{uuid.uuid4().hex[:8]}"
    aws_world.client("s3").create_bucket(Bucket=bucket)
    path = tmp_path / "job.toml"
    text = JOB_TOML.format(command='["sleep", "600"]', workdir=tmp_path, uri=f"s3://{bucket}/g", region=REGION)
    path.write_text(text.replace('gpu = "A10G"\n', 'gpu = "A10G"\nnodes = 3\n'))
    now = aws_world.clock.now()
    spec = load_spec(path, submitted_at=now)
    job_id = sqlite_store.submit(spec, source=str(path), now=now, checkpoint_uri=spec.checkpoint.uri or "")
    loop = Loop(Reconciler(sqlite_store, {"aws": aws_world.provider}, aws_world.clock, owner="g", tick_seconds=0.1),
                sqlite_store, job_id)

    first = loop.launched(0)
    assert aws_world.faults.calls["RunInstances"] == 1  # the whole gang in one call
    assert first.nodes == 3 and sorted(s.rank for s in first.node_spans) == [0, 1, 2]
    nodes = [s.instance_id or "" for s in sorted(first.node_spans, key=lambda s: s.rank)]
    assert first.instance_id == nodes[0]
    assert group_name(first.id) in aws_placement.groups(REGION)

    aws_world.clock.advance(600)  # ten minutes of the gang running
    preempt(nodes[2])  # EC2 reclaims one node of three
    second = loop.launched(1)
    ended = next(a for a in sqlite_store.attempts(job_id) if a.id == first.id)
    assert ended.outcome is Outcome.PREEMPTED
    assert set(states(aws_world, nodes[:2]).values()) <= {"shutting-down", "terminated"}  # stopped whole
    assert second.nodes == 3 and len(second.node_spans) == 3 and second.instance_id not in nodes
    assert aws_world.faults.calls["RunInstances"] == 2
    loop.until(lambda: group_name(first.id) not in aws_placement.groups(REGION), "the first gang's group to go")
    assert group_name(second.id) in aws_placement.groups(REGION)
    # Every node of the first gang is billed to its own end: the reclaimed one to the cloud's, the two the
    # loop stopped to when it stopped them (ten minutes later on this clock).
    by_rank = {span.rank: span for span in ended.node_spans}
    assert by_rank[2].ended_at == pytest.approx(ended.ended_at)
    assert all((by_rank[r].ended_at or 0.0) > (ended.ended_at or 0.0) + 500 for r in (0, 1))
    now = aws_world.clock.now()
    assert attempt_cost(ended, now) > 2 * attempt_cost(replace(ended, nodes=1, node_spans=()), now)
