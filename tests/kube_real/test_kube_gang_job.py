"""A GpuJob with `resources.nodes` through the shipped controller, against the real API server and
scheduler (the `kube` tier): its pods are one gang, run together, and are replaced together when the
spot node under one of them is taken away."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.core.model import Outcome
from tests.kube_real.cluster import Cluster
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import SPEC, Controller, GpuJobs, eventually

pytestmark = pytest.mark.kube

GANG = {**SPEC, "resources": {"nodes": 2}}


def running_gang(jobs: GpuJobs, size: int, attempt: str | None = None) -> list[Any]:
    """The live pods of one attempt, once all `size` are bound and running, by name (rank order)."""
    def check() -> list[Any] | None:
        live = [p for p in jobs.live_pods() if p.spec.node_name and p.status.phase == "Running"
                and (attempt is None or (p.metadata.annotations or {}).get("orch.dev/attempt-id") != attempt)]
        return sorted(live, key=lambda p: p.metadata.name) if len(live) == size else None

    found: list[Any] = eventually(check, what=f"a gang of {size} pods bound and running")
    return found


def test_a_gpujob_with_nodes_runs_as_one_gang_and_is_replaced_whole(
        cluster: Cluster, namespace: str, nodes: NodeSim, ctl: Controller) -> None:
    jobs = GpuJobs(cluster.api_client(), namespace)
    for name in ("a1", "a2"):
        nodes.add_node(f"{namespace}-{name}", market="spot")
    jobs.create(spec=GANG)
    first = running_gang(jobs, 2)
    attempt = {(p.metadata.annotations or {}).get("orch.dev/attempt-id") for p in first}
    assert len(attempt) == 1 and None not in attempt  # one attempt, two ranks
    assert [p.metadata.name.rsplit("-", 1)[1] for p in first] == ["r0", "r1"]
    assert {p.spec.node_name for p in first} == {f"{namespace}-a1", f"{namespace}-a2"}
    st = eventually(lambda: (s := jobs.status()).get("phase") == "Running" and s, what="phase Running")
    assert st["attempts"] == 1

    # The node under rank 1 is reclaimed; two other spot nodes come.
    for name in ("b1", "b2"):
        nodes.add_node(f"{namespace}-{name}", market="spot")
    nodes.remove_node(first[1].spec.node_name)
    second = running_gang(jobs, 2, attempt=next(iter(attempt)))
    assert {p.metadata.name for p in second}.isdisjoint({p.metadata.name for p in first})
    st = eventually(lambda: (s := jobs.status()).get("preemptions") == 1 and s, what="the gang's preemption")
    # Rank 0 kept running on its node until the loop stopped it with its gang.
    old = next((p for p in jobs.pods() if p.metadata.name == first[0].metadata.name), None)
    assert old is None or old.metadata.deletion_timestamp or old.status.phase != "Running"

    for pod in second:
        nodes.finish(namespace, pod.metadata.name, exit_code=0)
    eventually(lambda: jobs.status().get("phase") == "Succeeded", what="phase Succeeded")
    attempts = ctl.store.attempts(jobs.status()["jobId"])
    assert [a.outcome for a in attempts] == [Outcome.PREEMPTED, Outcome.SUCCEEDED]
    assert all(a.nodes == 2 and len(a.node_spans) == 2 for a in attempts)
