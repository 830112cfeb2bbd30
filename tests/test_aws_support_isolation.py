"""The AWS fixtures start every test from an empty world, on any moto version pip may resolve.

moto 5.2.5 made SQS enforce one PurgeQueue per queue per 60 s; a fixture that purged before each
test errored every AWS test after the first. These tests clean twice within a second, as two quick
tests do, and check that the notice queue is empty and still wired to EventBridge afterwards.
"""

from __future__ import annotations

import json

from tests.aws_support import REGION, AwsWorld, clean_moto, client_factory


def waiting(world: AwsWorld, url: str) -> int:
    attrs = world.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_cleaning_twice_in_a_row_empties_the_queue_and_keeps_it_wired(aws_world: AwsWorld) -> None:
    sqs = aws_world.client("sqs")
    url = aws_world.settings.region(REGION).notice_queue_url
    assert url is not None
    sqs.send_message(QueueUrl=url, MessageBody="left by the previous test")
    sqs.send_message(QueueUrl=url, MessageBody="received, not yet deleted")
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=300)
    assert waiting(aws_world, url) == 2

    factory = client_factory(aws_world.url)
    assert clean_moto(factory) == url
    assert clean_moto(factory) == url  # a second clean within 60 s: no PurgeQueue limit to hit
    assert waiting(aws_world, url) == 0

    detail = {"instance-id": "i-0123456789abcdef0", "instance-action": "terminate"}
    kind = "EC2 Spot Instance Interruption Warning"
    warning = {"Source": "aws.ec2", "DetailType": kind, "Detail": json.dumps(detail)}
    reply = aws_world.client("events").put_events(Entries=[warning])
    assert reply["FailedEntryCount"] == 0
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["detail"] for m in messages] == [detail]


def test_instances_of_the_previous_test_are_gone(aws_world: AwsWorld) -> None:
    ec2 = aws_world.client("ec2")
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)
    clean_moto(client_factory(aws_world.url))
    assert ec2.describe_instances()["Reservations"] == []
