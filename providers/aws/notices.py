"""Early warnings from EC2 through EventBridge and SQS, and the command that wires them up.

The agent on an instance sees its own two-minute warning in IMDS; the control plane learns of it
from EventBridge, which puts "EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance
Recommendation" and state-change events of the whole account on an SQS queue. Reading that queue
lets the reconciler start a replacement before the old instance is gone, instead of at the next
list call. The rules match every instance of the account, so events are kept only for instances
that carry orch's tags; the rest are deleted unread by anyone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from providers.aws.errors import aws_errors, error_code
from vocab import NoticeKind

INTERRUPTION = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
STATE_CHANGE = "EC2 Instance State-change Notification"
KINDS = {INTERRUPTION: NoticeKind.INTERRUPTION, REBALANCE: NoticeKind.REBALANCE}
SPOT_WARNING_SECONDS = 120.0
ENDING_STATES = ["stopping", "stopped", "shutting-down", "terminated"]


@dataclass(frozen=True, slots=True)
class Message:
    receipt: str
    body: str


@dataclass(frozen=True, slots=True)
class Ec2Event:
    """One EC2 event from the queue; `kind` None is a state change (a hint to look again, no notice)."""

    instance_id: str
    region: str | None
    kind: NoticeKind | None
    at: float
    deadline: float | None


def parse_event(body: str) -> Ec2Event | None:
    """An EventBridge EC2 event from an SQS message body; None for anything else."""
    try:
        event = json.loads(body)
        detail_type = event["detail-type"]
        instance_id = str(event["detail"]["instance-id"])
        at = dt.datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError):
        return None
    if event.get("source") != "aws.ec2" or detail_type not in (*KINDS, STATE_CHANGE):
        return None
    kind = KINDS.get(detail_type)
    deadline = at + SPOT_WARNING_SECONDS if kind is NoticeKind.INTERRUPTION else None
    region = event.get("region")
    return Ec2Event(instance_id, str(region) if region else None, kind, at, deadline)


def receive(sqs: Any, queue_url: str, *, max_batches: int = 10) -> list[Message]:
    """What the queue holds now, without waiting (the reconcile tick must not block on it)."""
    out: list[Message] = []
    for _ in range(max_batches):
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60)
        batch = reply.get("Messages", [])
        out += [Message(str(m["ReceiptHandle"]), str(m.get("Body", ""))) for m in batch]
        if len(batch) < 10:
            break
    return out


def delete(sqs: Any, queue_url: str, receipts: list[str]) -> None:
    for start in range(0, len(receipts), 10):
        chunk = receipts[start : start + 10]
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
        )


def instance_tags(ec2: Any, instance_ids: list[str]) -> dict[str, dict[str, str]]:
    """Instance id -> tags, for the ids EC2 still knows (a filter, so unknown ids are no error)."""
    if not instance_ids:
        return {}
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[{"Name": "instance-id", "Values": instance_ids}])
    return {
        str(inst["InstanceId"]): {str(t["Key"]): str(t.get("Value", "")) for t in inst.get("Tags", []) or []}
        for page in pages
        for res in page.get("Reservations", [])
        for inst in res.get("Instances", [])
    }


# --- setup -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoticeQueue:
    region: str
    queue_url: str
    queue_arn: str
    rule_arns: tuple[str, ...]


def ensure_notice_queue(
    region: str,
    *,
    client_factory: Callable[[str, str], Any] | None = None,
    queue_name: str = "orch-ec2-notices",
    rule_prefix: str = "orch-ec2",
) -> NoticeQueue:
    """Create (or bring up to date) the queue, its policy and the EventBridge rules of one region.

    Idempotent: run it again after an upgrade and it converges on the same resources. Put the
    returned `queue_url` in `[region.<name>] notice_queue_url` of the AWS settings.
    """
    if client_factory is None:
        from providers.aws.clients import default_client_factory

        client_factory = default_client_factory()
    sqs, events = client_factory("sqs", region), client_factory("events", region)
    with aws_errors("ensure_notice_queue", region):
        queue_url = _ensure_queue(sqs, queue_name)
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rules = {
            f"{rule_prefix}-spot-notices": {"source": ["aws.ec2"], "detail-type": [INTERRUPTION, REBALANCE]},
            f"{rule_prefix}-state-changes": {
                "source": ["aws.ec2"],
                "detail-type": [STATE_CHANGE],
                "detail": {"state": ENDING_STATES},
            },
        }
        rule_arns = []
        for name, pattern in rules.items():
            arn = events.put_rule(
                Name=name,
                EventPattern=json.dumps(pattern),
                State="ENABLED",
                Description="orch: EC2 notices for the reconciler",
            )["RuleArn"]
            events.put_targets(Rule=name, Targets=[{"Id": "orch-notice-queue", "Arn": queue_arn}])
            rule_arns.append(str(arn))
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": queue_policy(queue_arn, rule_arns)})
    return NoticeQueue(region, queue_url, str(queue_arn), tuple(rule_arns))


def _ensure_queue(sqs: Any, name: str) -> str:
    attributes = {"MessageRetentionPeriod": "3600", "SqsManagedSseEnabled": "true"}
    try:
        url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as exc:
        if error_code(exc) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
        return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def queue_policy(queue_arn: str, rule_arns: list[str]) -> str:
    """Only orch's rules may send to the queue."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "orch-eventbridge",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                }
            ],
        }
    )
