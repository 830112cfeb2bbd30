"""The ORCH_K8S_* variables the chart sets become provider and controller settings."""

from __future__ import annotations

import pytest

from orchestrator.k8s.config import ConfigError, controller_settings_from_env, provider_settings_from_env
from providers.base import Market
from providers.kubernetes.pods import placement_for


def test_chart_environment_to_settings() -> None:
    env = {"ORCH_K8S_JOB_NAMESPACE": "jobs", "ORCH_K8S_PRESET": "labels",
           "ORCH_K8S_SPOT_LABELS": '{"pool": "spot"}', "ORCH_K8S_ON_DEMAND_LABELS": "{}",
           "ORCH_K8S_INSTANCE_TYPES": "p5.48xlarge, g5.xlarge", "ORCH_K8S_PRICE_REGION": "us-east-1",
           "ORCH_K8S_CLUSTER": "eks-1", "POD_NAMESPACE": "orch", "ORCH_K8S_LEASE_DURATION_SECONDS": "20",
           "ORCH_K8S_RENEW_DEADLINE_SECONDS": "15", "ORCH_K8S_RETRY_PERIOD_SECONDS": "3"}
    p = provider_settings_from_env(env)
    assert (p.namespace, p.region, p.instance_types, p.price_region) == ("jobs", "eks-1",
                                                                        ("p5.48xlarge", "g5.xlarge"), "us-east-1")
    assert placement_for(Market.SPOT, p.placement)["nodeSelector"] == {"pool": "spot"}
    c = controller_settings_from_env(env, health_port=9000, lease_name="orch-ha")
    assert (c.lease.name, c.lease.namespace, c.lease.duration_s, c.health_port) == ("orch-ha", "orch", 20, 9000)


@pytest.mark.parametrize(("env", "name"), [
    ({"ORCH_K8S_PRESET": "aks"}, "ORCH_K8S_PRESET"),
    ({"ORCH_K8S_SPOT_LABELS": "pool=spot"}, "ORCH_K8S_SPOT_LABELS"),
    ({"ORCH_K8S_TICK_SECONDS": "0"}, "ORCH_K8S_TICK_SECONDS"),
    ({"ORCH_K8S_LEASE_DURATION_SECONDS": "5"}, "ORCH_K8S_*_SECONDS"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name.replace("*", r"\*")):
        provider_settings_from_env(env)
        controller_settings_from_env(env)
