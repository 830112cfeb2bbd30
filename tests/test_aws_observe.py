"""Observing and terminating EC2 instances (moto over HTTP): pagination, end reasons, idempotency."""

from __future__ import annotations

import pytest

from providers.aws.observe import end_reason, ended_at
from providers.base import LogSource
from tests.aws_support import OTHER_REGION, REGION, AwsWorld, moto_instance, preempt
from vocab import EndReason, Instance, InstanceState, LaunchRequest, Market, PermanentError, Resources


def launch(world: AwsWorld, attempt: str, market: Market = Market.SPOT, region: str = REGION) -> Instance:
    offers = world.provider.offers(Resources(gpus=("A10G",)), [region])
    offer = next(o for o in offers if o.instance_type == "g5.xlarge" and o.market is market)
    return world.provider.launch(
        LaunchRequest(
            job_id="job-1",
            task_id=f"task-{attempt}",
            attempt_id=attempt,
            attempt_number=0,
            offer=offer,
            command=("true",),
            env={},
            checkpoint_uri="s3://b/p",
            grace_seconds=120.0,
        )
    )


def by_attempt(world: AwsWorld) -> dict[str | None, Instance]:
    return {i.attempt_id: i for i in world.provider.instances()}


def test_listing_walks_every_page_of_every_region_once(aws_world: AwsWorld) -> None:
    launched = {launch(aws_world, f"att-{n}").instance_id for n in range(7)}
    launched.add(launch(aws_world, "att-west", region=OTHER_REGION).instance_id)
    aws_world.faults.calls.clear()
    seen = aws_world.provider.instances()
    assert {i.instance_id for i in seen} == launched
    # page size 5: two pages in us-east-1, one in us-west-2, and nothing else.
    assert dict(aws_world.faults.calls) == {"DescribeInstances": 3}
    west = next(i for i in seen if i.attempt_id == "att-west")
    assert west.region == OTHER_REGION and west.zone is not None and west.zone.startswith(OTHER_REGION)


def test_instances_without_orch_tags_are_not_listed(aws_world: AwsWorld) -> None:
    aws_world.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro")
    ours = launch(aws_world, "att-1")
    assert [i.instance_id for i in aws_world.provider.instances()] == [ours.instance_id]


def test_a_spot_reclamation_reads_as_preempted(aws_world: AwsWorld) -> None:
    inst = launch(aws_world, "att-1")
    live = by_attempt(aws_world)["att-1"]
    assert live.state is InstanceState.RUNNING and live.reason is None and live.launched_at is not None
    preempt(inst.instance_id)
    ended = by_attempt(aws_world)["att-1"]
    assert ended.state is InstanceState.TERMINATED and ended.reason is EndReason.PREEMPTED
    assert ended.ended_at is not None and ended.exit_code is None


def test_termination_is_terminated_and_idempotent(aws_world: AwsWorld) -> None:
    inst = launch(aws_world, "att-1", Market.ON_DEMAND)
    aws_world.provider.terminate(inst)
    aws_world.provider.terminate(inst)  # again: already terminated is fine
    ended = by_attempt(aws_world)["att-1"]
    assert ended.state is InstanceState.TERMINATED and ended.reason is EndReason.TERMINATED
    assert ended.market is Market.ON_DEMAND


def test_terminating_an_unknown_instance_is_fine(aws_world: AwsWorld) -> None:
    inst = launch(aws_world, "att-1")
    gone = Instance("aws", REGION, None, "i-0000000000000dead", "g5.xlarge", Market.SPOT, InstanceState.RUNNING, "x")
    aws_world.provider.terminate(gone)
    assert by_attempt(aws_world)["att-1"].instance_id == inst.instance_id


def test_termination_survives_throttling(aws_world: AwsWorld) -> None:
    inst = launch(aws_world, "att-1")
    aws_world.faults.fail("TerminateInstances", "RequestLimitExceeded", times=2, status=503)
    aws_world.provider.terminate(inst)
    assert aws_world.faults.calls["TerminateInstances"] == 3
    assert by_attempt(aws_world)["att-1"].state is InstanceState.TERMINATED


def test_an_instance_that_shut_itself_down_exited(aws_world: AwsWorld) -> None:
    inst = launch(aws_world, "att-1")
    preempt(inst.instance_id, reason="Client.InstanceInitiatedShutdown")
    ended = by_attempt(aws_world)["att-1"]
    assert ended.reason is EndReason.EXITED and ended.exit_code is None  # the heartbeat has the exit code


def test_listing_errors_are_translated(aws_world: AwsWorld) -> None:
    aws_world.faults.fail("DescribeInstances", "UnauthorizedOperation", status=403)
    with pytest.raises(PermanentError, match="UnauthorizedOperation"):
        aws_world.provider.instances()


@pytest.mark.parametrize(
    ("state", "code", "spot_status", "expected"),
    [
        ("running", "", None, None),
        ("pending", "", None, None),
        ("shutting-down", "", None, None),
        ("terminated", "Server.SpotInstanceTermination", None, EndReason.PREEMPTED),
        ("terminated", "", "instance-terminated-by-price", EndReason.PREEMPTED),
        ("terminated", "", "instance-terminated-no-capacity", EndReason.PREEMPTED),
        ("stopped", "", "instance-stopped-no-capacity", EndReason.PREEMPTED),
        ("terminated", "Client.UserInitiatedShutdown", "instance-terminated-by-user", EndReason.TERMINATED),
        ("terminated", "Client.InstanceInitiatedShutdown", None, EndReason.EXITED),
        ("stopped", "", None, EndReason.EXITED),
        ("terminated", "Server.InsufficientInstanceCapacity", None, EndReason.FAILED_TO_START),
        ("terminated", "Client.VolumeLimitExceeded", None, EndReason.FAILED_TO_START),
    ],
)
def test_end_reasons(state: str, code: str, spot_status: str | None, expected: EndReason | None) -> None:
    assert end_reason(state, code, spot_status) is expected


def test_end_time_is_read_from_the_transition_reason() -> None:
    assert ended_at("User initiated (2026-03-01 12:00:00 GMT)") == 1772366400.0
    assert ended_at("") is None


def test_moto_backend_is_the_one_the_provider_sees(aws_world: AwsWorld) -> None:
    # The preemption helper edits moto's in-process backend; prove it is the server's own state.
    inst = launch(aws_world, "att-1")
    assert moto_instance(inst.instance_id).instance_type == "g5.xlarge"


def test_console_output_is_the_log(aws_world: AwsWorld) -> None:
    inst = launch(aws_world, "att-1")
    assert isinstance(aws_world.provider, LogSource)
    text = aws_world.provider.read_log(inst)
    assert text and text == aws_world.client("ec2").get_console_output(InstanceId=inst.instance_id)["Output"]
    gone = Instance("aws", REGION, None, "i-0000000000000dead", "g5.xlarge", Market.SPOT, InstanceState.RUNNING, "x")
    assert aws_world.provider.read_log(gone) == ""
