"""One `World` per provider for the conformance suite: the real provider, plus the few hooks that differ.

The suite in tests/test_conformance.py states the `Provider` contract once; a world says only what
cannot be said generically: which GPU it has, what a runnable command is there, how its cloud takes
spot capacity back, what a well-formed instance it never made looks like, and which on-demand list
price its offers must carry. Every provider is the real one, against what its own tests use: real
processes (local), moto over HTTP (aws), the API-server fake (kubernetes), the GCE REST fake (gcp) and
availability traces on a simulated clock (sim). Each builder is a context manager that leaves nothing
running behind it.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.research.traces import Trace
from providers.base import Provider
from providers.catalog import load_catalog
from providers.sim import DEFAULT_ON_DEMAND_PRICE, DEFAULT_SPOT_PRICE, SimClock, SimProvider
from tests import gce_fake
from vocab import Instance, InstanceState, Market, Offer, ProviderError

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")
T0 = 1_700_000_000.0


@dataclass
class World:
    name: str
    provider: Provider
    gpu: str  # a GPU model this world offers in `regions`
    regions: tuple[str, ...]  # where the suite launches
    command: tuple[str, ...]  # a command that runs (and keeps running) here
    reclaim: Callable[[Instance], None]  # take a spot instance's capacity back, as the cloud does
    unknown: Instance  # well-formed, but never made by this provider
    list_price: Callable[[Offer], float]  # the on-demand list price an offer must carry
    checkpoint_uri: str = "file:///tmp/orch-conformance"

    def terminate_everything(self) -> None:
        """Teardown: nothing a test launched may outlive it (local instances are real processes)."""
        with contextlib.suppress(ProviderError):
            for inst in self.provider.instances():
                if inst.alive:
                    self.provider.terminate(inst)


def unknown_instance(provider: str, region: str, zone: str | None, instance_id: str, instance_type: str) -> Instance:
    return Instance(provider=provider, region=region, zone=zone, instance_id=instance_id, instance_type=instance_type,
                    market=Market.SPOT, state=InstanceState.RUNNING, attempt_id="never-launched",
                    job_id="never", task_id="never")


def catalog_on_demand(provider: str, region: str | None = None) -> Callable[[Offer], float]:
    """The catalog's on-demand price of an offer's type, in the offer's region (or a fixed one)."""

    def price(offer: Offer) -> float:
        itype = load_catalog().get(provider, offer.instance_type)
        assert itype is not None, f"{offer.instance_type} is not an {provider} type of the catalog"
        listed = itype.region(region or offer.region)
        assert listed is not None, f"the catalog has no {offer.instance_type} price in {region or offer.region}"
        return listed.on_demand

    return price


# --- local ---------------------------------------------------------------------------------------


