"""The store's reads behind `orch submit`/`orch status` saying whether a controller runs, and behind an
ambiguous prefix being listed: on SQLite and PostgreSQL alike (the `store` fixture runs both)."""

from __future__ import annotations

from orchestrator.core.spec import JobSpec, ScheduleSpec
from orchestrator.store import Store
from orchestrator.store.job_list import JobFilter
from vocab import Resources

SPEC = JobSpec(name="j", command=("true",), resources=Resources(gpus=("V100",)),
               schedule=ScheduleSpec(estimated_hours=1.0, policy="greedy"))


def _jobs(store: Store, *ids: str) -> list[str]:
    return [store.submit(SPEC, source="t", now=float(i), checkpoint_uri="file:///ck", job_id=job_id)
            for i, job_id in enumerate(ids)]


def test_live_leases_name_the_running_controllers_and_not_the_dead_or_cancel(store: Store) -> None:
    a, b, c, d = _jobs(store, "a1", "a2", "b1", "c1%")
    assert store.claim_jobs("orch-live", 1000.0, 60.0, job_ids=[a, b]) == [a, b]
    assert store.claim_jobs("orch-dead", 900.0, 60.0, job_ids=[c]) == [c]  # expired at 960
    assert store.claim_jobs("cancel-7", 1000.0, 30.0, job_ids=[d]) == [d]
    assert store.live_controllers(1000.0) == {"orch-live": 2}
    assert store.job_leases([a, c, d], 1000.0) == {a: "orch-live", d: "cancel-7"}
    assert store.job_leases([], 1000.0) == {}
    store.release_jobs("orch-live")
    assert store.live_controllers(1000.0) == {}


def test_an_id_prefix_filter_matches_from_the_start_and_escapes_like(store: Store) -> None:
    _jobs(store, "a1", "a2", "b1", "c1%", "c1x")
    assert {j.id for j in store.jobs(JobFilter(id_prefix="a"))} == {"a1", "a2"}
    assert {j.id for j in store.jobs(JobFilter(id_prefix="c1%"))} == {"c1%"}  # `%` is itself
    assert store.count_jobs(JobFilter(id_prefix="1")) == 0
