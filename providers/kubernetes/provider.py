"""The kubernetes provider: every attempt is one pod on a spot or on-demand GPU node.

Pods are named from the attempt id, so a launch retried after a crash finds the pod it already made
(409 AlreadyExists returns that pod). Observation is one pod list per namespace (label
`orch.dev/managed=true`) plus one node list, shared by `instances()` and `notices()` within a tick.
Prices come from the catalog through the node's `node.kubernetes.io/instance-type`; a type the catalog
does not know (an on-premises node) is offered at price 0 with `price_source = "unknown"`, and the
status layer shows such cost as "unpriced", never as $0. `ApiException` and transport errors are
translated into the errors of `providers.base` in `_translate`, the only place that sees them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from providers.base import check_gang_size
from providers.catalog import load_catalog
from providers.kubernetes.gang import (
    MAX_GANG_NODES,
    PODGROUP_GROUP,
    PODGROUP_PLURAL,
    PODGROUP_VERSION,
    as_gang_pod,
    group_name,
    overdue_gangs,
    podgroup_manifest,
)
from providers.kubernetes.pods import (
    ANN_STOP,
    FINALIZER,
    GPU_RESOURCE,
    INSTANCE_TYPE_LABEL,
    LABEL_MANAGED,
    PRESETS,
    PROVIDER,
    Placement,
    pod_manifest,
    pod_name,
    read_notice,
    read_pod,
    started,
)
from vocab import (
    Abilities,
    Billing,
    Clock,
    Instance,
    LaunchRequest,
    Market,
    Notice,
    Offer,
    PermanentError,
    ProviderError,
    QuotaError,
    Resources,
    SystemClock,
    TransientError,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
_CONFLICT_RETRIES = 5  # read-modify-write rounds on a pod others write too (scheduler, kubelet)
_OPTION_KEYS = frozenset({"preset", "spot_labels", "on_demand_labels", "node_selector", "tolerations"})


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """One cluster. `region` names it in offers; `price_region` picks the catalog's price list."""

    namespace: str = "default"
    region: str = "kubernetes"
    placement: Placement = field(default_factory=Placement)
    # Instance types to offer; None: the GPU node types present in the cluster now. Give them when
    # nodes are made on demand (Karpenter) and none exist yet.
    instance_types: tuple[str, ...] | None = None
    price_region: str | None = None
    markets: tuple[Market, ...] = (Market.SPOT, Market.ON_DEMAND)
    image: str = "ghcr.io/orch-dev/orch:latest"
    agent: tuple[str, ...] = ("orch", "agent")
    service_account: str | None = None
    schedule_timeout_s: float = 900.0  # a pod unscheduled this long is reported failed-to-start
    snapshot_ttl_s: float = 1.0
    # Gangs (providers.kubernetes.gang): without a PodGroup API, a gang not all bound this long after
    # its creation is deleted whole; with one, the scheduler that runs the coscheduling plugin, if it is
    # not the default scheduler (None: leave schedulerName alone).
    gang_bind_timeout_s: float = 600.0
    gang_scheduler_name: str | None = None


@dataclass(frozen=True, slots=True)
class _NodeType:
    name: str
    gpu: str
    gpu_count: int
    gpu_memory_gb: float


