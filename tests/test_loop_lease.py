"""A fast tick spends no statement per job on leases; a slow one checks each job's lease before acting."""

from __future__ import annotations

from orchestrator.core.spec import parse_spec
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace
from orchestrator.store import Store
from providers.sim import SimClock, SimProvider
from vocab import Instance

JOB = """
name = "j"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 10
market = "spot"
[placement]
providers = ["sim"]
"""


def _world(store: Store, jobs: int) -> tuple[SimClock, SimProvider, list[str]]:
    clock = SimClock()
    provider = SimProvider(clock, {"a": Trace(source="always", gap_seconds=60.0, data=(1,) * 1000, prices=None)})
    spec = parse_spec(JOB, source="job.toml", submitted_at=clock.now())
    ids = [store.submit(spec, source="job.toml", now=clock.now(), checkpoint_uri="file:///tmp/orch-lease")
           for _ in range(jobs)]
    return clock, provider, ids


def test_a_fast_tick_renews_no_lease_per_job(sqlite_store: Store) -> None:
    clock, provider, ids = _world(sqlite_store, 5)
    renewals: list[str] = []
    real = sqlite_store.renew_lease

    def counted(owner: str, job_id: str, now: float, lease_seconds: float) -> bool:
        renewals.append(job_id)
        return real(owner, job_id, now, lease_seconds)

    sqlite_store.renew_lease = counted  # type: ignore[method-assign]
    Reconciler(sqlite_store, {"sim": provider}, clock, owner="a", lease_seconds=60.0).tick()
    assert renewals == []
    assert all(sqlite_store.attempts(j) for j in ids), "every job was worked"


def test_a_slow_tick_leaves_alone_a_job_another_controller_took_meanwhile(sqlite_store: Store) -> None:
    clock, provider, ids = _world(sqlite_store, 3)
    real = provider.instances

    def slow_listing() -> list[Instance]:
        # The listing takes 40 s of a 60 s lease; meanwhile controller "b" sees the leases expire
        # (its clock is ahead) and takes every job.
        clock.sleep(40.0)
        sqlite_store.claim_jobs("b", clock.now() + 61.0, 60.0)
        return real()

    provider.instances = slow_listing  # type: ignore[method-assign]
    a = Reconciler(sqlite_store, {"sim": provider}, clock, owner="a", lease_seconds=60.0)
    assert a.tick() == []
    assert all(sqlite_store.attempts(j) == [] for j in ids), "a worked a job whose lease it had lost"
