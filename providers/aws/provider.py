"""The `aws` provider: GPU instances on EC2, spot or on-demand, through boto3.

Each method is a few API calls at most and is safe to repeat: `launch` carries the attempt id as
EC2's `ClientToken` and first looks for an instance already tagged with the attempt, so a retried
launch (by tenacity here, or by the reconciler after a crash) never makes a second instance.
Credentials are boto3's business: the default client factory uses a plain boto3 Session with the
standard credential chain, and nothing in this package reads, stores or logs them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from providers.aws.clients import ClientFactory, default_client_factory
from providers.aws.errors import PROVIDER, call, error_code
from providers.aws.gang import MAX_GANG_NODES, delete_group, ensure_group, find_gang, gang_params
from providers.aws.launch import TAG_ATTEMPT, TAG_MANAGED, launch_params
from providers.aws.notices import Ec2Event, delete, instance_tags, parse_event, receive
from providers.aws.observe import describe_managed, spot_request_ids_to_check, spot_request_statuses, to_instance
from providers.aws.offers import OfferCache, newest_spot_prices, region_offers, spot_history, zone_offerings
from providers.aws.settings import AwsSettings, load_aws_settings
from providers.aws.signals import PlacementScores, price_signals
from providers.base import check_gang_size
from providers.catalog import InstanceType, load_catalog
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
    QuotaError,
    Resources,
    ZoneSignal,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
GONE = ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed")


class AwsProvider:
    name = PROVIDER
    # A replacement launched on an interruption notice boots at once and starts its job only after
    # ORCH_RESUME_NOT_BEFORE (the old instance's deadline): see `aws_launch.user_data`.
    # A gang is one RunInstances of N in a cluster placement group (`providers.aws.gang`).
    abilities = Abilities(replaces_on_notice=True, max_gang_nodes=MAX_GANG_NODES)

    def __init__(self, clock: Clock, settings: AwsSettings, *, client_factory: ClientFactory | None = None) -> None:
        self.clock = clock
        self.settings = settings
        self._factory = client_factory or default_client_factory()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._offers = OfferCache(clock.now, settings.offer_cache_seconds)
        self._billing = load_catalog().billing_for(PROVIDER)
        self._scores = PlacementScores(clock.now, settings.placement_score_cache_seconds,
                                       lambda region: self.client("ec2", region), self._call)

    def share_capacity(self, memory: CapacityMemory) -> None:
        """Use the controller's capacity memory instead of a private one (see `CapacityMemory`)."""
        self._offers.capacity = memory

    @classmethod
    def from_settings_file(
        cls, clock: Clock, path: Path | None = None, *, client_factory: ClientFactory | None = None
    ) -> AwsProvider:
        """The provider an operator configured (`default_settings_path()` when `path` is None)."""
        return cls(clock, load_aws_settings(path), client_factory=client_factory)

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = self._factory(service, region)
            return self._clients[key]

    def open_item_service(self, port: int) -> dict[str, str]:
        """Per region, the security group that admits the controller's item service port from the
        workers' groups only (`providers/aws/network.py`): attach it to the controller's instance."""
        from providers.aws.network import open_item_service

        return {region: open_item_service(self.client("ec2", region),
                                          lambda fn, op, region=region: self._call(fn, op, region),  # type: ignore[misc]
                                          port=port, worker_groups=self.settings.security_groups_for(region))
                for region in self.settings.region_names}

    def _call(self, fn: Callable[[], T], operation: str, region: str) -> T:
        return call(
            fn,
            operation=operation,
            region=region,
            retry=self.settings.retry,
            sleep=self.clock.sleep,
            capacity_retry_after=self.settings.capacity_retry_after_seconds,
        )

    # --- offers -----------------------------------------------------------------------------

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        """EC2's market is the same for every job, so `job_id` is not needed here."""
        wanted = tuple(r for r in (regions or self.settings.region_names) if r in self.settings.regions)
        cached = self._offers.get(resources, wanted)
        if cached is not None:
            return cached
        types = [t for t in load_catalog().of(PROVIDER) if t.satisfies(resources)]
        out: list[Offer] = []
        for region in wanted:
            in_region = [t for t in types if t.region(region) is not None]
            if in_region:
                out += self._region_offers(region, in_region)
        return self._offers.put(resources, wanted, out)

    def _region_offers(self, region: str, types: list[InstanceType]) -> list[Offer]:
        ec2 = self.client("ec2", region)
        names = [t.name for t in types]
        start = dt.datetime.fromtimestamp(self.clock.now(), tz=dt.UTC)
        zones = self._call(lambda: zone_offerings(ec2, names), "DescribeInstanceTypeOfferings", region)
        try:
            history = self._call(lambda: spot_history(ec2, names, start), "DescribeSpotPriceHistory", region)
        except ProviderError as exc:  # prices are worth having, not worth failing over: list prices stand in
            log.warning("no spot prices from EC2, using catalog prices: %s", exc)
            history = []
        subnets = self.settings.region(region).subnets
        return region_offers(
            region=region,
            types=types,
            zones_by_type=zones,
            spot_prices=newest_spot_prices(history),
            allowed_zones=set(subnets) if subnets else None,
            billing=self._billing,
        )

    def zone_signals(self, offers: Sequence[Offer]) -> dict[str, ZoneSignal]:
        """EC2's published readings of spot capacity per zone (see `providers.aws.signals`): placement
        scores when enabled, overruled by a spot price at on-demand (the market itself)."""
        out = self._scores.signals(offers) if self.settings.placement_scores else {}
        out.update(price_signals(offers))
        return out

    def check_options(self, options: Mapping[str, object], workdir: str | None) -> None:
        """`[placement.options.aws]` has no keys yet: refuse any at submission rather than ignore it."""
        if options:
            raise PermanentError(
                f"[placement.options.aws]: unknown option(s) {', '.join(sorted(options))}; "
                "account settings (AMI, subnets, ...) belong in the AWS settings file",
                provider=PROVIDER,
                code="UnknownOption",
            )

    # --- launch -----------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> Instance:
        offer = request.offer
        if offer.provider != PROVIDER:
            raise PermanentError(f"offer {offer.key} is not an AWS offer", provider=PROVIDER)
        params = launch_params(request, self.settings)
        region = offer.region
        ec2 = self.client("ec2", region)

        def find_or_run() -> dict[str, Any]:
            # Tags are applied atomically with the instance, so a lookup finds an earlier try's
            # instance even where the ClientToken is not honoured (moto) or was forgotten.
            return self._find_attempt(ec2, request.attempt_id) or ec2.run_instances(**params)["Instances"][0]

        try:
            raw = self._call(find_or_run, "RunInstances", region)
        except CapacityError as exc:
            self._offers.capacity_failed(offer, exc.retry_after)
            raise
        except QuotaError:
            raise
        except ProviderError:
            # The request may have created the instance before the failure reached us.
            self._terminate_attempt(ec2, region, request.attempt_id)
            raise
        try:
            return to_instance(raw, region, {})
        except Exception as exc:
            self._terminate_attempt(ec2, region, request.attempt_id)
            raise PermanentError(f"RunInstances in {region}: unreadable answer: {exc!r}", provider=PROVIDER) from exc

    def launch_gang(self, request: LaunchRequest) -> list[Instance]:
        """One RunInstances of `MinCount = MaxCount = nodes` in the attempt's cluster placement group:
        EC2 starts all or none. A failure after EC2 may have acted terminates whatever the attempt made."""
        offer = request.offer
        if offer.provider != PROVIDER:
            raise PermanentError(f"offer {offer.key} is not an AWS offer", provider=PROVIDER)
        check_gang_size(PROVIDER, request, MAX_GANG_NODES)
        region = offer.region
        ec2 = self.client("ec2", region)
        base = launch_params(request, self.settings)
        group = self._call(lambda: ensure_group(ec2, request, self.settings.tags), "CreatePlacementGroup", region)
        params = gang_params(base, request, group)

        def find_or_run() -> list[dict[str, Any]]:
            return find_gang(ec2, request.attempt_id) or list(ec2.run_instances(**params)["Instances"])

        try:
            raws = self._call(find_or_run, "RunInstances", region)
        except CapacityError as exc:
            self._offers.capacity_failed(offer, exc.retry_after)
            self.release_gang(request)  # nothing runs in it: the group goes too
            raise
        except QuotaError:
            self.release_gang(request)
            raise
        except ProviderError:
            self._terminate_gang(ec2, region, request.attempt_id)
            raise
        gang = sorted((to_instance(raw, region, {}) for raw in raws), key=lambda i: i.node_rank)
        if [i.node_rank for i in gang] != list(range(request.nodes)):
            self._terminate_gang(ec2, region, request.attempt_id)
            raise CapacityError(f"RunInstances in {region} started {len(gang)} of {request.nodes} nodes; "
                                "all were terminated", provider=PROVIDER, code="GangIncomplete",
                                retry_after=self.settings.capacity_retry_after_seconds)
        return gang

    def release_gang(self, request: LaunchRequest) -> bool:
        """Delete the attempt's placement group; False while EC2 still counts a node in it."""
        region = request.offer.region
        ec2 = self.client("ec2", region)
        return self._call(lambda: delete_group(ec2, request.attempt_id), "DeletePlacementGroup", region)

    def _terminate_gang(self, ec2: Any, region: str, attempt_id: str) -> None:
        """Best effort, as `_terminate_attempt`: every node the attempt made, in one call."""
        try:
            found = self._call(lambda: find_gang(ec2, attempt_id), "DescribeInstances", region)
            ids = [str(i["InstanceId"]) for i in found if i.get("State", {}).get("Name") != "terminated"]
            if ids:
                self._call(lambda: ec2.terminate_instances(InstanceIds=ids), "TerminateInstances", region)
        except ProviderError as exc:
            log.warning("could not clean up after the failed gang launch of attempt %s: %s", attempt_id, exc)

    def _find_attempt(self, ec2: Any, attempt_id: str) -> dict[str, Any] | None:
        reply = ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{TAG_ATTEMPT}", "Values": [attempt_id]},
                {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
            ]
        )
        found = [i for r in reply.get("Reservations", []) for i in r.get("Instances", [])]
        # A live instance wins over one an earlier failure already terminated.
        found.sort(key=lambda i: i.get("State", {}).get("Name") in ("shutting-down", "terminated"))
        return found[0] if found else None

    def _terminate_attempt(self, ec2: Any, region: str, attempt_id: str) -> None:
        """Best effort: leave no instance behind a failed launch; the reaper covers what this misses."""
        try:
            found = self._call(lambda: self._find_attempt(ec2, attempt_id), "DescribeInstances", region)
            if found is not None and found.get("State", {}).get("Name") != "terminated":
                self._terminate_id(ec2, region, str(found["InstanceId"]))
        except ProviderError as exc:
            log.warning("could not clean up after the failed launch of attempt %s: %s", attempt_id, exc)

    # --- observe, terminate -----------------------------------------------------------------

    def instances(self) -> list[Instance]:
        return [inst for region in self.settings.region_names for inst in self._region_instances(region)]

    def _region_instances(self, region: str) -> list[Instance]:
        ec2 = self.client("ec2", region)
        raws = self._call(lambda: describe_managed(ec2, self.settings.page_size), "DescribeInstances", region)
        request_ids = spot_request_ids_to_check(raws)
        statuses: dict[str, str] = {}
        if request_ids:
            statuses = self._call(
                lambda: spot_request_statuses(ec2, request_ids), "DescribeSpotInstanceRequests", region
            )
        return [to_instance(raw, region, statuses) for raw in raws]

    def terminate(self, instance: Instance) -> None:
        self._terminate_id(self.client("ec2", instance.region), instance.region, instance.instance_id)

    def _terminate_id(self, ec2: Any, region: str, instance_id: str) -> None:
        def go() -> None:
            try:
                ec2.terminate_instances(InstanceIds=[instance_id])
            except ClientError as exc:
                if error_code(exc) not in GONE:  # already gone is what we wanted
                    raise

        self._call(go, "TerminateInstances", region)

    def read_log(self, instance: Instance) -> str:
        """The instance's console output (boot and user-data output); empty once EC2 forgot it."""
        ec2 = self.client("ec2", instance.region)

        def get() -> str:
            try:
                reply = ec2.get_console_output(InstanceId=instance.instance_id)
            except ClientError as exc:
                if error_code(exc) in GONE:
                    return ""
                raise
            return str(reply.get("Output") or "")

        return self._call(get, "GetConsoleOutput", instance.region)

    # --- notices ----------------------------------------------------------------------------

    def notices(self) -> list[Notice]:
        out: list[Notice] = []
        for region, settings in self.settings.regions.items():
            if settings.notice_queue_url:
                out += self._region_notices(region, settings.notice_queue_url)
        return out

    def _region_notices(self, region: str, queue_url: str) -> list[Notice]:
        sqs, ec2 = self.client("sqs", region), self.client("ec2", region)
        messages = self._call(lambda: receive(sqs, queue_url), "ReceiveMessage", region)
        events: list[Ec2Event] = []
        for message in messages:
            event = parse_event(message.body)
            if event is None:
                log.warning("dropping a message that is not an EC2 event from %s", queue_url)
            elif event.region not in (None, region):
                log.warning("dropping an event of region %s from the queue of %s", event.region, region)
            else:
                events.append(event)
        # Only notices need the tag lookup; state changes are seen by the next listing anyway.
        ids = sorted({e.instance_id for e in events if e.kind is not None})
        tags = self._call(lambda: instance_tags(ec2, ids), "DescribeInstances", region)
        notices: dict[tuple[str, str], Notice] = {}
        for e in events:
            owned = tags.get(e.instance_id, {})
            if e.kind is None or owned.get(TAG_MANAGED) != "true":
                continue  # state changes are seen by the next listing; foreign instances are not ours
            notices[(e.instance_id, e.kind)] = Notice(
                PROVIDER, e.instance_id, owned.get(TAG_ATTEMPT), e.kind, e.at, e.deadline
            )
        # Delete only after the lookup succeeded: on an error the messages come back next tick.
        receipts = [m.receipt for m in messages]
        if receipts:
            self._call(lambda: delete(sqs, queue_url, receipts), "DeleteMessageBatch", region)
        return sorted(notices.values(), key=lambda n: (n.at, n.instance_id))
