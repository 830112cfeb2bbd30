"""Launching on EC2 (moto over HTTP): markets, tags, idempotency, and every class of API error."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from providers.aws.launch import client_token, user_data
from tests.aws_support import REGION, AwsWorld, moto_instance
from vocab import (
    CapacityError,
    CapacityMemory,
    InstanceState,
    LaunchRequest,
    Market,
    Offer,
    PermanentError,
    QuotaError,
    Resources,
    TransientError,
)


def offer(world: AwsWorld, market: Market = Market.SPOT, zone: str = "us-east-1b") -> Offer:
    offers = world.provider.offers(Resources(gpus=("A10G",)), [REGION])
    return next(o for o in offers if o.instance_type == "g5.xlarge" and o.market is market and o.zone == zone)


def request(o: Offer, attempt: str = "att-1", **changes: object) -> LaunchRequest:
    fields: dict[str, object] = dict(
        job_id="job-1",
        task_id="task-1",
        attempt_id=attempt,
        attempt_number=0,
        offer=o,
        command=("python", "train.py", "--epochs", "3"),
        env={"WANDB_MODE": "offline"},
        checkpoint_uri="s3://orch-ckpt/job-1/task-1",
        grace_seconds=120.0,
    )
    fields.update(changes)
    return LaunchRequest(**fields)  # type: ignore[arg-type]


def managed(world: AwsWorld) -> list[dict[str, object]]:
    reply = world.client("ec2").describe_instances(Filters=[{"Name": "tag:orch:managed", "Values": ["true"]}])
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def test_spot_launch_carries_market_tags_placement_and_token(aws_world: AwsWorld) -> None:
    o = offer(aws_world)
    inst = aws_world.provider.launch(request(o))
    assert inst.market is Market.SPOT and inst.attempt_id == "att-1" and inst.job_id == "job-1"
    assert inst.zone == "us-east-1b" and inst.instance_type == "g5.xlarge"
    assert inst.state in (InstanceState.PENDING, InstanceState.RUNNING) and inst.reason is None
    raw = managed(aws_world)[0]
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}  # type: ignore[attr-defined]
    assert tags == {
        "orch:managed": "true",
        "orch:job": "job-1",
        "orch:task": "task-1",
        "orch:attempt": "att-1",
        "team": "proteins",
    }
    assert raw["InstanceLifecycle"] == "spot" and raw["ClientToken"] == "att-1"
    assert raw["SubnetId"] == aws_world.settings.region(REGION).subnets["us-east-1b"]
    backend = moto_instance(inst.instance_id)
    assert backend.instance_initiated_shutdown_behavior == "terminate"
    assert backend.metadata_options.http_tokens == "required"


def test_on_demand_launch_has_no_market_options(aws_world: AwsWorld) -> None:
    inst = aws_world.provider.launch(request(offer(aws_world, Market.ON_DEMAND)))
    assert inst.market is Market.ON_DEMAND
    assert "InstanceLifecycle" not in managed(aws_world)[0]


def test_a_repeated_launch_returns_the_same_instance(aws_world: AwsWorld) -> None:
    o = offer(aws_world)
    first = aws_world.provider.launch(request(o))
    again = aws_world.provider.launch(request(o))
    assert again.instance_id == first.instance_id
    assert len(managed(aws_world)) == 1
    assert aws_world.faults.calls["RunInstances"] == 1


def test_a_lost_answer_is_retried_without_a_second_instance(aws_world: AwsWorld) -> None:
    # EC2 made the instance but the answer was a 500: the retry must find it, not make another.
    aws_world.faults.fail_after_server_acted("RunInstances", "InternalError", status=500)
    inst = aws_world.provider.launch(request(offer(aws_world)))
    assert [i["InstanceId"] for i in managed(aws_world)] == [inst.instance_id]
    assert aws_world.faults.calls["RunInstances"] == 1


def test_a_failure_after_the_instance_exists_leaves_no_orphan(aws_world: AwsWorld) -> None:
    aws_world.faults.fail_after_server_acted("RunInstances", "InvalidParameterValue", status=400)
    with pytest.raises(PermanentError, match="InvalidParameterValue"):
        aws_world.provider.launch(request(offer(aws_world)))
    (raw,) = managed(aws_world)
    assert raw["State"]["Name"] in ("shutting-down", "terminated")  # type: ignore[index]


@pytest.mark.parametrize(
    "code", ["InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded", "Unsupported"]
)
def test_capacity_errors_mark_the_offer_unavailable_for_a_while(aws_world: AwsWorld, code: str) -> None:
    o = offer(aws_world)
    aws_world.faults.fail("RunInstances", code)
    with pytest.raises(CapacityError) as info:
        aws_world.provider.launch(request(o))
    assert info.value.code == code and info.value.retry_after == aws_world.settings.capacity_retry_after_seconds
    assert aws_world.faults.calls["RunInstances"] == 1  # no retry of the same offer
    assert managed(aws_world) == []
    offers = aws_world.provider.offers(Resources(gpus=("A10G",)), [REGION])
    marked = [x for x in offers if x.available is False]
    assert [x.key for x in marked] == [o.key]
    aws_world.clock.advance(info.value.retry_after + 1)
    assert all(x.available is not False for x in aws_world.provider.offers(Resources(gpus=("A10G",)), [REGION]))


@pytest.mark.parametrize("code", ["VcpuLimitExceeded", "InstanceLimitExceeded"])
def test_quota_errors_are_reported_not_retried(aws_world: AwsWorld, code: str) -> None:
    aws_world.faults.fail("RunInstances", code)
    with pytest.raises(QuotaError, match=code):
        aws_world.provider.launch(request(offer(aws_world)))
    assert aws_world.faults.calls["RunInstances"] == 1


def test_throttling_and_5xx_are_retried_with_growing_jittered_waits(aws_world: AwsWorld) -> None:
    aws_world.faults.fail("RunInstances", "RequestLimitExceeded", times=1, status=503)
    aws_world.faults.fail("RunInstances", "InternalError", times=1, status=500)
    aws_world.faults.drop("RunInstances", times=1)
    inst = aws_world.provider.launch(request(offer(aws_world)))
    assert inst.attempt_id == "att-1" and len(managed(aws_world)) == 1
    assert aws_world.faults.calls["RunInstances"] == 4
    retry = aws_world.settings.retry
    sleeps = aws_world.clock.sleeps
    assert len(sleeps) == 3 and all(0 <= s <= retry.max_wait_seconds for s in sleeps)


def test_retries_are_bounded(aws_world: AwsWorld) -> None:
    aws_world.faults.fail("RunInstances", "Throttling", times=100)
    with pytest.raises(TransientError, match="Throttling"):
        aws_world.provider.launch(request(offer(aws_world)))
    assert aws_world.faults.calls["RunInstances"] == aws_world.settings.retry.attempts
    assert managed(aws_world) == []


def test_other_errors_are_permanent(aws_world: AwsWorld) -> None:
    aws_world.faults.fail("RunInstances", "InvalidAMIID.NotFound")
    with pytest.raises(PermanentError, match=r"InvalidAMIID\.NotFound"):
        aws_world.provider.launch(request(offer(aws_world)))


def test_credentials_in_the_job_env_are_refused(aws_world: AwsWorld) -> None:
    o = offer(aws_world)
    with pytest.raises(PermanentError, match="instance profile"):
        aws_world.provider.launch(request(o, env={"AWS_SECRET_ACCESS_KEY": "x"}))
    assert aws_world.faults.calls["RunInstances"] == 0


def test_user_data_runs_in_bash_with_every_value_quoted(aws_world: AwsWorld, tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    nasty = ("sh", "-c", f"echo $HOME; touch {marker}", "it's", "a\nb", f"$(touch {marker})")
    report = "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}))"
    settings = replace(aws_world.settings, agent_command=(sys.executable, "-c", report))
    env = {"NOTE": f"$(touch {marker}) `touch {marker}` 'q'"}
    script = user_data(request(offer(aws_world), command=nasty, env=env), settings)
    assert script.startswith("#!/bin/bash\n")
    done = subprocess.run(["bash", "-c", script], capture_output=True, check=True, timeout=30)
    seen = json.loads(done.stdout)
    argv = seen["argv"]
    assert argv[argv.index("--") + 1 :] == list(nasty)
    assert argv[argv.index("--imds") + 1] == settings.imds_url and argv[argv.index("--grace") + 1] == "120"
    assert seen["env"]["NOTE"] == env["NOTE"] and not marker.exists()
    assert seen["env"]["ORCH_ATTEMPT"] == "0" and seen["env"]["ORCH_MARKET"] == "spot"
    assert seen["env"]["ORCH_CHECKPOINT_URI"] == "s3://orch-ckpt/job-1/task-1"
    assert seen["env"]["ORCH_JOB_ID"] == "job-1" and seen["env"]["ORCH_TASK_ID"] == "task-1"


def test_an_image_runs_through_docker_with_the_env_passed_by_name(aws_world: AwsWorld) -> None:
    script = user_data(request(offer(aws_world), image="ghcr.io/lab/fold:1", workdir="/w"), aws_world.settings)
    argv = shlex.split(next(line for line in script.splitlines() if "orchestrator.job.agent" in line))
    job = argv[argv.index("--") + 1 :]
    assert job[:3] == ["docker", "run", "--rm"] and job[-5:] == [
        "ghcr.io/lab/fold:1",
        "python",
        "train.py",
        "--epochs",
        "3",
    ]
    assert "ORCH_CHECKPOINT_URI" in job and not any("=" in a and a.startswith("ORCH_") for a in job)


def test_long_attempt_ids_become_stable_tokens() -> None:
    long_id = "a" * 80
    assert client_token("att-1") == "att-1"
    assert len(client_token(long_id)) == 64 and client_token(long_id) == client_token(long_id)


def test_a_controller_and_the_adapter_share_one_capacity_memory(aws_world: AwsWorld) -> None:
    """A stockout the adapter meets is avoided by the loop, and one the loop learns (a reclaimed zone) is
    marked by the adapter's offers: one memory, not two that disagree for minutes."""
    memory = CapacityMemory()
    aws_world.provider.share_capacity(memory)
    o = offer(aws_world)
    aws_world.faults.fail("RunInstances", "InsufficientInstanceCapacity")
    with pytest.raises(CapacityError):
        aws_world.provider.launch(request(o))
    assert memory.avoided(o.key, aws_world.clock.now())
    other = next(x for x in aws_world.provider.offers(Resources(gpus=("A10G",)), [REGION]) if x.key != o.key)
    memory.refuse(other.key, aws_world.clock.now() + 60.0)
    marked = {x.key for x in aws_world.provider.offers(Resources(gpus=("A10G",)), [REGION]) if x.available is False}
    assert marked == {o.key, other.key}
