"""A gang job on `gcp` through the real loop: the reconciler and SQLite store, the real compute_v1 client
against tests/gce_fake.py. One bulkInsert of N under a compact placement policy; GCE (the test) preempts
one VM; the loop deletes the other two, launches a new gang, and deletes the first gang's policy once
its VMs are gone. No VM boots: the test plays GCE, every decision is the loop's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.core.model import AttemptView, Outcome
from orchestrator.job_files import load_spec
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from providers.gcp.gang import node_name, policy_name
from providers.gcp.provider import GcpProvider
from tests import gce_fake
from tests.gce_fake import GceFake, ManualClock

fake, clock, gcp = gce_fake.FIXTURES

JOB = """
name = "gang-on-gcp"
command = ["python3", "train.py"]
[resources]
gpu = "L4"
nodes = 3
[schedule]
estimated_hours = 1
market = "spot"
[checkpoint]
uri = "{uri}"
[placement]
providers = ["gcp"]
regions = ["us-central1"]
"""


def _until(r: Reconciler, done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        r.tick()


def _submit(gcp: GcpProvider, clock: ManualClock, store: Store, tmp_path: Path,
            job: str) -> tuple[Reconciler, str, Callable[[], AttemptView | None]]:
    """The job stored, a loop over the GCE provider, and a reader of the job's live attempt."""
    path = tmp_path / "job.toml"
    path.write_text(job.format(uri=(tmp_path / "ckpt").as_uri()))
    spec = load_spec(path, submitted_at=clock.now())
    job_id = store.submit(spec, source=str(path), now=clock.now(), checkpoint_uri=spec.checkpoint.uri or "")
    r = Reconciler(store, {"gcp": gcp}, clock, owner="g", tick_seconds=0.1)

    def live() -> AttemptView | None:
        return next((a for a in store.attempts(job_id) if a.live and a.instance_id), None)

    return r, job_id, live


def test_the_loop_launches_a_gang_in_one_bulk_insert_and_replaces_it_whole(
        gcp: GcpProvider, fake: GceFake, clock: ManualClock, sqlite_store: Store, tmp_path: Path) -> None:
    r, job_id, live = _submit(gcp, clock, sqlite_store, tmp_path, JOB)
    _until(r, lambda: live() is not None, "the gang to launch")
    first = live()
    assert first is not None and first.nodes == 3 and len(first.node_spans) == 3
    assert fake.calls["bulkInsert"] == 1 and fake.calls["insert"] == 0
    assert first.instance_id == node_name(first.id, 0)
    assert ("us-central1", policy_name(first.id)) in fake.policies

    fake.preempt(node_name(first.id, 1))  # GCE reclaims one VM of three
    _until(r, lambda: (a := live()) is not None and a.id != first.id, "a new gang")
    second = live()
    assert second is not None and second.nodes == 3
    ended = next(a for a in sqlite_store.attempts(job_id) if a.id == first.id)
    assert ended.outcome is Outcome.PREEMPTED
    assert fake.calls["bulkInsert"] == 2
    left = {name for (_, name) in fake.instances}
    assert not {node_name(first.id, rank) for rank in range(3)} & left  # the whole first gang deleted
    _until(r, lambda: ("us-central1", policy_name(first.id)) not in fake.policies, "the first gang's policy to go")
    assert ("us-central1", policy_name(second.id)) in fake.policies


def test_an_elastic_gang_starts_on_fewer_nodes_when_the_zone_cannot_hold_all_and_grows_back_at_its_relaunch(
        gcp: GcpProvider, fake: GceFake, clock: ManualClock, sqlite_store: Store, tmp_path: Path) -> None:
    """`min_nodes = 2` of 3: the zone holds two VMs, so the gang of three is refused (all or nothing, nothing
    billed) and one of two starts in the same tick; once a VM is lost and the zone holds three again, the
    relaunch asks for all three first."""
    fake.free_vms["us-central1-a"] = fake.free_vms["us-central1-b"] = 2
    elastic = JOB.replace("nodes = 3\n", "nodes = 3\nmin_nodes = 2\n")
    r, job_id, live = _submit(gcp, clock, sqlite_store, tmp_path, elastic)
    _until(r, lambda: live() is not None, "the gang to launch")
    short = live()
    assert short is not None and short.nodes == 2 and len(short.node_spans) == 2
    refused = [a for a in sqlite_store.attempts(job_id) if a.outcome is Outcome.LAUNCH_FAILED]
    assert refused and all(a.nodes == 3 and a.unbilled for a in refused)
    assert {name for (_, name) in fake.instances} == {node_name(short.id, 0), node_name(short.id, 1)}

    fake.free_vms.clear()  # capacity for the whole gang again
    fake.preempt(node_name(short.id, 1))
    _until(r, lambda: (a := live()) is not None and a.id != short.id, "the relaunch")
    whole = live()
    assert whole is not None and whole.nodes == 3
