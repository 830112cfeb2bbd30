"""A job on `aws` end to end: the real reconciler and SQLite store, moto's EC2 and S3, the real agent.

The loop launches a spot instance in moto; the test boots it by running its real user data here
(`AwsWorld.start_locally`), which starts the real agent around a job that counts with a checkpoint
every step. An interruption notice on the IMDS emulator makes the agent forward SIGTERM, the job saves
and exits 143, and the test reclaims the instance in moto as EC2 would. The reconciler must then
record a preemption, launch a second spot attempt, and, once that one has resumed from the
checkpoint and its instance has shut itself down, read the exit code from the heartbeat in S3 and
finish the task. The test plays only EC2's part (booting, reclaiming, shutting down); every decision
is the loop's.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from moto.ec2.models.instances import StateReason

from orchestrator.core.model import AttemptView, Outcome, TaskState
from orchestrator.job_files import load_spec
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from tests.aws_support import REGION, AwsWorld, moto_instance, preempt
from vocab import Market

pytestmark = pytest.mark.slow

STEPS = 12
# Counts to argv[1], one checkpoint per step, and logs what it does to argv[2]. On SIGTERM (forwarded
# by the agent from the spot notice) it saves where it is and exits 143, as the SDK asks. Attempt 0
# stops counting halfway and waits there for its notice: the notice lands mid-run however slowly the
# agent relays it on a loaded machine, and never after the job has finished.
JOB = """
import os, sys, time
from orchestrator.job.checkpoint import INTERRUPTED_EXIT_CODE, Checkpointer

steps, log = int(sys.argv[1]), sys.argv[2]
attempt = os.environ["ORCH_ATTEMPT"]

def say(line):
    with open(log, "a") as out:
        out.write(line + "\\n")

ckpt = Checkpointer.from_env()
loaded = ckpt.load()
count = int(loaded.read_bytes("count")) if loaded else 0
say(f"attempt {attempt} starts at {count}")
while count < steps:
    if ckpt.interrupted:
        ckpt.save({"count": str(count).encode()}, progress=count / steps)
        say(f"attempt {attempt} saved {count} on notice")
        sys.exit(INTERRUPTED_EXIT_CODE)
    if attempt == "0" and count >= steps // 2:
        time.sleep(0.02)
        continue
    time.sleep(0.4)
    count += 1
    ckpt.save({"count": str(count).encode()}, progress=count / steps)
    say(f"step {count}")
