"""The one network opening a campaign with an in-VPC controller needs: the item service's port, from the
workers' network tag only.

Campaign workers are launched with the network tag `orch-worker` when the settings name an item
service (`instance_body`); `open_item_service` makes (once; safe to repeat) the firewall rule
`orch-item-service` on the settings' network that admits TCP on the service's port from instances
tagged `orch-worker` to instances tagged `orch-controller`, with no source range: nothing outside
the workers, and nothing on the internet, can reach it. The operator tags the controller's VM (or
the GKE nodes its pod runs on) `orch-controller`; docs/providers/gcp.md says how.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTROLLER_TAG", "FIREWALL", "WORKER_TAG", "firewall_body"]

WORKER_TAG = "orch-worker"
CONTROLLER_TAG = "orch-controller"
FIREWALL = "orch-item-service"


def firewall_body(network: str, port: int) -> dict[str, Any]:
    """The Firewall resource (field names of `compute_v1.Firewall`)."""
    return {
        "name": FIREWALL,
        "network": network,
        "direction": "INGRESS",
        "priority": 1000,
        "description": "orch item service: campaign workers reach the controller here, nothing else",
        "allowed": [{"I_p_protocol": "tcp", "ports": [str(port)]}],
        "source_tags": [WORKER_TAG],
        "target_tags": [CONTROLLER_TAG],
    }
