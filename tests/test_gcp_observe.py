"""Listing, preemption and termination through the real compute_v1 REST client, against the GCE fake."""

from __future__ import annotations

import pytest

from providers.gcp.provider import FORGET_GONE_SECONDS, GcpProvider
from tests import gce_fake
from tests.gce_fake import GceFake, ManualClock
from vocab import EndReason, Instance, InstanceState, LaunchRequest, Market, Resources, TransientError

L4 = Resources(gpus=("L4",))


fake, clock, gcp = gce_fake.FIXTURES


def start(gcp: GcpProvider, attempt: str, *, zone: str = "us-central1-a", market: Market = Market.SPOT) -> Instance:
    offer = next(o for o in gcp.offers(L4, []) if o.zone == zone and o.market is market)
    return gcp.launch(
        LaunchRequest(
            job_id="job-1", task_id=f"task-{attempt}", attempt_id=attempt, attempt_number=0, offer=offer,
            command=("true",), env={}, checkpoint_uri="gs://ckpt/job-1", grace_seconds=30.0,
        )
    )


def by_attempt(instances: list[Instance]) -> dict[str | None, Instance]:
    return {i.attempt_id: i for i in instances}


def test_one_paginated_listing_finds_every_orch_instance(fake: GceFake, clock: ManualClock) -> None:
    gcp = gce_fake.provider(fake, clock, page_size=2)
    for n, zone in enumerate(["us-central1-a", "us-central1-b", "us-east1-c", "us-central1-a", "us-east1-b"]):
        start(gcp, f"a{n}", zone=zone)
    fake.instances[("us-central1-a", "someone-elses")] = {"name": "someone-elses", "labels": {"team": "x"}}
    fake.calls.clear()
    listed = by_attempt(gcp.instances())
    assert set(listed) == {"a0", "a1", "a2", "a3", "a4"}  # the foreign instance is filtered out
    assert listed["a2"].zone == "us-east1-c" and listed["a2"].region == "us-east1"
    assert all(i.state is InstanceState.RUNNING and i.reason is None for i in listed.values())
    assert all(i.launched_at is not None for i in listed.values())
    # Three pages of one listing; a quiet tick asks nothing about operations.
    assert fake.calls == {"aggregatedList": 3}


def test_a_reclaimed_instance_gce_deleted_is_reported_preempted(
    gcp: GcpProvider, fake: GceFake, clock: ManualClock
) -> None:
    inst = start(gcp, "a1")
    assert by_attempt(gcp.instances())["a1"].alive
    fake.preempt(inst.instance_id, delete=True)
    gone = by_attempt(gcp.instances())["a1"]
    assert (gone.state, gone.reason, gone.market) == (InstanceState.TERMINATED, EndReason.PREEMPTED, Market.SPOT)
    assert gone.ended_at is not None and gone.job_id == "job-1" and gone.instance_id == inst.instance_id
    assert fake.calls["operations.list"] == 1
    assert by_attempt(gcp.instances())["a1"].reason is EndReason.PREEMPTED  # reported again, looked up once
    assert fake.calls["operations.list"] == 1
    clock.advance(FORGET_GONE_SECONDS + 1)
    assert gcp.instances() == []


def test_a_reclaimed_instance_not_yet_deleted_is_preempted_too(gcp: GcpProvider, fake: GceFake) -> None:
    inst = start(gcp, "a1")
    fake.preempt(inst.instance_id, delete=False)
    seen = by_attempt(gcp.instances())["a1"]
    assert (seen.state, seen.reason) == (InstanceState.TERMINATED, EndReason.PREEMPTED)
    assert not seen.alive


def test_a_spot_instance_that_stopped_itself_exited(gcp: GcpProvider, fake: GceFake) -> None:
    inst = start(gcp, "a1")
    other = start(gcp, "a2")
    fake.preempt(other.instance_id, delete=True)  # a preemption of another instance in the same zone
    fake.stop_instance(inst.instance_id)
    listed = by_attempt(gcp.instances())
    assert (listed["a1"].state, listed["a1"].reason) == (InstanceState.TERMINATED, EndReason.EXITED)
    assert listed["a1"].ended_at is not None
    assert listed["a2"].reason is EndReason.PREEMPTED


def test_a_stopped_on_demand_instance_exited_without_asking_for_operations(gcp: GcpProvider, fake: GceFake) -> None:
    inst = start(gcp, "a1", market=Market.ON_DEMAND)
    fake.stop_instance(inst.instance_id)
    fake.calls.clear()
    assert by_attempt(gcp.instances())["a1"].reason is EndReason.EXITED
    assert fake.calls["operations.list"] == 0


def test_an_instance_deleted_by_someone_simply_disappears(gcp: GcpProvider, fake: GceFake) -> None:
    inst = start(gcp, "a1")
    gcp.instances()
    del fake.instances[("us-central1-a", inst.instance_id)]
    assert gcp.instances() == []  # the reconciler counts a vanished attempt as lost


def test_terminate_is_idempotent(gcp: GcpProvider, fake: GceFake) -> None:
    inst = start(gcp, "a1")
    gcp.terminate(inst)
    gcp.terminate(inst)  # 404: already gone is fine
    assert fake.instances == {} and fake.calls["delete"] == 2
    assert gcp.instances() == [] and fake.calls["operations.list"] == 0  # a deletion of ours is no mystery


def test_a_restarted_controller_sees_the_same_instances(gcp: GcpProvider, fake: GceFake, clock: ManualClock) -> None:
    start(gcp, "a1")
    fresh = gce_fake.provider(fake, clock)
    listed = by_attempt(fresh.instances())
    assert listed["a1"].task_id == "task-a1" and listed["a1"].instance_type == "g2-standard-4"
    assert fresh.notices() == []  # the agent reads GCE's warning from the metadata server


def test_listing_failures_are_retried_then_raised(gcp: GcpProvider, fake: GceFake) -> None:
    fake.fail_next("aggregatedList", 503, "backendError")
    assert gcp.instances() == []
    fake.fail_next("aggregatedList", 500, "backendError", times=5)
    with pytest.raises(TransientError):
        gcp.instances()
    assert fake.calls["aggregatedList"] == 2 + 3
