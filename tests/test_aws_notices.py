"""Early notices through EventBridge and SQS (moto over HTTP), and the setup that wires them."""

from __future__ import annotations

import json
import time

import pytest

from providers.aws.notices import ensure_notice_queue, parse_event
from tests.aws_support import REGION, AwsWorld
from vocab import Instance, LaunchRequest, Market, NoticeKind, Resources, TransientError


def launch(world: AwsWorld, attempt: str) -> Instance:
    offers = world.provider.offers(Resources(gpus=("A10G",)), [REGION])
    offer = next(o for o in offers if o.market is Market.SPOT)
    return world.provider.launch(LaunchRequest("job-1", "task-1", attempt, 0, offer, ("true",), {}, "s3://b/p", 120.0))


def emit(world: AwsWorld, detail_type: str, detail: dict[str, str]) -> None:
    """What EC2 does: put an event on the default bus; the rules route it to the queue."""
    reply = world.client("events").put_events(
        Entries=[{"Source": "aws.ec2", "DetailType": detail_type, "Detail": json.dumps(detail)}]
    )
    assert reply["FailedEntryCount"] == 0


def queued(world: AwsWorld) -> int:
    url = world.settings.region(REGION).notice_queue_url
    attrs = world.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_interruption_and_rebalance_notices_name_the_attempt(aws_world: AwsWorld) -> None:
    a, b = launch(aws_world, "att-a"), launch(aws_world, "att-b")
    before = time.time()
    emit(
        aws_world,
        "EC2 Spot Instance Interruption Warning",
        {"instance-id": a.instance_id, "instance-action": "terminate"},
    )
    emit(aws_world, "EC2 Instance Rebalance Recommendation", {"instance-id": b.instance_id})
    notices = aws_world.provider.notices()
    kinds = {(n.attempt_id, n.kind) for n in notices}
    assert kinds == {("att-a", NoticeKind.INTERRUPTION), ("att-b", NoticeKind.REBALANCE)}
    warning = next(n for n in notices if n.kind is NoticeKind.INTERRUPTION)
    assert warning.instance_id == a.instance_id and warning.provider == "aws"
    assert warning.deadline is not None and warning.deadline - warning.at == 120.0
    assert before - 2 <= warning.at <= time.time() + 1
    assert next(n for n in notices if n.kind is NoticeKind.REBALANCE).deadline is None
    assert queued(aws_world) == 0  # handled messages are deleted
    assert aws_world.provider.notices() == []


def test_foreign_instances_state_changes_and_junk_are_consumed_silently(aws_world: AwsWorld) -> None:
    ours = launch(aws_world, "att-a")
    foreign = aws_world.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    emit(aws_world, "EC2 Spot Instance Interruption Warning", {"instance-id": foreign["InstanceId"]})
    emit(aws_world, "EC2 Instance State-change Notification", {"instance-id": ours.instance_id, "state": "terminated"})
    emit(aws_world, "EC2 Spot Instance Interruption Warning", {"instance-id": "i-0000000000000dead"})
    url = aws_world.settings.region(REGION).notice_queue_url
    aws_world.client("sqs").send_message(QueueUrl=url, MessageBody="not json")
    assert queued(aws_world) == 4
    assert aws_world.provider.notices() == []
    assert queued(aws_world) == 0


def test_duplicate_warnings_make_one_notice(aws_world: AwsWorld) -> None:
    inst = launch(aws_world, "att-a")
    for _ in range(3):
        emit(aws_world, "EC2 Spot Instance Interruption Warning", {"instance-id": inst.instance_id})
    assert len(aws_world.provider.notices()) == 1


def test_messages_stay_queued_when_they_cannot_be_matched(aws_world: AwsWorld) -> None:
    inst = launch(aws_world, "att-a")
    emit(aws_world, "EC2 Spot Instance Interruption Warning", {"instance-id": inst.instance_id})
    aws_world.faults.fail("DescribeInstances", "Throttling", times=100, status=400)
    with pytest.raises(TransientError):
        aws_world.provider.notices()
    assert queued(aws_world) == 1  # not deleted: it comes back after the visibility timeout


def test_no_queue_means_no_calls(aws_world: AwsWorld) -> None:
    from dataclasses import replace

    from providers.aws.provider import AwsProvider

    regions = {name: replace(r, notice_queue_url=None) for name, r in aws_world.settings.regions.items()}
    quiet = AwsProvider(aws_world.clock, replace(aws_world.settings, regions=regions), client_factory=aws_world.factory)
    assert quiet.notices() == []
    assert sum(aws_world.faults.calls.values()) == 0


def test_setup_is_idempotent_and_routes_only_ec2_notices(aws_world: AwsWorld) -> None:
    first = ensure_notice_queue(REGION, client_factory=aws_world.factory)
    again = ensure_notice_queue(REGION, client_factory=aws_world.factory)
    assert first == again and first.queue_url == aws_world.settings.region(REGION).notice_queue_url
    events = aws_world.client("events")
    names = [r["Name"] for r in events.list_rules(NamePrefix="orch-ec2")["Rules"]]
    assert sorted(names) == ["orch-ec2-spot-notices", "orch-ec2-state-changes"]
    for name in names:
        targets = events.list_targets_by_rule(Rule=name)["Targets"]
        assert [t["Arn"] for t in targets] == [first.queue_arn]
    policy = json.loads(
        aws_world.client("sqs").get_queue_attributes(QueueUrl=first.queue_url, AttributeNames=["Policy"])["Attributes"][
            "Policy"
        ]
    )
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(first.rule_arns)
    # A running instance's state change is not routed (only ending states are).
    emit(aws_world, "EC2 Instance State-change Notification", {"instance-id": "i-1", "state": "running"})
    assert queued(aws_world) == 0


def test_parse_event_reads_eventbridge_bodies() -> None:
    body = {
        "source": "aws.ec2",
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "time": "2026-03-01T12:00:00Z",
        "region": "us-east-1",
        "detail": {"instance-id": "i-1", "instance-action": "terminate"},
    }
    event = parse_event(json.dumps(body))
    assert event is not None and event.kind is NoticeKind.INTERRUPTION and event.deadline == 1772366520.0
    assert parse_event(json.dumps({**body, "source": "aws.s3"})) is None
    assert parse_event(json.dumps({**body, "detail": {}})) is None
    assert parse_event("{") is None
