"""A controller in the cloud on GCP: the firewall rule that lets campaign workers (by network tag) and
nothing else reach the item service, against the GCE REST fake with the real compute_v1 client."""

from __future__ import annotations

import pytest

from providers.gcp.network import CONTROLLER_TAG, FIREWALL, WORKER_TAG
from providers.gcp.provider import GcpProvider
from providers.gcp.settings import GcpSettingsError
from tests import gce_fake
from tests.gce_fake import GceFake, ManualClock

fake, clock, gcp = gce_fake.FIXTURES
SERVICE = {"item_service_url": "https://10.128.0.9:8443", "item_service_tls_cert": "/etc/orch/items.pem",
           "item_service_tls_key": "/etc/orch/items.key"}


def test_the_service_port_is_open_to_the_workers_tag_only(fake: GceFake, clock: ManualClock) -> None:
    provider = gce_fake.provider(fake, clock, network="global/networks/lab", **SERVICE)
    assert provider.open_item_service(8443) == FIREWALL
    assert provider.open_item_service(8443) == FIREWALL  # found, not made twice
    assert fake.calls["firewalls.insert"] == 1
    rule = fake.firewalls[FIREWALL]
    assert rule["network"] == "global/networks/lab" and rule["direction"] == "INGRESS"
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["8443"]}]
    assert (rule["sourceTags"], rule["targetTags"]) == ([WORKER_TAG], [CONTROLLER_TAG])
    assert "sourceRanges" not in rule, "open to an address range"


def test_workers_carry_the_tag_only_with_an_item_service(fake: GceFake, clock: ManualClock,
                                                        gcp: GcpProvider) -> None:
    from tests.test_gcp_provider import launch_request, spot_offer  # the GCP tests' launch request

    tagged = gce_fake.provider(fake, clock, **SERVICE)
    for n, (provider, tags) in enumerate(((gcp, None), (tagged, {"items": [WORKER_TAG]}))):
        provider.launch(launch_request(spot_offer(provider), attempt=f"attempt-{n}"))
        assert fake.inserted[-1].get("tags") == tags


def test_gcp_settings_refuse_a_service_without_tls() -> None:
    with pytest.raises(GcpSettingsError, match="item_service_url: must be https://"):
        gce_fake.settings(item_service_url="http://10.128.0.9:8443")
