"""A gang on GCE (the real compute_v1 client against tests/gce_fake.py): one bulkInsert of N with
minCount = N in one zone under a compact placement policy, all or nothing, the policy gone with it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from providers.base import launch_nodes
from providers.gcp.gang import node_name, policy_name
from providers.gcp.provider import GcpProvider
from tests import gce_fake
from tests.gce_fake import GceFake, ManualClock
from vocab import CapacityError, LaunchRequest, Market, Offer, PermanentError, Resources

fake, clock, gcp = gce_fake.FIXTURES


def gang_request(gcp: GcpProvider, nodes: int = 3, attempt: str = "gang-1") -> LaunchRequest:
    offer: Offer = next(o for o in gcp.offers(Resources(gpus=("L4",)), ["us-central1"])
                        if o.zone == "us-central1-a" and o.market is Market.SPOT)
    return LaunchRequest(job_id="job-g", task_id="task-g", attempt_id=attempt, attempt_number=0, offer=offer,
                         command=("torchrun", "train.py"), env={}, checkpoint_uri="gs://ckpt/job-g",
                         grace_seconds=30.0, nodes=nodes)


def test_one_bulk_insert_of_n_under_a_compact_policy(gcp: GcpProvider, fake: GceFake) -> None:
    req = gang_request(gcp)
    gang = launch_nodes(gcp, req)
    assert fake.calls["bulkInsert"] == 1 and fake.calls["insert"] == 0
    assert [i.node_rank for i in gang] == [0, 1, 2]
    assert [i.instance_id for i in gang] == [node_name("gang-1", r) for r in range(3)]
    assert all(i.attempt_id == "gang-1" and i.zone == "us-central1-a" and i.market is Market.SPOT for i in gang)
    sent = fake.bulk_inserted[0]  # the JSON the real client put on the wire
    assert (sent["count"], sent["minCount"]) == ("3", "3")  # int64 travels as a string
    props = sent["instanceProperties"]
    assert props["machineType"] == "g2-standard-4" and props["labels"]["orch-nodes"] == "3"
    assert props["resourcePolicies"] == [f"projects/orch-test/regions/us-central1/resourcePolicies/"
                                         f"{policy_name('gang-1')}"]
    policy = fake.policies[("us-central1", policy_name("gang-1"))]
    assert policy["groupPlacementPolicy"] == {"collocation": "COLLOCATED", "vmCount": 3}
    script = next(i["value"] for i in props["metadata"]["items"] if i["key"] == "startup-script")
    assert "export ORCH_NUM_NODES=3" in script and "ORCH_NODE_RANK" not in script  # the agent reads its name
    # The listing knows each VM's rank; a repeated launch returns the same gang.
    listed = sorted((i for i in gcp.instances() if i.attempt_id == "gang-1"), key=lambda i: i.node_rank)
    assert [(i.instance_id, i.node_rank) for i in listed] == [(i.instance_id, i.node_rank) for i in gang]
    again = launch_nodes(gcp, req)
    assert [i.instance_id for i in again] == [i.instance_id for i in gang]
    assert len(fake.instances) == 3
    # The policy stays while a VM uses it and goes with the gang.
    assert gcp.release_gang(req) is False
    for inst in gang:
        gcp.terminate(inst)
    assert gcp.release_gang(req) is True and fake.policies == {}
    assert gcp.release_gang(req) is True


def test_too_few_free_vms_make_none_and_leave_nothing(gcp: GcpProvider, fake: GceFake, clock: ManualClock) -> None:
    fake.free_vms["us-central1-a"] = 2
    req = gang_request(gcp)
    with pytest.raises(CapacityError):
        launch_nodes(gcp, req)
    assert fake.instances == {} and fake.policies == {}
    assert gcp.capacity.avoided(req.offer.key, clock.now())
    fake.free_vms["us-central1-a"] = 3
    assert len(launch_nodes(gcp, replace(req, attempt_id="gang-2"))) == 3


def test_whatever_gce_left_of_a_failed_gang_is_deleted(gcp: GcpProvider, fake: GceFake) -> None:
    fake.stockout("us-central1-a", leave_instance=True)
    with pytest.raises(CapacityError):
        launch_nodes(gcp, gang_request(gcp, nodes=4))
    assert fake.instances == {}, "a VM of the failed gang was left behind"
    assert fake.calls["delete"] >= 1


def test_a_gang_past_the_limit_or_of_another_provider_is_refused(gcp: GcpProvider, fake: GceFake) -> None:
    with pytest.raises(PermanentError, match="gcp cannot launch 129 nodes as one gang"):
        launch_nodes(gcp, gang_request(gcp, nodes=129))
    req = gang_request(gcp)
    with pytest.raises(PermanentError, match="not a GCP offer"):
        gcp.launch_gang(replace(req, offer=replace(req.offer, provider="aws")))
    assert fake.calls["bulkInsert"] == 0 and fake.policies == {}
