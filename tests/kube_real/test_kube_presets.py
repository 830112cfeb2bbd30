"""Each placement preset's selectors, affinity and tolerations, matched by the real scheduler.

The fake tier checks the pod spec as written; here the scheduler must bind a spot job to the spot
node and an on-demand job to the on-demand node of a pool labelled (and tainted) as Karpenter, GKE
or EKS label theirs. GKE is the interesting one: its on-demand nodes carry no label at all, so only
the `NotIn` affinity keeps an on-demand job off spot nodes, and its spot nodes are tainted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kube_real.cluster import Cluster
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import SPEC, Controller, GpuJobs, eventually

pytestmark = pytest.mark.kube


@pytest.mark.parametrize("preset", ["karpenter", "gke", "eks"])
def test_spot_and_on_demand_jobs_land_on_their_pools(
    preset: str, cluster: Cluster, namespace: str, nodes: NodeSim, tmp_path: Path
) -> None:
    nodes.add_node(f"{namespace}-spot", market="spot", preset=preset)
    nodes.add_node(f"{namespace}-od", market="on-demand", preset=preset)
    ctl = Controller(cluster.api_client(), namespace, "replica-a", store_dir=tmp_path, preset=preset)
    jobs = GpuJobs(cluster.api_client(), namespace)
    try:
        for market in ("spot", "on-demand"):
            jobs.create(market, {**SPEC, "schedule": {"estimated_hours": 2, "market": market}})

        def bound() -> dict[str, str] | None:
            where = {p.metadata.labels["orch.dev/market"]: p.spec.node_name for p in jobs.live_pods()}
            return where if len(where) == 2 and all(where.values()) else None

        placed = eventually(bound, what="both pods bound by the scheduler")
        assert placed == {"spot": f"{namespace}-spot", "on-demand": f"{namespace}-od"}
        for market in ("spot", "on-demand"):
            eventually(lambda m=market: jobs.status(m).get("phase") == "Running", what=f"the {market} job running")
            assert jobs.status(market)["market"] == market
    finally:
        ctl.stop()
