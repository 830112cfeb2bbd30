"""The ORCH_K8S_* variables the chart sets become provider and controller settings."""

from __future__ import annotations

import pytest

from orchestrator.k8s.config import ConfigError, controller_settings_from_env, provider_settings_from_env
from providers.kubernetes.pods import placement_for
from vocab import Market


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


def test_the_model_names_every_variable_the_chart_sets() -> None:
    """ControllerEnv's aliases and the chart's env entries are one list: a variable added to either alone
    would be ignored by the controller or never set by the chart."""
    import re
    from pathlib import Path

    from orchestrator.k8s.config import ControllerEnv

    chart = (Path(__file__).resolve().parents[1] / "helm" / "orch" / "templates" / "deployment.yaml").read_text()
    set_by_chart = set(re.findall(r"- name: (ORCH_K8S_\w+|POD_NAMESPACE)", chart))
    read_by_model = {f.alias for f in ControllerEnv.model_fields.values()}
    assert set_by_chart == read_by_model


@pytest.mark.parametrize(("env", "words"), [
    ({"ORCH_K8S_SPOT_LABELS": '{"pool": 1}'}, "ORCH_K8S_SPOT_LABELS['pool']: input should be a valid string"),
    ({"ORCH_K8S_TICK_SECONDS": "nan"}, "ORCH_K8S_TICK_SECONDS: input should be a finite number, got 'nan'"),
    ({"ORCH_K8S_ITEMS_SECRET": "short"}, "ORCH_K8S_ITEMS_SECRET: string should have at least 16 characters"),
])
def test_a_bad_variable_is_one_line_with_its_value_but_never_the_secret(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        controller_settings_from_env(env)
    assert str(err.value).startswith(words) and "\n" not in str(err.value)
    assert "short" not in str(err.value)


def test_empty_variables_are_unset() -> None:
    empty = {name: "" for name in ("ORCH_K8S_PRESET", "ORCH_K8S_TICK_SECONDS", "ORCH_K8S_SPOT_LABELS")}
    assert provider_settings_from_env(empty) == provider_settings_from_env({})
    assert controller_settings_from_env(empty) == controller_settings_from_env({})