class ShiftClock:
    """Wall time plus an offset the test moves: the local market jumps, processes wait in real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@contextlib.contextmanager
def local_world(tmp: Path) -> Iterator[World]:
    from orchestrator.cli.wiring import AGENT_COMMAND
    from providers.local.provider import LocalProvider, LocalSettings

    # Spot capacity for an hour after a job's first launch, then none for an hour: a reclamation the
    # test reaches by moving the clock, not by waiting.
    trace = tmp / "market.json"
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 3600}, "data": [1, 0]}))
    settings = LocalSettings(availability="trace", trace=str(trace), notice_seconds=1.0, terminate_grace_seconds=2.0)
    clock = ShiftClock()
    provider = LocalProvider(tmp / "local-home", clock, agent_command=AGENT_COMMAND, settings=settings)

    def reclaim(_: Instance) -> None:
        clock.offset += 3600.0 + settings.notice_seconds + 1.0

    yield World(
        name="local", provider=provider, gpu="V100", regions=("local",), command=SLEEPER, reclaim=reclaim,
        unknown=unknown_instance("local", "local", "local-a", "local-never-launched", "p3.2xlarge"),
        list_price=catalog_on_demand("aws", settings.price_region),
        checkpoint_uri=(tmp / "checkpoints").as_uri(),
    )


# --- aws -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def aws_world(request: pytest.FixtureRequest) -> Iterator[World]:
    from tests.aws_support import REGION, AwsWorld, preempt

    world: AwsWorld = request.getfixturevalue("aws_world")
    yield World(
        name="aws", provider=world.provider, gpu="A10G", regions=(REGION,), command=("python3", "fold.py"),
        reclaim=lambda inst: preempt(inst.instance_id),
        unknown=unknown_instance("aws", REGION, f"{REGION}a", "i-0123456789abcdef0", "g5.xlarge"),
        list_price=catalog_on_demand("aws"),
    )


# --- kubernetes ----------------------------------------------------------------------------------

KUBE_NS = "jobs"


@contextlib.contextmanager
def kubernetes_world() -> Iterator[World]:
    from kubernetes import client

    from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
    from tests.kube_fake import KubeFake

    kube = KubeFake().start()
    try:
        for name, itype, gpus in (("n-v100", "p3.2xlarge", 1), ("n-a10g", "g5.12xlarge", 4)):
            kube.put("v1", "nodes", {"metadata": {"name": name, "labels": {
                "node.kubernetes.io/instance-type": itype, "topology.kubernetes.io/zone": "zone-a"}},
                "status": {"capacity": {"nvidia.com/gpu": str(gpus)}}})
        api = client.ApiClient(client.Configuration(host=kube.url))
        settings = KubernetesSettings(namespace=KUBE_NS, region="lab", price_region="us-east-1", snapshot_ttl_s=0.0)
        provider = KubernetesProvider(api, settings)

        def reclaim(inst: Instance) -> None:
            """The pod runs on a spot node, and the node goes away (what a reclamation is in a cluster)."""
            kube.update("v1", "pods", KUBE_NS, inst.instance_id,
                        {"spec": {"nodeName": "n-v100"}, "status": {"phase": "Running"}})
            kube.remove("v1", "nodes", "", "n-v100")

        yield World(
            name="kubernetes", provider=provider, gpu="V100", regions=("lab",), command=("python3", "fold.py"),
            reclaim=reclaim, unknown=unknown_instance("kubernetes", "lab", None, "orch-never-launched", "p3.2xlarge"),
            list_price=catalog_on_demand("aws", "us-east-1"),
        )
    finally:
        kube.stop()


# --- gcp -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def gcp_world() -> Iterator[World]:
    with contextlib.contextmanager(gce_fake.running)() as fake:
        provider = gce_fake.provider(fake, gce_fake.ManualClock())
        yield World(
            name="gcp", provider=provider, gpu="L4", regions=("us-central1",), command=("python3", "fold.py"),
            reclaim=lambda inst: fake.preempt(inst.instance_id, delete=True),
            unknown=unknown_instance("gcp", "us-central1", "us-central1-a", "orch-never-launched", "g2-standard-4"),
            list_price=catalog_on_demand("gcp"),
        )


# --- sim -----------------------------------------------------------------------------------------

SIM_GAP = 600.0
SIM_ON_DEMAND, SIM_SPOT = DEFAULT_ON_DEMAND_PRICE, DEFAULT_SPOT_PRICE


@contextlib.contextmanager
def sim_world() -> Iterator[World]:
    clock = SimClock(T0)
    # Spot for one tick, then gone for one: the reclamation comes when the clock reaches tick 1.
    traces = {"sim-a": Trace(SIM_GAP, (1, 0, 1, 1)), "sim-b": Trace(SIM_GAP, (1, 1, 1, 1))}
    provider = SimProvider(clock, traces, spot_price=SIM_SPOT, on_demand_price=SIM_ON_DEMAND)
    yield World(
        name="sim", provider=provider, gpu="V100", regions=("sim",), command=("true",),
        reclaim=lambda _: clock.sleep(SIM_GAP),
        unknown=unknown_instance("sim", "sim", "sim-a", "sim-999999", "p3.2xlarge"),
        list_price=lambda _: SIM_ON_DEMAND,
    )


def build(name: str, request: pytest.FixtureRequest, tmp: Path) -> contextlib.AbstractContextManager[World]:
    builders: dict[str, Callable[[], contextlib.AbstractContextManager[World]]] = {
        "local": lambda: local_world(tmp),
        "aws": lambda: aws_world(request),
        "kubernetes": kubernetes_world,
        "gcp": gcp_world,
        "sim": sim_world,
    }
    return builders[name]()


def fields_of(offer: Offer) -> dict[str, Any]:
    """What the catalog fixes about an offer's type (for comparing the two)."""
    return {"gpu": offer.gpu, "gpu_count": offer.gpu_count, "gpu_memory_gb": offer.gpu_memory_gb,
            "architecture": offer.architecture}
