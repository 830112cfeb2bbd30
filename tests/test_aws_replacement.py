"""A replacement starts on the SQS interruption notice, before the old instance is gone (moto over HTTP).

The real reconciler, SQLite store, moto's EC2, EventBridge, SQS and S3, and the real agent. EC2 warns
through EventBridge -> SQS; the loop must then, in the same tick: end the old attempt as preempted at
the notice's deadline (billed until then: the overlap is real), leave its instance alone so it can save,
and launch the next attempt on spot elsewhere. The replacement boots at once but its user data holds
the job back until the deadline, so it resumes from the old attempt's final checkpoint, never from an
older one, and never writes a checkpoint while the old one still can.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.cost import attempt_cost
from orchestrator.core.model import AttemptView, Outcome, TaskState
from orchestrator.store import Store
from providers.aws.launch import user_data
from tests.aws_support import REGION, AwsWorld, moto_instance
from tests.test_aws_e2e import STEPS, Loop, counting_job, log_lines, shut_down_by_itself
from vocab import RESUME_NOT_BEFORE, Market

pytestmark = pytest.mark.slow

NOTICE_S = 25  # time left before the (simulated) reclamation when EC2's warning reaches the queue


@pytest.fixture
def loop(aws_world: AwsWorld, sqlite_store: Store, tmp_path: Path) -> Iterator[Loop]:
    with counting_job(aws_world, sqlite_store, tmp_path, name="repl") as running:
        yield running


def warn(world: AwsWorld, instance_id: str, deadline: int) -> None:
    """EC2's spot interruption warning, sent (as EC2 does) two minutes before `deadline`."""
    sent = dt.datetime.fromtimestamp(deadline - 120, tz=dt.UTC)
    reply = world.client("events").put_events(Entries=[{
        "Source": "aws.ec2", "DetailType": "EC2 Spot Instance Interruption Warning", "Time": sent,
        "Detail": json.dumps({"instance-id": instance_id, "instance-action": "terminate"})}])
    assert reply["FailedEntryCount"] == 0