@contextlib.contextmanager
def _translate(action: str) -> Iterator[None]:
    """ApiException and transport errors to the base errors, which say what to do next."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        status = int(exc.status or 0)
        reason, message = _status_detail(exc)
        text = f"{action}: {status} {reason}: {message}"
        if status == 403 and "exceeded quota" in message:
            raise QuotaError(text, provider=PROVIDER, code="ExceededQuota") from exc
        if status in (409, 429) or status >= 500 or status == 0:
            raise TransientError(text, provider=PROVIDER, code=reason) from exc
        raise PermanentError(text, provider=PROVIDER, code=reason) from exc
    except (HTTPError, ConnectionError, TimeoutError) as exc:
        raise TransientError(f"{action}: {exc}", provider=PROVIDER, code="connection") from exc


def _status_detail(exc: Any) -> tuple[str, str]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    return str(body.get("reason") or exc.reason or ""), str(body.get("message") or "")


def _is_status(exc: BaseException, code: int) -> bool:
    cause = exc.__cause__
    return getattr(cause, "status", None) == code


class KubernetesProvider:
    name = PROVIDER
    # A pod is billed from when it is bound and its job started, not from its creation: the loop keeps
    # the attempt launching (and unbilled) while the pod waits for a node or pulls its image. Deleting a
    # pod gives it its grace period to save: the loop waits to see it stopped before ending a cancelled
    # attempt.
    abilities = Abilities(bills_from_start=True, stops_gracefully=True, max_gang_nodes=MAX_GANG_NODES)

    def __init__(self, api_client: ApiClient, settings: KubernetesSettings | None = None, *,
                 clock: Clock | None = None) -> None:
        """`api_client` is configured by the caller (in-cluster, kubeconfig, or a test server)."""
        from kubernetes import client

        self.settings = settings or KubernetesSettings()
        if self.settings.placement.preset not in PRESETS:
            raise PermanentError(f"unknown placement preset {self.settings.placement.preset!r}; "
                                 f"use one of {', '.join(PRESETS)}", provider=PROVIDER)
        self.clock = clock or SystemClock()
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._snapshot: tuple[float, list[dict[str, Any]], dict[str, dict[str, Any]]] | None = None
        self._podgroups: tuple[float, bool] | None = None  # (asked at, served): the API is asked every 5 min

    def _plain(self, obj: Any) -> Any:
        return self._api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]

    # --- offers --------------------------------------------------------------------------------

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        if regions and self.settings.region not in regions:
            return []
        names = self.settings.instance_types
        found = {t.name: t for t in self._node_types()} if names is None else {}
        out: list[Offer] = []
        catalog = load_catalog()
        for name in names if names is not None else sorted(found):
            known = catalog.find(name)
            if known is not None and known.satisfies(resources):
                prices = known.region(self.settings.price_region or "") or known.regions[0]
                out += [self._offer(name, m, known.gpu, known.gpu_count, known.gpu_memory_gb, known.architecture,
                                    prices.spot if m is Market.SPOT else prices.on_demand, prices.on_demand,
                                    "catalog", catalog.billing_for(known.provider)) for m in self.settings.markets]
            elif known is None and name in found and _fits(found[name], resources):
                t = found[name]
                out += [self._offer(name, m, t.gpu, t.gpu_count, t.gpu_memory_gb, "", 0.0, 0.0, "unknown", Billing())
                        for m in self.settings.markets]
        return out

    def _offer(self, name: str, market: Market, gpu: str, count: int, mem: float, arch: str, price: float,
               on_demand: float, source: str, billing: Billing) -> Offer:
        return Offer(provider=PROVIDER, region=self.settings.region, zone=None, instance_type=name, market=market,
                     price_per_hour=price, gpu=gpu, gpu_count=count, gpu_memory_gb=mem, architecture=arch,
                     on_demand_price_per_hour=on_demand, price_source=source, billing=billing)

    def _node_types(self) -> list[_NodeType]:
        """GPU node types in the cluster, GPU details from GPU feature discovery labels where known."""
        types: dict[str, _NodeType] = {}
        for node in self._observe()[1].values():  # the tick's one node listing, not another
            labels = (node.get("metadata") or {}).get("labels") or {}
            count = int(((node.get("status") or {}).get("capacity") or {}).get(GPU_RESOURCE, "0") or 0)
            name = labels.get(INSTANCE_TYPE_LABEL)
            if count <= 0 or not name:
                continue
            mem_mib = float(labels.get("nvidia.com/gpu.memory", "0") or 0)
            types.setdefault(name, _NodeType(name, labels.get("nvidia.com/gpu.product", "unknown"), count,
                                             mem_mib / 1024.0))
        return list(types.values())

    # --- launch and terminate --------------------------------------------------------------------

    def _placement(self, options: Mapping[str, object]) -> Placement:
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise PermanentError(f"unknown placement.options.kubernetes keys: {sorted(unknown)}; "
                                 f"known: {sorted(_OPTION_KEYS)}", provider=PROVIDER, code="BadOption")
        base = self.settings.placement
        preset = str(options.get("preset", base.preset))
        if preset not in PRESETS:
            raise PermanentError(f"unknown placement preset {preset!r}", provider=PROVIDER, code="BadOption")

        def table(key: str, default: Mapping[str, str]) -> Mapping[str, str]:
            value = options.get(key, default)
            if not isinstance(value, Mapping):
                raise PermanentError(f"placement.options.kubernetes.{key} must be a table", provider=PROVIDER)
            return {str(k): str(v) for k, v in value.items()}

        tolerations = options.get("tolerations", base.tolerations)
        if not isinstance(tolerations, list | tuple):
            raise PermanentError("placement.options.kubernetes.tolerations must be a list", provider=PROVIDER)
        return Placement(preset=preset, spot_labels=table("spot_labels", base.spot_labels),
                         on_demand_labels=table("on_demand_labels", base.on_demand_labels),
                         node_selector=table("node_selector", base.node_selector), tolerations=tuple(tolerations))

    def launch(self, request: LaunchRequest) -> Instance:
        """Create the attempt's pod; a retry with the same attempt id returns the existing pod."""
        offer = request.offer
        if offer.provider != PROVIDER or offer.region != self.settings.region:
            raise PermanentError(f"offer {offer.key} is not an offer of this cluster ({self.settings.region})",
                                 provider=PROVIDER, code="ForeignOffer")
        body = pod_manifest(request, image=self.settings.image, agent=self.settings.agent,
                            placement=self._placement(request.options),
                            with_instance_type=request.offer.price_source != "unknown"
                            or bool(self.settings.instance_types),
                            service_account=self.settings.service_account)
        from kubernetes.client import V1Pod

        ns = self.settings.namespace
        try:
            with _translate("create pod"):
                pod = self._plain(self._core.create_namespaced_pod(ns, V1Pod.model_validate(body)))
        except TransientError as exc:
            if not _is_status(exc, 409):
                raise
            with _translate("read existing pod"):
                pod = self._plain(self._core.read_namespaced_pod(body["metadata"]["name"], ns))
        self._snapshot = None
        inst = read_pod(pod, None, region=self.settings.region, now=self.clock.now(),
                        schedule_timeout_s=self.settings.schedule_timeout_s)
        return replace(inst, instance_type=request.offer.instance_type)

    def launch_gang(self, request: LaunchRequest) -> list[Instance]:
        """`request.nodes` pods as one gang (`providers.kubernetes.gang`): under a PodGroup where the
        cluster serves one, else plain pods that `instances()` deletes whole if not all bound in time.
        A pod that cannot be created deletes the ones made before it (and the PodGroup)."""
        from kubernetes.client import V1Pod

        offer = request.offer
        if offer.provider != PROVIDER or offer.region != self.settings.region:
            raise PermanentError(f"offer {offer.key} is not an offer of this cluster ({self.settings.region})",
                                 provider=PROVIDER, code="ForeignOffer")
        check_gang_size(PROVIDER, request, MAX_GANG_NODES, "pods")
        placement = self._placement(request.options)
        ns = self.settings.namespace
        group = group_name(request.attempt_id) if self._podgroups_served() else None
        made: list[str] = []
        try:
            if group is not None:
                self._create_podgroup(request)
            pods = []
            for rank in range(request.nodes):
                body = as_gang_pod(pod_manifest(request, image=self.settings.image, agent=self.settings.agent,
                                                placement=placement, with_instance_type=offer.price_source != "unknown"
                                                or bool(self.settings.instance_types),
                                                service_account=self.settings.service_account, rank=rank),
                                   request, rank, pod_group=group, scheduler_name=self.settings.gang_scheduler_name)
                try:
                    with _translate("create gang pod"):
                        pods.append(self._plain(self._core.create_namespaced_pod(ns, V1Pod.model_validate(body))))
                except TransientError as exc:
                    if not _is_status(exc, 409):
                        raise
                    with _translate("read existing gang pod"):
                        pods.append(self._plain(self._core.read_namespaced_pod(body["metadata"]["name"], ns)))
                made.append(body["metadata"]["name"])
        except ProviderError:
            for name in made:  # all or nothing: the pods made so far go, then the group
                with contextlib.suppress(ProviderError):
                    self._delete_pod(name)
            if group is not None:
                with contextlib.suppress(ProviderError):
                    self._delete_podgroup(group)
            raise
        self._snapshot = None
        now = self.clock.now()
        return [replace(read_pod(p, None, region=self.settings.region, now=now,
                                 schedule_timeout_s=self.settings.schedule_timeout_s),
                        instance_type=offer.instance_type) for p in pods]

    def release_gang(self, request: LaunchRequest) -> bool:
        """Delete the gang's PodGroup once none of its pods is left; False while one is."""
        self._snapshot = None
        if any(i.attempt_id == request.attempt_id for i in self.instances()):
            return False
        if self._podgroups_served():
            self._delete_podgroup(group_name(request.attempt_id))
        return True

    def _podgroups_served(self) -> bool:
        """Whether the cluster serves the coscheduling PodGroup API (asked at most every 5 minutes)."""
        from kubernetes import client

        now = self.clock.now()
        if self._podgroups is not None and now - self._podgroups[0] < 300.0:
            return self._podgroups[1]
        try:
            with _translate("list podgroups"):
                client.CustomObjectsApi(self._api).list_namespaced_custom_object(
                    PODGROUP_GROUP, PODGROUP_VERSION, self.settings.namespace, PODGROUP_PLURAL, limit=1)
            served = True
        except PermanentError as exc:
            if not _is_status(exc, 404):
                raise
            served = False
        self._podgroups = (now, served)
        return served

    def _create_podgroup(self, request: LaunchRequest) -> None:
        from kubernetes import client

        body = podgroup_manifest(request, self.settings.gang_bind_timeout_s)
        try:
            with _translate("create podgroup"):
                client.CustomObjectsApi(self._api).create_namespaced_custom_object(
                    PODGROUP_GROUP, PODGROUP_VERSION, self.settings.namespace, PODGROUP_PLURAL, body)
        except TransientError as exc:
            if not _is_status(exc, 409):  # made by an earlier try
                raise

    def _delete_podgroup(self, name: str) -> None:
        from kubernetes import client

        try:
            with _translate("delete podgroup"):
                client.CustomObjectsApi(self._api).delete_namespaced_custom_object(
                    PODGROUP_GROUP, PODGROUP_VERSION, self.settings.namespace, PODGROUP_PLURAL, name)
        except PermanentError as exc:
            if not _is_status(exc, 404):
                raise

    def _delete_pod(self, name: str) -> None:
        ns = self.settings.namespace
        try:
            self._mark_for_termination(name, ns)
            with _translate("delete pod"):
                self._core.delete_namespaced_pod(name, ns)
        except PermanentError as exc:
            if not _is_status(exc, 404):
                raise
        self._snapshot = None

    def terminate(self, instance: Instance) -> None:
        """Delete the pod after marking it as orch's doing; a pod already gone is not an error."""
        self._delete_pod(instance.instance_id)

    def _mark_for_termination(self, name: str, ns: str) -> None:
        """Annotate the pod as stopped by orch and drop orch's finalizer, guarded by the resourceVersion
        read. On a real cluster the scheduler and the kubelet write the pod all the time, so a stale
        version (409) is read again and retried, as client-go's RetryOnConflict does."""
        for attempt in range(_CONFLICT_RETRIES):
            try:
                with _translate("mark pod for termination"):
                    pod = self._plain(self._core.read_namespaced_pod(name, ns))
                    finalizers = [f for f in (pod.get("metadata") or {}).get("finalizers") or [] if f != FINALIZER]
                    patch = {"metadata": {"annotations": {ANN_STOP: "true"}, "finalizers": finalizers or None,
                                          "resourceVersion": pod["metadata"]["resourceVersion"]}}
                    self._core.patch_namespaced_pod(name, ns, patch, _content_type="application/merge-patch+json")
                return
            except TransientError as exc:
                if not _is_status(exc, 409) or attempt == _CONFLICT_RETRIES - 1:
                    raise

    # --- observe ---------------------------------------------------------------------------------

    def _observe(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        now = self.clock.now()
        if self._snapshot is not None and now - self._snapshot[0] < self.settings.snapshot_ttl_s:
            return self._snapshot[1], self._snapshot[2]
        with _translate("list pods"):
            pods = self._plain(self._core.list_namespaced_pod(
                self.settings.namespace, label_selector=f"{LABEL_MANAGED}=true")).get("items") or []
        with _translate("list nodes"):
            nodes = {n["metadata"]["name"]: n for n in self._plain(self._core.list_node()).get("items") or []}
        self._snapshot = (now, pods, nodes)
        return pods, nodes

    def instances(self) -> list[Instance]:
        """Every orch pod; a gang without a PodGroup not all bound in time is deleted whole first (its
        pods are then seen stopping, and gone)."""
        pods, nodes = self._observe()
        now = self.clock.now()
        overdue = overdue_gangs(pods, now=now, timeout_s=self.settings.gang_bind_timeout_s)
        for attempt_id, names in overdue.items():
            log.warning("gang of attempt %s not all bound after %g s: deleting its %d pods", attempt_id,
                        self.settings.gang_bind_timeout_s, len(names))
            for name in names:
                self._delete_pod(name)
        if overdue:
            pods, nodes = self._observe()
        return [read_pod(p, nodes, region=self.settings.region, now=now,
                         schedule_timeout_s=self.settings.schedule_timeout_s) for p in pods]

    def notices(self) -> list[Notice]:
        pods, nodes = self._observe()
        now = self.clock.now()
        found = (read_notice(p, nodes, now=now) for p in pods)
        return [n for n in found if n is not None]

    def started(self, instance_id: str) -> bool | None:
        """Whether the pod's job has started (bound and its container run); None for a pod not listed.

        Read from the tick's listing, so asking about every live attempt after a tick costs no call.
        """
        pod = next((p for p in self._observe()[0] if (p.get("metadata") or {}).get("name") == instance_id), None)
        return None if pod is None else started(pod)

    def pod_name(self, attempt_id: str) -> str:
        return pod_name(attempt_id)


def _fits(t: _NodeType, resources: Resources) -> bool:
    """A node type outside the catalog: its architecture is unknown, so it never proves a minimum."""
    return resources.admits(t.gpu, t.gpu_count, t.gpu_memory_gb, None)

