"""Settings of the controller and the kubernetes provider from the environment the chart sets.

The Helm chart passes provider and timing settings as ORCH_K8S_* variables (see
helm/orch/templates/deployment.yaml), so the CLI needs no flag per setting; a bad value stops the
controller at start with a message naming the variable, rather than misbehaving later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from orchestrator.k8s.leader import LeaseSettings
from orchestrator.k8s.run import ControllerSettings
from providers.kubernetes.pods import PRESETS, Placement
from providers.kubernetes.provider import KubernetesSettings


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable."""


def _labels(env: Mapping[str, str], name: str) -> dict[str, str]:
    raw = env.get(name, "") or "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a JSON object of labels, got {raw!r}") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{name} must be a JSON object of string labels, got {raw!r}")
    return {str(k): v for k, v in value.items()}


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


def provider_settings_from_env(env: Mapping[str, str], *, default_namespace: str = "default") -> KubernetesSettings:
    preset = env.get("ORCH_K8S_PRESET", "") or "karpenter"
    if preset not in PRESETS:
        raise ConfigError(f"ORCH_K8S_PRESET must be one of {', '.join(PRESETS)}, got {preset!r}")
    types = tuple(t.strip() for t in env.get("ORCH_K8S_INSTANCE_TYPES", "").split(",") if t.strip())
    base = KubernetesSettings()
    return KubernetesSettings(
        namespace=env.get("ORCH_K8S_JOB_NAMESPACE", "") or env.get("POD_NAMESPACE", "") or default_namespace,
        region=env.get("ORCH_K8S_CLUSTER", "") or base.region,
        placement=Placement(preset=preset, spot_labels=_labels(env, "ORCH_K8S_SPOT_LABELS"),
                            on_demand_labels=_labels(env, "ORCH_K8S_ON_DEMAND_LABELS")),
        instance_types=types or None,
        price_region=env.get("ORCH_K8S_PRICE_REGION", "") or None,
        image=env.get("ORCH_K8S_JOB_IMAGE", "") or base.image,
    )


def controller_settings_from_env(env: Mapping[str, str], *, health_port: int | None = None,
                                 lease_name: str | None = None) -> ControllerSettings:
    base = ControllerSettings()
    duration = _number(env, "ORCH_K8S_LEASE_DURATION_SECONDS", base.lease.duration_s)
    try:
        lease = LeaseSettings(
            name=lease_name or base.lease.name,
            namespace=env.get("POD_NAMESPACE", "") or base.lease.namespace,
            duration_s=int(duration),
            renew_deadline_s=_number(env, "ORCH_K8S_RENEW_DEADLINE_SECONDS", base.lease.renew_deadline_s),
            retry_period_s=_number(env, "ORCH_K8S_RETRY_PERIOD_SECONDS", base.lease.retry_period_s))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"ORCH_K8S_*_SECONDS: {exc}") from None
    return replace(base, tick_s=_number(env, "ORCH_K8S_TICK_SECONDS", base.tick_s), lease=lease,
                   health_port=base.health_port if health_port is None else health_port)
