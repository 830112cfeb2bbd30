"""Fixtures of the `kube` tier: one real control plane per session, a fresh namespace and nodes per test.

The control plane comes from `.ci/kube.sh` (built once, into ~/.cache/orch-kube). Without it the tier
is skipped with the command that builds it, except where ORCH_REQUIRE_KUBE=1 (set by `.ci/run`) or
CI=true: there a missing or broken server fails, so the tier can never pass CI by being skipped (the
same rule as ORCH_REQUIRE_POSTGRES in tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube_real.cluster import Cluster, find_binaries, kube_required
from tests.kube_real.nodes import NodeSim
from tests.kube_real.world import Controller, install_crd, new_namespace, release_namespace


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    binaries = find_binaries()
    if binaries is None:
        why = "no kube-apiserver built (run `bash .ci/kube.sh`; it installs and builds into ~/.cache/orch-kube)"
        if kube_required():
            pytest.fail(f"ORCH_REQUIRE_KUBE=1 or CI=true, but {why}")
        pytest.skip(why)
    folder: Path = tmp_path_factory.mktemp("kube")
    try:
        running = Cluster(binaries, folder).start()
    except Exception as exc:  # a server that is built but cannot start is a failure everywhere
        pytest.fail(f"the real control plane did not start: {exc}")
    try:
        install_crd(running.api_client())
        yield running
    finally:
        running.stop()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of its own per test (nodes are cluster-wide; `nodes` removes the ones it made)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    api = cluster.api_client()
    new_namespace(api, name)
    yield name
    with contextlib.suppress(Exception):
        release_namespace(cluster.api_client(), name)


@pytest.fixture
def nodes(cluster: Cluster, namespace: str) -> Iterator[NodeSim]:
    sim = NodeSim(cluster.api_client(), (namespace,)).start()
    yield sim
    sim.stop()
    with contextlib.suppress(Exception):
        sim.cleanup()


@pytest.fixture
def ctl(cluster: Cluster, namespace: str, nodes: NodeSim, tmp_path: Path) -> Iterator[Controller]:
    """The shipped controller on a thread, with its own SQLite store, over this test's namespace."""
    running = Controller(cluster.api_client(), namespace, "replica-a", store_dir=tmp_path)
    yield running
    running.stop()
    assert running.crashed is None and running.code in (0, None)
