"""The GCP provider's offers and launches, through the real compute_v1 REST client, against the GCE fake."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from providers.base import Provider
from providers.gcp.launch import request_id
from providers.gcp.provider import GcpProvider
from tests import gce_fake
from tests.gce_fake import GceFake, ManualClock
from tests.gcs_fake import anonymous
from vocab import (
    CapacityError,
    InstanceState,
    LaunchRequest,
    Market,
    Offer,
    PermanentError,
    QuotaError,
    Resources,
    TransientError,
)

L4 = Resources(gpus=("L4",))


fake, clock, gcp = gce_fake.FIXTURES


def spot_offer(gcp: GcpProvider, zone: str = "us-central1-a", market: Market = Market.SPOT) -> Offer:
    return next(o for o in gcp.offers(L4, ["us-central1"]) if o.zone == zone and o.market is market)


def launch_request(offer: Offer, attempt: str = "attempt-1") -> LaunchRequest:
    return LaunchRequest(
        job_id="job-1", task_id="task-1", attempt_id=attempt, attempt_number=0, offer=offer,
        command=("python", "fold.py"), env={"FOLD": "1"}, checkpoint_uri="gs://ckpt/job-1", grace_seconds=30.0,
    )


# --- offers ------------------------------------------------------------------------------------


def test_offers_are_catalog_types_in_the_configured_zones(gcp: GcpProvider) -> None:
    assert isinstance(gcp, Provider) and gcp.name == "gcp"
    offers = gcp.offers(L4, [], job_id="job-1")
    central = {o.zone for o in offers if o.region == "us-central1"}
    assert central == {"us-central1-a", "us-central1-b"}  # us-central1-c is not configured
    assert {o.zone for o in offers if o.region == "us-east1"} == {"us-east1-b", "us-east1-c", "us-east1-d"}
    spot = next(o for o in offers if o.market is Market.SPOT)
    assert (spot.instance_type, spot.price_per_hour, spot.on_demand_price_per_hour) == ("g2-standard-4", 0.28, 0.71)
    assert all(o.provider == "gcp" and o.price_source == "catalog" and o.gpu == "L4" for o in offers)
    assert {o.region for o in gcp.offers(L4, ["us-east1"])} == {"us-east1"}
    assert gcp.offers(L4, ["europe-west4"]) == []  # not configured: nothing, not everything


# --- launch ------------------------------------------------------------------------------------


def test_launch_starts_one_labelled_spot_instance(gcp: GcpProvider, fake: GceFake) -> None:
    inst = gcp.launch(launch_request(spot_offer(gcp)))
    assert inst.state is InstanceState.RUNNING and inst.market is Market.SPOT
    assert (inst.attempt_id, inst.job_id, inst.task_id) == ("attempt-1", "job-1", "task-1")
    assert (inst.zone, inst.region, inst.instance_type) == ("us-central1-a", "us-central1", "g2-standard-4")
    sent = fake.inserted[0]  # the JSON the real client put on the wire
    assert sent["scheduling"]["provisioningModel"] == "SPOT"
    assert sent["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert sent["labels"] == {"orch-managed": "true", "orch-job": "job-1", "orch-task": "task-1",
                              "orch-attempt": "attempt-1"}
    script = next(i["value"] for i in sent["metadata"]["items"] if i["key"] == "startup-script")
    assert "--gce-metadata http://metadata.google.internal --grace 30 -- python fold.py" in script
    assert fake.request_ids == [request_id("attempt-1")]


def test_on_demand_is_standard(gcp: GcpProvider, fake: GceFake) -> None:
    inst = gcp.launch(launch_request(spot_offer(gcp, market=Market.ON_DEMAND)))
    assert inst.market is Market.ON_DEMAND
    assert fake.inserted[0]["scheduling"]["provisioningModel"] == "STANDARD"


def test_a_retried_launch_returns_the_first_instance(gcp: GcpProvider, fake: GceFake, clock: ManualClock) -> None:
    req = launch_request(spot_offer(gcp))
    first = gcp.launch(req)
    assert gcp.launch(req) == first  # GCE dedups on requestId
    fake.forget_request_ids = True  # past GCE's requestId window: the name answers 409 alreadyExists
    again = gce_fake.provider(fake, clock).launch(req)  # a restarted controller, same attempt
    assert again.instance_id == first.instance_id
    assert len(fake.instances) == 1 and fake.calls["insert"] == 3
    assert set(fake.request_ids) == {request_id("attempt-1")}


def test_transient_insert_errors_are_retried(gcp: GcpProvider, fake: GceFake, clock: ManualClock) -> None:
    fake.fail_next("insert", 503, "backendError", times=2)
    inst = gcp.launch(launch_request(spot_offer(gcp)))
    assert inst.state is InstanceState.RUNNING and len(fake.instances) == 1
    assert fake.calls["insert"] == 3 and len(clock.sleeps) == 2


def test_transient_errors_give_up_within_bounds(gcp: GcpProvider, fake: GceFake) -> None:
    fake.fail_next("insert", 500, "backendError", times=10)
    with pytest.raises(TransientError):
        gcp.launch(launch_request(spot_offer(gcp)))
    assert fake.calls["insert"] == 3 and fake.instances == {}


def test_a_stockout_is_a_capacity_error_that_leaves_nothing(
    gcp: GcpProvider, fake: GceFake, clock: ManualClock
) -> None:
    fake.stockout("us-central1-a", leave_instance=True)
    offer = spot_offer(gcp)
    with pytest.raises(CapacityError) as caught:
        gcp.launch(launch_request(offer))
    assert caught.value.code == "zoneresourcepoolexhausted" and caught.value.retry_after == 300.0
    assert fake.instances == {} and fake.calls["delete"] == 1  # the failed instance was deleted
    marked = {o.key: o.available for o in gcp.offers(L4, ["us-central1"])}
    assert marked[offer.key] is False and marked[spot_offer(gcp, "us-central1-b").key] is None
    clock.advance(301.0)
    assert spot_offer(gcp).available is None  # remembered for `retry_after` only


def test_quota_is_a_quota_error_without_retries(gcp: GcpProvider, fake: GceFake) -> None:
    fake.fail_next("insert", 403, "quotaExceeded", "Quota 'NVIDIA_L4_GPUS' exceeded. Limit: 0.0 in region")
    with pytest.raises(QuotaError, match="NVIDIA_L4_GPUS"):
        gcp.launch(launch_request(spot_offer(gcp)))
    assert fake.calls["insert"] == 1


def test_a_missing_permission_is_permanent(gcp: GcpProvider, fake: GceFake) -> None:
    fake.fail_next("insert", 403, "forbidden", "Required 'compute.instances.create' permission")
    with pytest.raises(PermanentError, match=r"compute\.instances\.create"):
        gcp.launch(launch_request(spot_offer(gcp)))
    assert fake.calls["insert"] == 1


def test_slow_operations_are_waited_for(gcp: GcpProvider, fake: GceFake) -> None:
    fake.slow_operations(3)
    inst = gcp.launch(launch_request(spot_offer(gcp)))
    assert inst.state is InstanceState.RUNNING and fake.calls["operations.wait"] == 3


def test_an_operation_past_its_timeout_is_abandoned_and_cleaned_up(fake: GceFake, clock: ManualClock) -> None:
    gcp = gce_fake.provider(fake, clock, operation_timeout_seconds=0.3)
    fake.slow_operations(10_000)
    fake.wait_hold_seconds = 0.05
    with pytest.raises(TransientError) as caught:
        gcp.launch(launch_request(spot_offer(gcp)))
    assert caught.value.code == "OperationTimeout"
    assert fake.instances == {}  # no orphan left provisioning


def test_an_unreachable_api_is_transient(clock: ManualClock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: connections are refused
    gcp = GcpProvider(clock, gce_fake.settings(), credentials=anonymous(),
                      client_options={"api_endpoint": f"http://127.0.0.1:{port}"})
    with pytest.raises(TransientError, match="connection failed"):
        gcp.instances()


def test_offers_of_other_providers_or_unknown_types_are_refused(gcp: GcpProvider, fake: GceFake) -> None:
    offer = spot_offer(gcp)
    with pytest.raises(PermanentError, match="not a GCP offer"):
        gcp.launch(launch_request(replace(offer, provider="aws")))
    with pytest.raises(PermanentError, match="not a GCP type"):
        gcp.launch(launch_request(replace(offer, instance_type="p4d.24xlarge")))
    assert fake.calls["insert"] == 0

