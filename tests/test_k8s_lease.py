"""Lease calls against a stalling API server: one call cannot outlive the renew deadline, so a leader
behind one bad connection keeps its lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from orchestrator.k8s.kube import KubeError
from orchestrator.k8s.leader import LeaderElector, LeaseSettings
from tests.kube_fake import KubeFake

NS = "lab"


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


def elector(kube: KubeFake, settings: LeaseSettings, identity: str = "replica-a") -> LeaderElector:
    # The client every other call uses: urllib3's default retries left on, as in the controller.
    api = client.ApiClient(client.Configuration(host=kube.url))
    return LeaderElector(api, settings, identity=identity)


def test_one_lease_call_gives_up_before_the_renew_deadline(kube: KubeFake) -> None:
    settings = LeaseSettings(name="orch", namespace=NS, duration_s=3, renew_deadline_s=2.0, retry_period_s=0.2)
    e = elector(kube, settings)
    assert e.try_acquire_or_renew()
    kube.stall("GET", "/leases/orch", 10.0, times=5)
    started = time.monotonic()
    with pytest.raises(KubeError):
        e.try_acquire_or_renew()
    took = time.monotonic() - started
    assert took < settings.renew_deadline_s - settings.retry_period_s, f"one lease call took {took:.1f} s"
    gets = [r for r in kube.lease_requests() if r[0] == "GET"]
    assert len(gets) == 2, "the stalled read was sent once, not retried by urllib3"


def test_a_leader_behind_one_stalled_renewal_keeps_its_lease(kube: KubeFake) -> None:
    settings = LeaseSettings(name="orch", namespace=NS, duration_s=3, renew_deadline_s=2.0, retry_period_s=0.2)
    e = elector(kube, settings)
    stop = threading.Event()
    thread = threading.Thread(target=e.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not e.is_leader and time.monotonic() < deadline:
            time.sleep(0.02)
        assert e.is_leader
        kube.stall("GET", "/leases/orch", 10.0)  # one renewal's read hangs, then its connection drops
        lapsed = 0
        until = time.monotonic() + 2 * settings.renew_deadline_s
        while time.monotonic() < until:
            lapsed += not e.is_leader
            time.sleep(0.001)
        assert not lapsed and not e.lost.is_set(), "the leader let its lease lapse behind one stalled call"
        assert kube.stalls[0].times == 0, "the stall was met"
    finally:
        stop.set()
        thread.join(5)


def test_the_shared_client_keeps_its_own_retries(kube: KubeFake) -> None:
    """Only lease calls lose urllib3's retries; pods and GpuJobs keep the client the caller made."""
    api = client.ApiClient(client.Configuration(host=kube.url))
    e = LeaderElector(api, LeaseSettings(), identity="x")
    assert api.configuration.retries is None
    assert e.api.api_client.configuration.retries is False
    assert e.api.api_client.configuration.host == kube.url
