"""The ledger bills what EC2 bills (moto over HTTP, the real reconciler and store).

An attempt replaced on an interruption notice is ended at once, at the deadline the notice gives, so
its replacement can start while it saves. EC2 may take the instance back before that deadline, and
then charges only to the moment it did: the loop must move the recorded end there when the listing
shows the instance terminated (`orchestrator.loop.ledger`). Before, 112 s that EC2 never charged were
billed in such a run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.cost import attempt_cost
from orchestrator.core.model import AttemptView, Outcome
from orchestrator.store import Store
from tests.aws_support import AwsWorld
from tests.test_aws_e2e import Loop, counting_job
from tests.test_aws_replacement import warn

pytestmark = pytest.mark.slow


@pytest.fixture
def loop(aws_world: AwsWorld, sqlite_store: Store, tmp_path: Path) -> Iterator[Loop]:
    with counting_job(aws_world, sqlite_store, tmp_path, name="bill") as running:
        yield running


def attempt(loop: Loop, number: int) -> AttemptView:
    return next(a for a in loop.store.attempts(loop.job_id) if a.number == number and not a.unbilled)


def test_an_attempt_replaced_on_a_notice_is_billed_to_the_moment_ec2_took_it_back(
    loop: Loop, aws_world: AwsWorld
) -> None:
    first = loop.launched(0)
    deadline = int(time.time()) + 115
    warn(aws_world, first.instance_id or "", deadline)
    loop.launched(1)
    assert attempt(loop, 0).ended_at == deadline, "ended at the notice's deadline, to let its successor start"

    time.sleep(1.1)  # EC2's times are whole seconds: the reclamation lands on a later one than the launch
    aws_world.client("ec2").terminate_instances(InstanceIds=[first.instance_id or ""])
    reclaimed_by = time.time()
    loop.until(lambda: (attempt(loop, 0).ended_at or deadline) < deadline, "the end to follow EC2's listing")

    old = attempt(loop, 0)
    assert old.outcome is Outcome.PREEMPTED and old.ended_at is not None
    assert reclaimed_by - 2.0 <= old.ended_at <= reclaimed_by + 1.0, (old.ended_at, reclaimed_by)
    assert attempt_cost(old, time.time()) < old.price_per_hour * (deadline - old.launched_at) / 3600.0
    events = [e for e in loop.store.events(loop.job_id) if e.kind == "billed_end"]
    assert len(events) == 1 and "before the notice's deadline" in events[0].message
    for _ in range(3):  # settled once: later listings of the same end change nothing
        loop.r.tick()
    assert attempt(loop, 0).ended_at == old.ended_at
    assert len([e for e in loop.store.events(loop.job_id) if e.kind == "billed_end"]) == 1
