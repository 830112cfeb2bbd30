"""The `gcp` provider: GPU instances on Compute Engine, SPOT or STANDARD, through google-cloud-compute.

Each method is a few API calls and safe to repeat. `launch` sends a `requestId` and an instance name
both derived from the attempt id, so a retried launch (by tenacity here, or by the reconciler after a
crash) gets the first try's instance back instead of a second one; it waits, bounded, for the zone
operation, because GCE reports a stockout there and not on the insert call, and it deletes what a
failed launch left behind before raising. Credentials are the client library's business
(`google.auth.default`); nothing in this package reads, stores or logs them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from google.api_core import exceptions as gexc

from providers.base import check_gang_size
from providers.catalog import catalog_offers, load_catalog
from providers.gcp.clients import ComputeClients
from providers.gcp.errors import PROVIDER, call, gcp_errors, operation_error
from providers.gcp.gang import MAX_GANG_NODES, bulk_body, node_name, policy_body, policy_name
from providers.gcp.launch import instance_body, request_id
from providers.gcp.observe import (
    basename,
    list_managed,
    preempted_names,
    to_instance,
    vanished_preempted,
    zones_to_check,
)
from providers.gcp.settings import GcpSettings, GcpSettingsError
from vocab import (
    Abilities,
    CapacityError,
    CapacityMemory,
    Clock,
    Instance,
    LaunchRequest,
    Notice,
    Offer,
    PermanentError,
    ProviderError,
    Resources,
    TransientError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
# GCE's operations.wait holds a request for up to two minutes; the client must wait a little longer.
WAIT_CALL_SECONDS = 130.0
# How long a reclaimed instance GCE already deleted is still reported (so a tick that failed to
# record it gets another chance), before orch forgets it.
FORGET_GONE_SECONDS = 600.0


class GcpProvider:
    name = PROVIDER
    # A gang is one bulkInsert of N under a compact placement policy (`providers.gcp.gang`).
    abilities = Abilities(max_gang_nodes=MAX_GANG_NODES)

    def __init__(
        self,
        clock: Clock,
        settings: GcpSettings,
        *,
        credentials: Any = None,
        client_options: Mapping[str, Any] | None = None,
        transport: str = "rest",
    ) -> None:
        self.clock = clock
        self.settings = settings
        self._clients = ComputeClients(credentials=credentials, client_options=client_options, transport=transport)
        self._billing = load_catalog().billing_for(PROVIDER)
        self._lock = threading.Lock()
        # Stockouts remembered; the controller's own memory once it hands it over (`share_capacity`).
        self.capacity = CapacityMemory()
        self._known: dict[tuple[str, str], Instance] = {}  # (zone, name) -> as last listed or launched
        self._gone: dict[tuple[str, str], tuple[Instance, float]] = {}  # reclaimed and deleted, reported since

    def share_capacity(self, memory: CapacityMemory) -> None:
        """Use the controller's capacity memory instead of a private one (see `CapacityMemory`)."""
        self.capacity = memory

    def _call(self, fn: Callable[[], T], operation: str, where: str) -> T:
        return call(
            fn,
            operation=operation,
            where=where,
            retry=self.settings.retry,
            sleep=self.clock.sleep,
            capacity_retry_after=self.settings.capacity_retry_after_seconds,
        )

    def open_item_service(self, port: int) -> str:
        """The firewall rule admitting the controller's item service port from the workers' network tag
        only (`providers/gcp/network.py`); made once, found afterwards. Returns its name."""
        from google.cloud import compute_v1

        from providers.gcp.network import FIREWALL, firewall_body

        firewalls = self._clients.firewalls
        where = self._where()

        def ensure() -> None:
            try:
                firewalls.get(project=self.settings.project, firewall=FIREWALL, retry=None,
                              timeout=self.settings.request_timeout_seconds)
                return
            except gexc.NotFound:
                pass
            try:
                op = firewalls.insert_unary(project=self.settings.project,
                                            firewall_resource=compute_v1.Firewall(firewall_body(self.settings.network,
                                                                                                port)),
                                            retry=None, timeout=self.settings.request_timeout_seconds)
            except gexc.Conflict:  # made by an earlier try
                return
            if op.status != compute_v1.Operation.Status.DONE:
                self._clients.global_operations.wait(project=self.settings.project, operation=op.name, retry=None,
                                                     timeout=self.settings.operation_timeout_seconds)

        self._call(ensure, "firewalls.insert", where)
        return FIREWALL

    def _where(self, zone: str | None = None) -> str:
        return f"{self.settings.project}/{zone}" if zone else self.settings.project

    # --- offers -----------------------------------------------------------------------------

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        """Catalog GPU types in the configured zones at catalog prices (GCE publishes no spot price API)."""
        wanted = [r for r in (regions or self.settings.region_names) if r in self.settings.regions]
        if not wanted:
            return []
        found = catalog_offers(
            provider=PROVIDER,
            types=load_catalog().of(PROVIDER),
            resources=resources,
            regions=wanted,
            billing=self._billing,
        )
        allowed = {r: set(self.settings.region(r).zones) for r in wanted}
        now = self.clock.now()
        return [
            replace(o, available=False) if self.capacity.avoided(o.key, now) else o
            for o in found
            if not allowed[o.region] or o.zone in allowed[o.region]
        ]

    # --- launch -----------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> Instance:
        offer = request.offer
        if offer.provider != PROVIDER:
            raise PermanentError(f"offer {offer.key} is not a GCP offer", provider=PROVIDER)
        itype = load_catalog().get(PROVIDER, offer.instance_type)
        if itype is None:
            raise PermanentError(f"{offer.instance_type!r} is not a GCP type of the catalog", provider=PROVIDER)
        try:
            body = instance_body(request, self.settings, itype)
        except GcpSettingsError as exc:
            raise PermanentError(str(exc), provider=PROVIDER, code="RegionNotConfigured") from None
        zone, name = str(offer.zone), str(body["name"])
        where = self._where(zone)
        try:
            op = self._call(lambda: self._insert(zone, body, request.attempt_id), "instances.insert", where)
            if op is not None:
                self._wait(op, zone, "instances.insert")
            raw = self._call(lambda: self._get(zone, name), "instances.get", where)
            instance = to_instance(raw, {})
        except ProviderError as exc:
            if isinstance(exc, CapacityError):
                self.capacity.refuse(offer.key, self.clock.now() + exc.retry_after)
            # The insert may have made the instance before the failure reached us: leave no orphan.
            self._delete_quietly(zone, name)
            raise
        with self._lock:
            self._known[(zone, name)] = instance
        return instance

    def launch_gang(self, request: LaunchRequest) -> list[Instance]:
        """One bulkInsert of `count = minCount = nodes` in the offer's zone under the attempt's compact
        placement policy: GCE makes all or none. After any failure every VM named for the gang is deleted."""
        offer = request.offer
        if offer.provider != PROVIDER:
            raise PermanentError(f"offer {offer.key} is not a GCP offer", provider=PROVIDER)
        check_gang_size(PROVIDER, request, MAX_GANG_NODES)
        itype = load_catalog().get(PROVIDER, offer.instance_type)
        if itype is None:
            raise PermanentError(f"{offer.instance_type!r} is not a GCP type of the catalog", provider=PROVIDER)
        zone = str(offer.zone)
        where = self._where(zone)
        policy = self._call(lambda: self._ensure_policy(request), "resourcePolicies.insert", self._where(offer.region))
        try:
            body = bulk_body(request, self.settings, itype, policy)
        except GcpSettingsError as exc:
            raise PermanentError(str(exc), provider=PROVIDER, code="RegionNotConfigured") from None
        names = [node_name(request.attempt_id, rank) for rank in range(request.nodes)]
        try:
            op = self._call(lambda: self._bulk_insert(zone, body, request.attempt_id), "instances.bulkInsert", where)
            if op is not None:
                self._wait(op, zone, "instances.bulkInsert")
            gang = [to_instance(self._call(lambda n=n: self._get(zone, n), "instances.get", where), {})  # type: ignore[misc]
                    for n in names]
        except ProviderError as exc:
            if isinstance(exc, CapacityError):
                self.capacity.refuse(offer.key, self.clock.now() + exc.retry_after)
            for name in names:  # all or nothing, whatever GCE did before the failure reached us
                self._delete_quietly(zone, name)
            with contextlib.suppress(ProviderError):
                self.release_gang(request)
            raise
        with self._lock:
            self._known.update({(zone, i.instance_id): i for i in gang})
        return gang

    def _ensure_policy(self, request: LaunchRequest) -> str:
        """The attempt's compact placement policy, made unless an earlier try made it; its URL."""
        from google.cloud import compute_v1

        region, project = request.offer.region, self.settings.project
        try:
            req = compute_v1.InsertResourcePolicyRequest(
                project=project, region=region, request_id=request_id("policy/" + request.attempt_id),
                resource_policy_resource=compute_v1.ResourcePolicy(policy_body(request)))
            op = self._clients.resource_policies.insert_unary(request=req, retry=None,
                                                              timeout=self.settings.request_timeout_seconds)
            if op.status != compute_v1.Operation.Status.DONE:
                self._clients.region_operations.wait(project=project, region=region, operation=op.name, retry=None,
                                                     timeout=self.settings.operation_timeout_seconds)
        except gexc.Conflict:
            pass  # made by an earlier try
        return f"projects/{project}/regions/{region}/resourcePolicies/{policy_name(request.attempt_id)}"

    def _bulk_insert(self, zone: str, body: Mapping[str, Any], attempt_id: str) -> Any:
        """The bulkInsert operation, or None when an earlier try already made the gang (409)."""
        from google.cloud import compute_v1

        req = compute_v1.BulkInsertInstanceRequest(
            project=self.settings.project, zone=zone, request_id=request_id("gang/" + attempt_id),
            bulk_insert_instance_resource_resource=compute_v1.BulkInsertInstanceResource(body))
        try:
            return self._clients.instances.bulk_insert_unary(request=req, retry=None,
                                                             timeout=self.settings.request_timeout_seconds)
        except gexc.Conflict:
            return None

    def release_gang(self, request: LaunchRequest) -> bool:
        """Delete the attempt's placement policy; False while GCE says a VM still uses it."""
        region = request.offer.region

        def go() -> bool:
            try:
                self._clients.resource_policies.delete_unary(
                    project=self.settings.project, region=region, resource_policy=policy_name(request.attempt_id),
                    retry=None, timeout=self.settings.request_timeout_seconds)
            except gexc.NotFound:
                return True
            except gexc.BadRequest as exc:
                reasons = {str(e.get("reason")) for e in (exc.errors or []) if isinstance(e, dict)}
                if "resourceInUseByAnotherResource" in reasons or "already being used" in str(exc):
                    return False
                raise
            return True

        return self._call(go, "resourcePolicies.delete", self._where(region))

    def _insert(self, zone: str, body: Mapping[str, Any], attempt_id: str) -> Any:
        """The insert operation, or None when an earlier try already made the instance (409)."""
        from google.cloud import compute_v1

        req = compute_v1.InsertInstanceRequest(
            project=self.settings.project,
            zone=zone,
            instance_resource=compute_v1.Instance(body),
            request_id=request_id(attempt_id),
        )
        try:
            return self._clients.instances.insert_unary(
                request=req, retry=None, timeout=self.settings.request_timeout_seconds
            )
        except gexc.Conflict:
            return None

    def _get(self, zone: str, name: str) -> Any:
        return self._clients.instances.get(
            project=self.settings.project,
            zone=zone,
            instance=name,
            retry=None,
            timeout=self.settings.request_timeout_seconds,
        )

    def _wait(self, op: Any, zone: str, operation: str) -> None:
        """Wait for a zone operation until done or the configured timeout; raise what it failed with."""
        from google.cloud import compute_v1

        where = self._where(zone)
        limit = self.settings.operation_timeout_seconds
        deadline = self.clock.now() + limit
        while op.status != compute_v1.Operation.Status.DONE:
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                raise TransientError(
                    f"{operation} in {where}: operation {op.name} not done after {limit:g} s",
                    provider=PROVIDER,
                    code="OperationTimeout",
                )
            try:
                with gcp_errors("zoneOperations.wait", where):
                    op = self._clients.operations.wait(
                        project=self.settings.project,
                        zone=zone,
                        operation=op.name,
                        retry=None,
                        timeout=min(remaining, WAIT_CALL_SECONDS),
                    )
            except TransientError as exc:  # this loop is the retry, bounded by the deadline
                log.info("waiting for %s: %s", op.name, exc)
                self.clock.sleep(min(self.settings.retry.initial_wait_seconds, remaining))
        error = operation_error(
            op, operation=operation, where=where, capacity_retry_after=self.settings.capacity_retry_after_seconds
        )
        if error is not None:
            raise error

    # --- observe, terminate -----------------------------------------------------------------

    def instances(self) -> list[Instance]:
        project, timeout = self.settings.project, self.settings.request_timeout_seconds
        raws = self._call(
            lambda: list_managed(self._clients.instances, project, self.settings.page_size, timeout),
            "instances.aggregatedList",
            self._where(),
        )
        listed = {(basename(r.zone), str(r.name)) for r in raws}
        now = self.clock.now()
        with self._lock:
            self._gone = {k: v for k, v in self._gone.items() if now - v[1] < FORGET_GONE_SECONDS}
            vanished = [i for k, i in self._known.items() if k not in listed and k not in self._gone]
            gone = [inst for inst, _ in self._gone.values()]

        def reclaimed_in(zone: str) -> dict[str, float | None]:
            ops = self._clients.operations
            return self._call(
                lambda: preempted_names(ops, project, zone, timeout), "zoneOperations.list", self._where(zone)
            )

        preemptions = {zone: reclaimed_in(zone) for zone in sorted(zones_to_check(raws, vanished))}
        out = [to_instance(raw, preemptions.get(basename(raw.zone), {})) for raw in raws]
        for inst in vanished:
            reclaimed = preemptions.get(inst.zone or "", {})
            if inst.instance_id in reclaimed:
                gone.append(vanished_preempted(inst, reclaimed[inst.instance_id]))
        with self._lock:
            self._known = {(str(i.zone), i.instance_id): i for i in out}
            for inst in gone:
                self._gone.setdefault((str(inst.zone), inst.instance_id), (inst, now))
        return out + gone

    def terminate(self, instance: Instance) -> None:
        if not instance.zone:
            raise PermanentError(f"instance {instance.instance_id} has no zone", provider=PROVIDER)
        self._delete(instance.zone, instance.instance_id)

    def _delete(self, zone: str, name: str) -> None:
        def go() -> None:
            with contextlib.suppress(gexc.NotFound):  # already gone is what we wanted
                self._clients.instances.delete(
                    project=self.settings.project,
                    zone=zone,
                    instance=name,
                    retry=None,
                    timeout=self.settings.request_timeout_seconds,
                )

        self._call(go, "instances.delete", self._where(zone))
        with self._lock:
            self._known.pop((zone, name), None)

    def _delete_quietly(self, zone: str, name: str) -> None:
        """Best effort after a failed launch; the reconciler's reaper covers what this misses."""
        try:
            self._delete(zone, name)
        except ProviderError as exc:
            log.warning("could not delete %s in %s after a failed launch: %s", name, zone, exc)

    # --- notices ----------------------------------------------------------------------------

    def notices(self) -> list[Notice]:
        """None from the control plane: the agent reads GCE's 30 s warning from the metadata server.

        The reclamation itself shows up in `instances()` through the zone's preemption operation.
        """
        return []
