"""The agent as it runs on EC2: IMDSv2 notices from an emulator, heartbeats and checkpoints to S3.

The agent is started from the instance's real user data (fetched back from moto and run with bash),
so what is tested is what an instance would run; only the metadata server is emulated.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.aws_support import REGION, AwsWorld, ImdsEmulator, preempt
from vocab import EndReason, LaunchRequest, Market, NoticeKind, Resources

notices = pytest.importorskip("orchestrator.job.notices",
                              reason="orchestrator.job.notices (the agent's sources) is missing")

ACTION = "/latest/meta-data/spot/instance-action"

JOB = """
import os, sys, time
from orchestrator.job.checkpoint import Checkpointer

def mark(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)

ckpt = Checkpointer.from_env()
loaded = ckpt.load()
mark(sys.argv[1], "resumed" if loaded else "fresh")
while not ckpt.interrupted:
    time.sleep(0.02)
mark(sys.argv[2], repr(time.time()))
ckpt.save({"state.bin": b"saved on notice"}, progress=0.3)
sys.exit(143)
"""


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_the_emulator_enforces_imdsv2_tokens() -> None:
    with ImdsEmulator() as imds:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{imds.url}/latest/meta-data/instance-id", timeout=2)
        assert info.value.code == 401


def test_imds_source_sees_rebalance_then_interruption() -> None:
    with ImdsEmulator() as imds:
        source = notices.ImdsNoticeSource(imds.url)
        assert source.poll() is None
        imds.set_rebalance()
        assert source.poll().kind is NoticeKind.REBALANCE
        imds.expire_tokens()  # a stale token is refreshed, not fatal
        deadline = imds.set_interruption(in_seconds=120)
        notice = source.poll()
        assert notice is not None and notice.kind is NoticeKind.INTERRUPTION
        assert notice.deadline == pytest.approx(deadline, abs=1.0)
        puts = [r for r in imds.requests if r[1] == "PUT"]
        assert len(puts) == 2


def answered(world: AwsWorld, status: int) -> int:
    """How many instance-action polls the emulator has answered with `status`."""
    return sum(1 for _, method, path, code in list(world.imds.requests)
               if method == "GET" and path == ACTION and code == status)


def run_until_noticed(world: AwsWorld, request: LaunchRequest, started: Path, signalled: Path) -> str:
    """Launch, run the user data here, wait for the job, send the notice; the job's first words."""
    instance = world.provider.launch(request)
    agent = world.start_locally(instance.instance_id)
    try:
        wait_for(started.exists)
        quiet = answered(world, 404)
        wait_for(lambda: answered(world, 404) >= quiet + 2)  # the agent keeps polling while there is no notice
        seen = answered(world, 200)
        world.imds.set_interruption()
        wait_for(signalled.exists)
        assert agent.wait(timeout=30) == 143
        # The first poll that saw the notice signalled the job: the agent stopped polling after it.
        assert answered(world, 200) == seen + 1
    finally:
        if agent.poll() is None:
            agent.kill()
    preempt(instance.instance_id)
    world.imds.clear()
    return started.read_text()


@pytest.mark.slow
def test_agent_from_user_data_survives_a_preemption_through_s3(aws_world: AwsWorld, tmp_path: Path) -> None:
    bucket = f"orch-ckpt-{uuid.uuid4().hex[:8]}"
    aws_world.client("s3").create_bucket(Bucket=bucket)
    script = tmp_path / "job.py"
    script.write_text(JOB)
    offers = aws_world.provider.offers(Resources(gpus=("A10G",)), [REGION])
    offer = next(o for o in offers if o.market is Market.SPOT)
    uri = f"s3://{bucket}/job-1/task-1"

    def attempt(n: int) -> str:
        started, signalled = tmp_path / f"started-{n}", tmp_path / f"signalled-{n}"
        command = (sys.executable, str(script), str(started), str(signalled))
        request = LaunchRequest("job-1", "task-1", f"att-{n}", n, offer, command, {}, uri, 120.0)
        return run_until_noticed(aws_world, request, started, signalled)

    assert attempt(0) == "fresh"
    s3 = aws_world.client("s3")
    heartbeat = json.loads(s3.get_object(Bucket=bucket, Key="job-1/task-1/_orch/heartbeat.json")["Body"].read())
    assert heartbeat["exit_code"] == 143 and heartbeat["interrupted"] is True
    ended = {i.attempt_id: i.reason for i in aws_world.provider.instances()}
    assert ended == {"att-0": EndReason.PREEMPTED}
    assert attempt(1) == "resumed"  # the second attempt loaded what the first saved on its notice
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="job-1/task-1/ckpt-")["Contents"]]
    assert "job-1/task-1/ckpt-00000002/MANIFEST.json" in keys