say(f"attempt {attempt} done")
"""

JOB_TOML = """
name = "count-on-aws"
command = {command}
workdir = "{workdir}"
[resources]
gpu = "A10G"
[schedule]
estimated_hours = 0.01
deadline_hours = 2
market = "spot"
[checkpoint]
uri = "{uri}"
grace_seconds = 20
[placement]
providers = ["aws"]
regions = ["{region}"]
"""


def shut_down_by_itself(instance_id: str) -> None:
    """What EC2 does when the user data's `shutdown -h now` runs (InstanceInitiatedShutdownBehavior=terminate).

    The world's settings cannot let the script shut this machine down, so the test plays that part.
    """
    instance = moto_instance(instance_id)
    instance.terminate()
    code = "Client.InstanceInitiatedShutdown"
    instance.state_reason = StateReason(f"{code}: Instance initiated shutdown", code)


class Loop:
    """The reconciler, ticked by the test while it plays EC2's part, and the agents it booted."""

    def __init__(self, reconciler: Reconciler, store: Store, job_id: str) -> None:
        self.r, self.store, self.job_id = reconciler, store, job_id
        self.agents: list[subprocess.Popen[bytes]] = []

    def until(self, done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.r.tick()
            time.sleep(0.1)

    def live(self) -> AttemptView | None:
        return next((a for a in self.store.attempts(self.job_id) if a.live and a.instance_id), None)

    def launched(self, number: int) -> AttemptView:
        self.until(lambda: (a := self.live()) is not None and a.number == number, f"attempt {number} to launch")
        attempt = self.live()
        assert attempt is not None and attempt.instance_id is not None
        return attempt

    def boot(self, world: AwsWorld, attempt: AttemptView) -> subprocess.Popen[bytes]:
        assert attempt.instance_id is not None and attempt.region == REGION
        agent = world.start_locally(attempt.instance_id)
        self.agents.append(agent)
        return agent

    def kill_agents(self) -> None:
        for agent in self.agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait(timeout=5)


@pytest.fixture
def loop(aws_world: AwsWorld, sqlite_store: Store, tmp_path: Path) -> Iterator[Loop]:
    with counting_job(aws_world, sqlite_store, tmp_path, name="e2e") as running:
        yield running


@contextmanager
def counting_job(aws_world: AwsWorld, sqlite_store: Store, tmp_path: Path, *, name: str) -> Iterator[Loop]:
    """The counting job submitted with its checkpoints in a fresh bucket, and a loop to drive it."""
    bucket = f"orch-{name}-{uuid.uuid4().hex[:8]}"
    aws_world.client("s3").create_bucket(Bucket=bucket)
    (tmp_path / "count.py").write_text(JOB)
    command = f'["{sys.executable}", "count.py", "{STEPS}", "{tmp_path / "job.log"}"]'
    path = tmp_path / "job.toml"
    path.write_text(JOB_TOML.format(command=command, workdir=tmp_path, uri=f"s3://{bucket}/{name}", region=REGION))
    now = aws_world.clock.now()
    spec = load_spec(path, submitted_at=now)
    assert spec.checkpoint.uri is not None
    job_id = sqlite_store.submit(spec, source=str(path), now=now, checkpoint_uri=spec.checkpoint.uri)
    reconciler = Reconciler(sqlite_store, {"aws": aws_world.provider}, aws_world.clock, owner=name,
                            tick_seconds=0.1)
    running = Loop(reconciler, sqlite_store, job_id)
    try:
        yield running
    finally:
        running.kill_agents()


def log_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "job.log"
    return path.read_text().splitlines() if path.exists() else []


def test_a_spot_job_survives_a_reclamation_and_finishes(loop: Loop, aws_world: AwsWorld, tmp_path: Path) -> None:
    first = loop.launched(0)
    assert first.market is Market.SPOT and first.provider == "aws"
    agent = loop.boot(aws_world, first)
    loop.until(lambda: "step 2" in log_lines(tmp_path), "the first attempt to make progress")

    aws_world.imds.set_interruption(in_seconds=120)  # the agent polls IMDS and forwards SIGTERM
    loop.until(lambda: agent.poll() is not None, "the first agent to exit after the notice")
    assert agent.returncode == 143
    preempt(first.instance_id or "")  # EC2 takes the capacity back
    aws_world.imds.clear()  # the next instance has no notice pending

    second = loop.launched(1)
    assert second.instance_id != first.instance_id and second.market is Market.SPOT
    assert second.progress_start > 0, "the second attempt did not start from the checkpoint"
    agent = loop.boot(aws_world, second)
    loop.until(lambda: agent.poll() is not None, "the second agent to exit")
    assert agent.returncode == 0
    shut_down_by_itself(second.instance_id or "")
    loop.until(lambda: loop.store.tasks(loop.job_id)[0].state.terminal, "the task to finish")

    lines = log_lines(tmp_path)
    [saved] = [line for line in lines if "saved" in line]
    saved_at = int(saved.split()[3])
    assert saved == f"attempt 0 saved {saved_at} on notice" and 2 <= saved_at < STEPS
    assert f"attempt 1 starts at {saved_at}" in lines, lines  # resumed, not restarted from zero
    assert lines[-1] == "attempt 1 done"

    task = loop.store.tasks(loop.job_id)[0]
    assert task.state is TaskState.SUCCEEDED
    billed = [a for a in loop.store.attempts(loop.job_id) if not a.unbilled]
    assert [(a.number, a.outcome) for a in billed] == [(0, Outcome.PREEMPTED), (1, Outcome.SUCCEEDED)]
    assert billed[1].progress_start == pytest.approx(saved_at / STEPS)
    assert billed[1].exit_code == 0
    kinds = [e.kind for e in loop.store.events(loop.job_id)]
    assert kinds[-1] == "finished"

    assert [i for i in aws_world.provider.instances() if i.alive] == []
    reservations = aws_world.client("ec2").describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    )["Reservations"]
    assert reservations == [], "an instance was left running in EC2"
