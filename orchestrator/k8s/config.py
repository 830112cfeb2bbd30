"""Settings of the controller and the kubernetes provider from the environment the chart sets.

The Helm chart passes provider and timing settings as ORCH_K8S_* variables (see
helm/orch/templates/deployment.yaml), so the CLI needs no flag per setting; a bad value stops the
controller at start with a message naming the variable, rather than misbehaving later.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from orchestrator.k8s.leader import LeaseSettings
from orchestrator.k8s.run import ControllerSettings
from orchestrator.store import Store
from orchestrator.store.item_service import ItemService
from orchestrator.store.item_source import ItemEndpoint
from providers.kubernetes.pods import PRESETS, Placement
from providers.kubernetes.provider import KubernetesSettings

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class ItemServiceSettings:
    """The item service campaign pods reach (orchestrator/store/item_service.py): the address they use,
    where it listens, and the secret every replica signs and checks attempt tokens with."""

    url: str
    secret: bytes = field(repr=False)
    host: str = "0.0.0.0"
    port: int = 8081

    def endpoint(self) -> ItemEndpoint:
        return ItemEndpoint(self.url, self.secret, frozenset({"kubernetes"}))

    def service(self, store: Store) -> ItemService:
        return ItemService(store, secret=self.secret, host=self.host, port=self.port)


def item_service_settings_from_env(env: Mapping[str, str]) -> ItemServiceSettings | None:
    """ORCH_K8S_ITEMS_URL (the Service address pods use; unset: no item service, campaign GpuJobs are
    refused), ORCH_K8S_ITEMS_PORT (where it listens, default 8081) and ORCH_K8S_ITEMS_SECRET (at least 16
    characters, the same on every replica: the chart makes one in a Secret). Without a secret a random
    one is made, and tokens then die with this process: running workers are refused after a restart."""
    url = env.get("ORCH_K8S_ITEMS_URL", "")
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"ORCH_K8S_ITEMS_URL must be an http:// or https:// URL, got {url!r}")
    raw_port = env.get("ORCH_K8S_ITEMS_PORT", "") or "8081"
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ConfigError(f"ORCH_K8S_ITEMS_PORT must be a port number, got {raw_port!r}")
    secret = env.get("ORCH_K8S_ITEMS_SECRET", "")
    if not secret:
        log.warning("ORCH_K8S_ITEMS_SECRET is not set: campaign workers' tokens will not survive this controller "
                    "(set it, the same on every replica; the Helm chart does)")
        return ItemServiceSettings(url, secrets.token_bytes(32), port=int(raw_port))
    if len(secret) < 16:
        raise ConfigError("ORCH_K8S_ITEMS_SECRET must be at least 16 characters")
    return ItemServiceSettings(url, secret.encode(), port=int(raw_port))
