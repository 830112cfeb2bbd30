"""No attempt is billed when no process or instance started: a launch the provider refused, one that
blew up inside the provider, and an instance that ended without ever starting the job all cost $0."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.cli.main import prepare
from orchestrator.cli.wiring import AGENT_COMMAND
from orchestrator.core.cost import attempt_cost, job_cost
from orchestrator.core.model import AttemptState, Outcome, TaskState
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from orchestrator.store.repo import new_id
from providers.local.provider import LocalProvider
from tests.http_fake import ManualClock
from tests.loop_support import job_toml, python_command, reconciler, submit
from vocab import Abilities, EndReason, Instance, InstanceState, LaunchRequest, Notice, Offer, Resources


def _submit_with_command(store: Store, path: Path, home: Path, command: tuple[str, ...]) -> str:
    """Store a job whose command `prepare` might refuse today: the loop must cope with old rows."""
    spec, _ = prepare(str(path), time.time())
    spec = dataclasses.replace(spec, command=command)
    job_id = new_id()
    return store.submit(spec, source=str(path), now=time.time(), job_id=job_id,
                        checkpoint_uri=(home / "checkpoints" / job_id).as_uri())


def test_a_launch_that_raises_inside_the_provider_is_not_billed_and_not_left_launching(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    # A NUL byte cannot reach exec(): the local provider's launch raises before any process exists.
    path = job_toml(tmp_path, command=python_command("pass"), market="on-demand")
    job_id = _submit_with_command(sqlite_store, path, orch_home, ("python3", "-c", "print('a\x00b')"))
    r = reconciler(sqlite_store, orch_home)
    for _ in range(4):
        r.tick()
        time.sleep(0.05)
    attempts = sqlite_store.attempts(job_id)
    [task] = sqlite_store.tasks(job_id)
    assert attempts, "a launch was tried"
    assert all(a.state is AttemptState.ENDED for a in attempts), "no attempt is left launching (and billing)"
    assert all(a.unbilled and a.outcome is Outcome.LAUNCH_FAILED for a in attempts)
    assert task.state is TaskState.FAILED, "a launch that can never work fails the task, not loops"
    later = time.time() + 3600
    assert all(attempt_cost(a, later) == 0.0 for a in attempts)
    cost = job_cost(attempts, now=later, remaining_usd=0.0, on_demand_only_usd=1.0)
    assert cost.spent_usd == 0.0 and cost.on_demand_hours == 0.0
    assert any("null byte" in e.message for e in sqlite_store.events(job_id))


class NeverStarts:
    """A provider whose instances always end before starting the job (boot failure, capacity at boot)."""

    name = "local"
    abilities = Abilities()

    def __init__(self, local: LocalProvider, clock: ManualClock) -> None:
        self.local, self.clock = local, clock
        self.made: dict[str, Instance] = {}

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        return self.local.offers(resources, regions, job_id=job_id, options=options)

    def launch(self, request: LaunchRequest) -> Instance:
        inst = Instance(provider="local", region=request.offer.region, zone=request.offer.zone,
                        instance_id=f"i-{request.attempt_id}", instance_type=request.offer.instance_type,
                        market=request.offer.market, state=InstanceState.PENDING, attempt_id=request.attempt_id,
                        job_id=request.job_id, task_id=request.task_id, launched_at=self.clock.now())
        self.made[request.attempt_id] = inst
        return inst

    def instances(self) -> list[Instance]:
        # Ten minutes after the launch the instance is gone, having never run the job.
        return [dataclasses.replace(i, state=InstanceState.TERMINATED, reason=EndReason.FAILED_TO_START,
                                    ended_at=i.launched_at + 600.0) if self.clock.now() > (i.launched_at or 0) + 600
                else i for i in self.made.values()]

    def terminate(self, instance: Instance) -> None:
        pass

    def notices(self) -> list[Notice]:
        return []


def test_an_instance_that_never_started_the_job_is_counted_but_not_billed(
    tmp_path: Path, orch_home: Path, sqlite_store: Store
) -> None:
    path = job_toml(tmp_path, command=python_command("pass"), market="on-demand", retry="[retry]\nmax_failures = 1")
    clock = ManualClock()
    job_id = submit(sqlite_store, path, orch_home, now=clock.now())
    provider = NeverStarts(LocalProvider(orch_home / "local", clock, agent_command=AGENT_COMMAND), clock)
    r = Reconciler(sqlite_store, {"local": provider}, clock, owner="test", tick_seconds=60.0)
    for _ in range(40):
        if sqlite_store.tasks(job_id)[0].state.terminal:
            break
        r.tick()
        clock.sleep(60.0)
    attempts = sqlite_store.attempts(job_id)
    assert sqlite_store.tasks(job_id)[0].state is TaskState.FAILED, "counted as failures: it cannot loop"
    assert len(attempts) == 2
    assert all(a.unbilled and a.outcome is Outcome.FAILED for a in attempts)
    assert sum("never started the job" in e.message for e in sqlite_store.events(job_id)) == 2
    assert job_cost(attempts, now=clock.now(), remaining_usd=0.0, on_demand_only_usd=1.0).spent_usd == 0.0
