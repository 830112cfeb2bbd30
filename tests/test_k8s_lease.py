"""Lease calls against a stalling API server: one call cannot outlive the renew deadline, so a leader
behind one bad connection keeps its lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

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


def wait_for(check: Callable[[], bool], timeout: float = 60.0, pause: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(pause)


def elector(kube: KubeFake, settings: LeaseSettings, identity: str = "replica-a") -> LeaderElector:
    # The client every other call uses: urllib3's default retries left on, as in the controller.
    api = client.ApiClient(client.Configuration(host=kube.url))
    return LeaderElector(api, settings, identity=identity)


def test_one_lease_call_gives_up_before_the_renew_deadline(kube: KubeFake) -> None:
    settings = LeaseSettings(name="orch", namespace=NS, duration_s=3, renew_deadline_s=2.0, retry_period_s=0.2)
    # A read and a write, each cut at the call timeout, and the wait before the next round: all within
    # the renew deadline, so a healthy leader renews after one stalled call before it must step down.
    e = elector(kube, settings)
    assert 2 * e._timeout() + settings.retry_period_s <= settings.renew_deadline_s
    assert e.try_acquire_or_renew()
    kube.stall("GET", "/leases/orch", 600.0, times=5)  # unanswered until the fake stops
    failed: list[BaseException] = []

    def renew() -> None:
        try:
            e.try_acquire_or_renew()
        except KubeError as exc:
            failed.append(exc)

    call = threading.Thread(target=renew, daemon=True)
    call.start()
    call.join(60)  # real time: the call's own socket timeout ends it, long before the stall would
    assert not call.is_alive(), "the lease call waited on a stalled connection"
    assert failed, "the stalled read must fail the round, not succeed"
    gets = [r for r in kube.lease_requests() if r[0] == "GET"]
    assert len(gets) == 2, "the stalled read was sent once, not retried by urllib3"


def test_a_leader_behind_one_stalled_renewal_keeps_its_lease(kube: KubeFake) -> None:
    settings = LeaseSettings(name="orch", namespace=NS, duration_s=3, renew_deadline_s=2.0, retry_period_s=0.2)
    e = elector(kube, settings)
    stop = threading.Event()
    thread = threading.Thread(target=e.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: e.is_leader)
        before = len(kube.lease_requests())
        kube.stall("GET", "/leases/orch", 600.0)  # one renewal's read hangs until the fake stops
        # Real time, the thing under test: the stalled call is cut by its socket timeout, and the
        # renew deadline runs on the same clock. Watched until two renewals have followed the stall.
        lapsed = 0

        def renewed_after_stall() -> bool:
            nonlocal lapsed
            lapsed += not e.is_leader
            since = [method for method, _ in kube.lease_requests()[before:]]
            if "GET" not in since:  # the first read after `stall` is the stalled one
                return False
            return since[since.index("GET"):].count("PUT") >= 2

        wait_for(renewed_after_stall, pause=0.001)
        assert not lapsed and not e.lost.is_set(), "the leader let its lease lapse behind one stalled call"
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
