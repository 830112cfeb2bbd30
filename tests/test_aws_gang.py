"""A gang on EC2 (moto over HTTP, placement groups from tests/aws_placement.py): one RunInstances of
N in a cluster placement group, all or nothing, never an orphan, the group gone with the gang."""

from __future__ import annotations

from dataclasses import replace

import pytest

from providers.aws.gang import group_name
from providers.base import launch_nodes
from tests import aws_placement
from tests.aws_support import REGION, AwsWorld
from vocab import CapacityError, LaunchRequest, Market, PermanentError, Resources


def gang_request(world: AwsWorld, nodes: int = 3, attempt: str = "gang-1") -> LaunchRequest:
    offers = world.provider.offers(Resources(gpus=("A10G",)), [REGION])
    offer = next(o for o in offers if o.instance_type == "g5.xlarge" and o.market is Market.SPOT
                 and o.zone == "us-east-1b")
    return LaunchRequest(job_id="job-g", task_id="task-g", attempt_id=attempt, attempt_number=0, offer=offer,
                         command=("torchrun", "train.py"), env={}, checkpoint_uri="s3://orch-ckpt/job-g/task-g",
                         grace_seconds=120.0, nodes=nodes)


def states(world: AwsWorld, ids: list[str]) -> dict[str, str]:
    reply = world.client("ec2").describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]}


def test_one_run_instances_of_n_in_a_tagged_cluster_group(aws_world: AwsWorld) -> None:
    req = gang_request(aws_world)
    gang = launch_nodes(aws_world.provider, req)
    assert aws_world.faults.calls["RunInstances"] == 1
    assert [i.node_rank for i in gang] == [0, 1, 2] and len({i.instance_id for i in gang}) == 3
    assert all(i.attempt_id == "gang-1" and i.zone == "us-east-1b" and i.market is Market.SPOT for i in gang)
    group = aws_placement.groups(REGION)[group_name("gang-1")]
    assert group["Strategy"] == "cluster"
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["orch:attempt"] == "gang-1"
    assert aws_placement._MEMBERS[(REGION, group_name("gang-1"))] == {i.instance_id for i in gang}
    # Every node boots from one script: the gang's size, no rank (the agent reads its launch index).
    script = aws_world.user_data(gang[1].instance_id)
    assert "export ORCH_NUM_NODES=3" in script and "export NNODES=3" in script
    assert "ORCH_NODE_RANK" not in script and "MASTER_ADDR" not in script
    # The listing knows each node's rank; a repeated launch finds the gang instead of making another.
    listed = sorted((i for i in aws_world.provider.instances() if i.attempt_id == "gang-1"), key=lambda i: i.node_rank)
    assert [(i.instance_id, i.node_rank) for i in listed] == [(i.instance_id, i.node_rank) for i in gang]
    again = launch_nodes(aws_world.provider, req)
    assert [i.instance_id for i in again] == [i.instance_id for i in gang]
    assert aws_world.faults.calls["RunInstances"] == 1
    # The group stays while a node is in it, and goes with the gang.
    assert aws_world.provider.release_gang(req) is False
    for inst in gang:
        aws_world.provider.terminate(inst)
    assert aws_world.provider.release_gang(req) is True
    assert group_name("gang-1") not in aws_placement.groups(REGION)
    assert aws_world.provider.release_gang(req) is True  # idempotent


def test_no_capacity_for_the_whole_gang_leaves_nothing(aws_world: AwsWorld) -> None:
    req = gang_request(aws_world)
    aws_world.faults.fail("RunInstances", "InsufficientInstanceCapacity")
    with pytest.raises(CapacityError):
        launch_nodes(aws_world.provider, req)
    assert [i for i in aws_world.provider.instances() if i.alive] == []
    assert aws_placement.groups(REGION) == {}
    assert aws_world.provider._offers.capacity.avoided(req.offer.key, aws_world.clock.now())


def test_an_error_after_ec2_acted_terminates_every_node(aws_world: AwsWorld) -> None:
    req = gang_request(aws_world, nodes=4)
    aws_world.faults.fail_after_server_acted("RunInstances", "InvalidParameterValue", status=400)
    with pytest.raises(PermanentError):
        launch_nodes(aws_world.provider, req)
    made = [i for i in aws_world.provider.instances() if i.attempt_id == "gang-1"]
    assert len(made) == 4, "EC2 made the gang before the error reached orch"
    assert not any(i.alive for i in made), "an orphan node still runs"


def test_a_transient_error_after_ec2_acted_returns_the_gang_it_made(aws_world: AwsWorld) -> None:
    req = gang_request(aws_world, nodes=2)
    aws_world.faults.fail_after_server_acted("RunInstances", "InternalError", status=500)
    gang = launch_nodes(aws_world.provider, req)
    assert [i.node_rank for i in gang] == [0, 1] and all(i.alive for i in gang)
    assert len([i for i in aws_world.provider.instances() if i.attempt_id == "gang-1"]) == 2


def test_a_gang_past_the_limit_or_of_another_provider_is_refused(aws_world: AwsWorld) -> None:
    with pytest.raises(PermanentError, match="aws cannot launch 129 nodes as one gang"):
        launch_nodes(aws_world.provider, gang_request(aws_world, nodes=129))
    foreign = replace(gang_request(aws_world), offer=replace(gang_request(aws_world).offer, provider="gcp"))
    with pytest.raises(PermanentError, match="not an AWS offer"):
        aws_world.provider.launch_gang(foreign)
    assert aws_world.faults.calls["RunInstances"] == 0


def test_a_gang_in_a_container_is_handed_the_variables_its_agent_sets(aws_world: AwsWorld) -> None:
    req = replace(gang_request(aws_world, nodes=2), image="ghcr.io/lab/train:1")
    launch_nodes(aws_world.provider, req)
    script = aws_world.user_data(aws_world.provider.instances()[0].instance_id)
    for name in ("ORCH_NODE_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"):
        assert f"--env {name} " in script, name