def waiting(script_pid: int) -> bool:
    """Whether the boot script `script_pid` runs `sleep`: the user data's wait for RESUME_NOT_BEFORE."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name == "sleep" and int(rest[1]) == script_pid:
            return True
    return False


def attempt(loop: Loop, number: int) -> AttemptView:
    return next(a for a in loop.store.attempts(loop.job_id) if a.number == number)


def moto_state(instance_id: str | None) -> str:
    assert instance_id is not None
    return str(moto_instance(instance_id).state)


def test_an_sqs_notice_starts_the_replacement_which_resumes_from_the_final_save(
    loop: Loop, aws_world: AwsWorld, tmp_path: Path
) -> None:
    first = loop.launched(0)
    assert first.market is Market.SPOT
    old_agent = loop.boot(aws_world, first)
    loop.until(lambda: "step 2" in log_lines(tmp_path), "the first attempt to make progress")

    deadline = int(time.time()) + NOTICE_S
    warn(aws_world, first.instance_id or "", deadline)
    second = loop.launched(1)  # on the notice, while the first instance still runs
    old = attempt(loop, 0)
    assert old.outcome is Outcome.PREEMPTED and old.ended_at == deadline
    assert second.market is Market.SPOT
    assert (second.zone, second.instance_type) != (first.zone, first.instance_type), "spot elsewhere, not that pool"
    assert moto_state(first.instance_id) == "running", "the old instance keeps its grace window"
    script = aws_world.user_data(second.instance_id or "")
    assert f"export {RESUME_NOT_BEFORE}={deadline}" in script and "sleep" in script
    assert any(e.kind == "notice" for e in loop.store.events(loop.job_id))

    # The replacement boots now (its job waits for the deadline); only then does the old job save.
    new_agent = loop.boot(aws_world, second)
    loop.until(lambda: waiting(new_agent.pid), "the replacement's boot script to wait for the deadline")
    aws_world.imds.set_interruption(in_seconds=NOTICE_S)
    loop.until(lambda: old_agent.poll() is not None, "the old agent to save and exit after the notice")
    assert old_agent.returncode == 143
    aws_world.imds.clear()
    saved_seen_at = time.time()
    for _ in range(5):  # the reaper spares the old instance while it may still save
        loop.r.tick()
    assert moto_state(first.instance_id) == "running" or time.time() >= deadline
    assert saved_seen_at < deadline, "the test must see the save before the deadline"
    early = any("attempt 1 starts" in line for line in log_lines(tmp_path))
    # Checked only while the deadline is ahead: a loaded machine may reach it during the ticks above.
    assert not early or time.time() >= deadline, "the new job started before the old one's deadline"

    loop.until(lambda: new_agent.poll() is not None, "the replacement's agent to finish", timeout=NOTICE_S + 40)
    assert new_agent.returncode == 0
    shut_down_by_itself(second.instance_id or "")
    loop.until(lambda: loop.store.tasks(loop.job_id)[0].state.terminal, "the task to finish")

    lines = log_lines(tmp_path)
    [saved] = [line for line in lines if "saved" in line]
    saved_at = int(saved.split()[3])
    assert saved.startswith("attempt 0 saved") and 2 <= saved_at < STEPS
    assert lines.index(f"attempt 1 starts at {saved_at}") > lines.index(saved), lines
    assert lines[-1] == "attempt 1 done"
    assert loop.store.tasks(loop.job_id)[0].state is TaskState.SUCCEEDED

    attempts = [a for a in loop.store.attempts(loop.job_id) if not a.unbilled]
    assert [(a.number, a.outcome) for a in attempts] == [(0, Outcome.PREEMPTED), (1, Outcome.SUCCEEDED)]
    old, new = attempts
    assert old.ended_at is not None and old.ended_at > new.launched_at, "the overlap is recorded"
    assert old.ended_at - new.launched_at <= NOTICE_S, "launched after the warning, billed to its deadline"
    assert attempt_cost(old, time.time()) == pytest.approx(
        old.price_per_hour * (old.ended_at - old.launched_at) / 3600.0, rel=0.05, abs=1e-6)
    # After the deadline the old instance is gone (the reaper ends what EC2 would have taken).
    loop.until(lambda: moto_state(first.instance_id) in ("terminated", "shutting-down"), "the old instance to go")
    assert [i for i in aws_world.provider.instances() if i.alive] == []


def test_a_replacement_request_without_a_wait_has_no_wait(aws_world: AwsWorld) -> None:
    from vocab import LaunchRequest, Resources

    offer = next(o for o in aws_world.provider.offers(Resources(gpus=("A10G",)), [REGION]) if o.market is Market.SPOT)
    plain = LaunchRequest("j", "t", "a", 0, offer, ("true",), {}, "s3://b/p", 120.0)
    assert "sleep" not in user_data(plain, aws_world.settings)
    waiting = LaunchRequest("j", "t", "a", 1, offer, ("true",), {RESUME_NOT_BEFORE: "1800000000"}, "s3://b/p", 120.0,
                            image="ghcr.io/x/y:1")
    script = user_data(waiting, aws_world.settings)
    assert "left=$(( 1800000000 - $(date +%s) ))" in script and "docker pull ghcr.io/x/y:1" in script
    assert script.index("sleep") < script.index("orchestrator.job.agent"), "the wait comes before the agent"


def test_a_failed_replacement_launch_is_retried_with_the_same_wait_and_the_old_instance_is_spared(
    loop: Loop, aws_world: AwsWorld
) -> None:
    first = loop.launched(0)
    deadline = int(time.time()) + 60
    # Every try of the replacement's RunInstances fails this tick (the provider's own retries included).
    aws_world.faults.fail("RunInstances", "InternalError", times=aws_world.settings.retry.attempts, status=500)
    warn(aws_world, first.instance_id or "", deadline)
    loop.until(lambda: len(loop.store.attempts(loop.job_id)) >= 2, "the replacement to be tried")
    tried = attempt(loop, 1)
    assert tried.outcome is Outcome.LAUNCH_FAILED and tried.unbilled
    assert attempt(loop, 0).outcome is Outcome.PREEMPTED and attempt(loop, 0).ended_at == deadline

    again = loop.launched(2)  # a later tick: the task is pending and its predecessor still draining
    assert (again.zone, again.instance_type) != (first.zone, first.instance_type), "not the reclaimed pool"
    assert f"export {RESUME_NOT_BEFORE}={deadline}" in aws_world.user_data(again.instance_id or "")
    for _ in range(3):
        loop.r.tick()
    assert moto_state(first.instance_id) == "running", "the reaper spares a draining instance"
    assert not any(e.kind == "orphan_terminated" for e in loop.store.events(loop.job_id))
