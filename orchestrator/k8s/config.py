"""Settings of the controller and the kubernetes provider from the environment the chart sets.

The Helm chart passes provider and timing settings as ORCH_K8S_* variables (see
helm/orch/templates/deployment.yaml), so the CLI needs no flag per setting. `ControllerEnv` is the
typed model of those variables (pydantic; each field's alias is the variable's name, and
tests/test_k8s_config.py checks them against the chart): a bad value stops the controller at start
with one line naming the variable, rather than misbehaving later. An empty variable counts as unset,
as the chart leaves optional values empty.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

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


def _labels(raw: Any) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ValueError("must be a JSON object of labels") from None


def _words(raw: Any) -> Any:
    return tuple(t.strip() for t in raw.split(",") if t.strip()) if isinstance(raw, str) else raw


def _one_of(choices: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return AfterValidator(check)


def _http(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Labels = Annotated[dict[str, str], BeforeValidator(_labels)]


class ControllerEnv(BaseModel):
    """The controller's environment, as the chart sets it. Values are strings read as their type (lax,
    not strict: an environment has nothing but strings); other variables are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, use_attribute_docstrings=True)

    pod_namespace: str | None = Field(None, alias="POD_NAMESPACE")
    """The controller's own namespace (the downward API): its Lease, and the jobs' unless set below."""
    job_namespace: str | None = Field(None, alias="ORCH_K8S_JOB_NAMESPACE")
    """Where job pods are created."""
    preset: Annotated[str, _one_of(tuple(PRESETS))] = Field("karpenter", alias="ORCH_K8S_PRESET")
    """How spot and on-demand nodes are told apart (karpenter, gke, eks, labels)."""
    spot_labels: Labels = Field({}, alias="ORCH_K8S_SPOT_LABELS")
    """A JSON object of node labels that select spot nodes (preset labels)."""
    on_demand_labels: Labels = Field({}, alias="ORCH_K8S_ON_DEMAND_LABELS")
    """A JSON object of node labels that select on-demand nodes (preset labels)."""
    instance_types: Annotated[tuple[str, ...], BeforeValidator(_words)] = Field((), alias="ORCH_K8S_INSTANCE_TYPES")
    """Comma-separated instance types the cluster's nodes may be (empty: the catalog's)."""
    price_region: str | None = Field(None, alias="ORCH_K8S_PRICE_REGION")
    """The cloud region whose prices the cluster's nodes are billed at."""
    cluster: str | None = Field(None, alias="ORCH_K8S_CLUSTER")
    """The cluster's name, shown as the offers' region."""
    job_image: str | None = Field(None, alias="ORCH_K8S_JOB_IMAGE")
    """The image of jobs that name none."""
    tick_seconds: Seconds | None = Field(None, alias="ORCH_K8S_TICK_SECONDS")
    """Seconds between reconcile ticks."""
    lease_duration_seconds: Seconds | None = Field(None, alias="ORCH_K8S_LEASE_DURATION_SECONDS")
    """How long a leader's Lease holds without renewal."""
    renew_deadline_seconds: Seconds | None = Field(None, alias="ORCH_K8S_RENEW_DEADLINE_SECONDS")
    """How long the leader keeps trying to renew before it steps down."""
    retry_period_seconds: Seconds | None = Field(None, alias="ORCH_K8S_RETRY_PERIOD_SECONDS")
    """Seconds between a follower's tries to take the Lease."""
    items_url: Annotated[str, AfterValidator(_http)] | None = Field(None, alias="ORCH_K8S_ITEMS_URL")
    """The item service's address that campaign pods use (unset: no item service, campaign GpuJobs refused)."""
    items_port: int = Field(8081, gt=0, lt=65536, alias="ORCH_K8S_ITEMS_PORT")
    """Where the item service listens."""
    items_secret: str | None = Field(None, min_length=16, alias="ORCH_K8S_ITEMS_SECRET", repr=False)
    """At least 16 characters, the same on every replica: signs campaign workers' tokens."""


def read_env(env: Mapping[str, str]) -> ControllerEnv:
    """The model of `env`; ConfigError naming the first variable that is wrong, with its value (never
    the item service's secret)."""
    given = {k: v for k, v in env.items() if v}
    try:
        return ControllerEnv.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0])
        where = name + "".join(f"[{part!r}]" for part in err["loc"][1:])  # a label: ORCH_K8S_SPOT_LABELS['pool']
        problem = str(err["msg"]).removeprefix("Value error, ")
        shown = "" if name == "ORCH_K8S_ITEMS_SECRET" else f", got {given.get(name, '')!r}"
        raise ConfigError(f"{where}: {problem[:1].lower()}{problem[1:]}{shown}") from None


def provider_settings_from_env(env: Mapping[str, str], *, default_namespace: str = "default") -> KubernetesSettings:
    e = read_env(env)
    base = KubernetesSettings()
    return KubernetesSettings(
        namespace=e.job_namespace or e.pod_namespace or default_namespace,
        region=e.cluster or base.region,
        placement=Placement(preset=e.preset, spot_labels=e.spot_labels, on_demand_labels=e.on_demand_labels),
        instance_types=e.instance_types or None,
        price_region=e.price_region,
        image=e.job_image or base.image,
    )


def controller_settings_from_env(env: Mapping[str, str], *, health_port: int | None = None,
                                 lease_name: str | None = None) -> ControllerSettings:
    e = read_env(env)
    base = ControllerSettings()
    try:
        lease = LeaseSettings(
            name=lease_name or base.lease.name,
            namespace=e.pod_namespace or base.lease.namespace,
            duration_s=int(e.lease_duration_seconds or base.lease.duration_s),
            renew_deadline_s=e.renew_deadline_seconds or base.lease.renew_deadline_s,
            retry_period_s=e.retry_period_seconds or base.lease.retry_period_s)
    except ValueError as exc:
        raise ConfigError(f"ORCH_K8S_*_SECONDS: {exc}") from None
    return replace(base, tick_s=e.tick_seconds or base.tick_s, lease=lease,
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
    e = read_env(env)
    if e.items_url is None:
        return None
    if e.items_secret is None:
        log.warning("ORCH_K8S_ITEMS_SECRET is not set: campaign workers' tokens will not survive this controller "
                    "(set it, the same on every replica; the Helm chart does)")
        return ItemServiceSettings(e.items_url, secrets.token_bytes(32), port=e.items_port)
    return ItemServiceSettings(e.items_url, e.items_secret.encode(), port=e.items_port)
