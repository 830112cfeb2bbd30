"""The conformance suite's kubernetes row against the real API server and scheduler.

Every test of tests/test_conformance.py is collected here a second time, with a `world` whose
kubernetes provider talks to the real server: offers come from real Node objects, launches are bound
by the real scheduler (so the spot and on-demand selectors and the GPU toleration must be right), and
a reclamation is what it is in a cluster: the spot node goes away under a running pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests import test_conformance as suite
from tests.conformance_support import World, catalog_on_demand, unknown_instance
from tests.kube_real.cluster import Cluster
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import GpuJobs, eventually
from vocab import Instance

pytestmark = pytest.mark.kube

# The suite's tests, collected in this module so that they use the `world` below.
for _name in dir(suite):
    if _name.startswith("test_"):
        globals()[_name] = getattr(suite, _name)

# (test name) -> why the kubernetes provider fails it on a real server only; strict xfails, as in the suite.
REAL_GAPS: dict[str, tuple[str, type[BaseException]]] = {}


@pytest.fixture
def world(request: pytest.FixtureRequest, cluster: Cluster, namespace: str, nodes: NodeSim) -> Iterator[World]:
    name = request.node.originalname
    gap = REAL_GAPS.get(name) or suite.KNOWN_GAPS.get((name, "kubernetes"))
    if gap is not None:
        request.applymarker(pytest.mark.xfail(reason=gap[0], raises=gap[1], strict=True))
    nodes.add_node(f"{namespace}-v100-spot", instance_type="p3.2xlarge", market="spot")
    nodes.add_node(f"{namespace}-v100-od", instance_type="p3.2xlarge", market="on-demand")
    nodes.add_node(f"{namespace}-a10g-spot", instance_type="g5.12xlarge", market="spot", gpus=4)
    settings = KubernetesSettings(namespace=namespace, region="lab", price_region="us-east-1", snapshot_ttl_s=0.0)
    provider = KubernetesProvider(cluster.api_client(), settings)
    pods = GpuJobs(cluster.api_client(), namespace)

    def reclaim(inst: Instance) -> None:
        """Once the scheduler bound the pod and it runs, its spot node goes away."""
        def running() -> Any:
            found = [p for p in pods.pods() if p.metadata.name == inst.instance_id]
            return found[0] if found and found[0].spec.node_name and found[0].status.phase == "Running" else None

        pod = eventually(running, what=f"pod {inst.instance_id} bound and running")
        nodes.remove_node(pod.spec.node_name)

    w = World(name="kubernetes", provider=provider, gpu="V100", regions=("lab",), command=("python3", "fold.py"),
              reclaim=reclaim, unknown=unknown_instance("kubernetes", "lab", None, "orch-never-launched", "p3.2xlarge"),
              list_price=catalog_on_demand("aws", "us-east-1"))
    try:
        yield w
    finally:
        w.terminate_everything()
