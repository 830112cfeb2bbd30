"""The one network opening a campaign with an in-VPC controller needs: the item service's port, from the
workers' security groups only.

`open_item_service` makes (once; safe to repeat) a security group `orch-item-service` in the workers'
VPC whose only inbound rule admits TCP on the service's port from the groups the workers are launched
with (`security_groups` in aws.toml): no CIDR range, so nothing outside those instances, and nothing
on the internet, can reach it. The operator attaches the group to the controller's instance (or the
node or ENI its pod uses); docs/providers/aws.md says how.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vocab import PermanentError

__all__ = ["ITEM_SERVICE_GROUP", "open_item_service"]

ITEM_SERVICE_GROUP = "orch-item-service"


def open_item_service(ec2: Any, call: Callable[[Callable[[], Any], str], Any], *, port: int,
                      worker_groups: Sequence[str]) -> str:
    """The id of the group that admits `port` from `worker_groups`, made or completed as needed."""
    if not worker_groups:
        raise PermanentError("the item service can be opened only to the workers' security groups: set "
                             "security_groups in aws.toml", provider="aws", code="NoWorkerGroups")
    described = call(lambda: ec2.describe_security_groups(GroupIds=list(worker_groups)), "DescribeSecurityGroups")
    vpcs = {g.get("VpcId") for g in described["SecurityGroups"]}
    if len(vpcs) != 1 or None in vpcs:
        raise PermanentError(f"the workers' security groups {list(worker_groups)} must be in one VPC, not {vpcs}",
                             provider="aws", code="WorkerGroupsVpc")
    (vpc,) = vpcs
    found = call(lambda: ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [ITEM_SERVICE_GROUP]}, {"Name": "vpc-id", "Values": [vpc]}]),
        "DescribeSecurityGroups")["SecurityGroups"]
    if found:
        group = str(found[0]["GroupId"])
    else:
        group = str(call(lambda: ec2.create_security_group(
            GroupName=ITEM_SERVICE_GROUP, VpcId=vpc,
            Description="orch item service: campaign workers reach the controller here, nothing else"),
            "CreateSecurityGroup")["GroupId"])
    rule = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
            "UserIdGroupPairs": [{"GroupId": g, "Description": "orch campaign workers"} for g in worker_groups]}
    try:
        call(lambda: ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[rule]),
             "AuthorizeSecurityGroupIngress")
    except PermanentError as exc:
        if exc.code != "InvalidPermission.Duplicate":  # already open to these groups: nothing to do
            raise
    return group
