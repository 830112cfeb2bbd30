"""The seam between orch and the clouds: the `Provider` protocol and its optional parts.

What crosses the seam (offers, launch requests, instances, notices, abilities, errors) is the shared
vocabulary in the neutral `vocab` package, which the core imports too without importing any provider;
it is named here as well, so an adapter imports its seam from one place. Providers import this module,
`vocab` and the catalog, and nothing of the orchestrator, so a provider can be tested, replaced or
vendored on its own. Vendor exceptions never cross this line: each provider translates them into one
of `vocab.errors`, whose type says what the caller should do next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from vocab import (
    ARCHITECTURES,
    DEFAULT_MASTER_PORT,
    RESUME_NOT_BEFORE,
    Abilities,
    Billing,
    CapacityError,
    CapacityMemory,
    Clock,
    EndReason,
    Instance,
    InstanceState,
    LaunchRequest,
    Market,
    Notice,
    NoticeKind,
    Offer,
    PermanentError,
    ProviderError,
    QuotaError,
    Resources,
    SystemClock,
    TransientError,
    ZoneSignal,
    architecture_rank,
    gang_environment,
    offer_key,
)


@runtime_checkable
class SharesCapacity(Protocol):
    """Optional: adapters that fall back between zones themselves take the controller's capacity memory,
    so that the loop and the adapter never disagree about where capacity was refused."""

    def share_capacity(self, memory: CapacityMemory) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """A place that runs attempts. Every method may raise only the errors below.

    `instances()` returns every orch-managed instance in one call per region: the reconciler
    never asks per job. `terminate()` is idempotent: terminating a gone instance is not an error.
    `launch()` with an `attempt_id` seen before returns the instance already made for it.
    """

    name: str
    abilities: Abilities

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        """Offers matching `resources` (all regions when `regions` is empty).

        `job_id` and `options` (the job's `[placement.options.<provider>]`), when given, let a provider
        whose market depends on the job (the local simulated market, configured per job: its zones,
        its trace) answer for that job even before its first launch; others ignore them.
        """
        ...

    def launch(self, request: LaunchRequest) -> Instance: ...

    def instances(self) -> list[Instance]: ...

    def terminate(self, instance: Instance) -> None: ...

    def notices(self) -> list[Notice]: ...




@runtime_checkable
class LaunchesGangs(Protocol):
    """Providers whose `abilities.max_gang_nodes` > 1: launch and release gangs of identical nodes.

    `launch_gang(request)` starts `request.nodes` nodes of `request.offer`, all or nothing: it returns
    one `Instance` per rank (sorted by rank, each tagged with the attempt id and its `node_rank`), or
    raises (`CapacityError` when the cloud could not place them all) with nothing left running: what
    was started is terminated before the error leaves. Repeated with the same `attempt_id` it returns
    the gang already made. `release_gang` deletes what the gang held besides its nodes (a placement
    group, a resource policy, a PodGroup) once its nodes are gone: idempotent; False while the cloud
    still holds it in use (call again on a later tick).
    """

    def launch_gang(self, request: LaunchRequest) -> list[Instance]: ...

    def release_gang(self, request: LaunchRequest) -> bool: ...


def check_gang_size(provider: str, request: LaunchRequest, limit: int, unit: str = "nodes") -> None:
    """The size guard every `launch_gang` applies before any call: a gang is 2..`limit` nodes (one node
    is `launch`'s)."""
    if not 1 < request.nodes <= limit:
        raise PermanentError(f"{provider} launches gangs of 2..{limit} {unit}, not {request.nodes}",
                             provider=provider, code="GangTooLarge")


def launch_nodes(provider: Provider, request: LaunchRequest) -> list[Instance]:
    """One launch for any number of nodes: the loop's single entry point for gangs and single nodes."""
    if request.nodes == 1:
        return [provider.launch(request)]
    limit = provider.abilities.max_gang_nodes
    if request.nodes < 1 or request.nodes > limit or not isinstance(provider, LaunchesGangs):
        raise PermanentError(f"{provider.name} cannot launch {request.nodes} nodes as one gang (at most {limit})",
                             provider=provider.name, code="GangTooLarge")
    return provider.launch_gang(request)


@runtime_checkable
class ChecksOptions(Protocol):
    """Optional: providers whose `[placement.options.<name>]` can be checked at submission.

    Raises `PermanentError` naming the bad key, so a typo is refused before anything is stored
    instead of failing the first launch.
    """

    def check_options(self, options: Mapping[str, object], workdir: str | None) -> None: ...




@runtime_checkable
class SignalsZones(Protocol):
    """Optional: providers that publish availability signals per zone (AWS spot placement scores and
    spot prices). Must be cheap to call once per task and tick: a signal that costs an API call is
    cached by the provider. Errors are the provider's to swallow: a signal is worth having, never
    worth failing a tick over."""

    def zone_signals(self, offers: Sequence[Offer]) -> Mapping[str, ZoneSignal]: ...


def zone_signals(provider: object, offers: Sequence[Offer]) -> Mapping[str, ZoneSignal]:
    """`provider`'s signals for the zones of `offers` (zone name -> signal); none where it has none."""
    return provider.zone_signals(offers) if isinstance(provider, SignalsZones) else {}


@runtime_checkable
class LogSource(Protocol):
    """Optional: providers that can show an attempt's output implement this too."""

    def read_log(self, instance: Instance) -> str: ...


# The vocabulary and the protocols, for the adapters that import both from their seam.
__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MASTER_PORT",
    "RESUME_NOT_BEFORE",
    "Abilities",
    "Billing",
    "CapacityError",
    "CapacityMemory",
    "ChecksOptions",
    "Clock",
    "EndReason",
    "Instance",
    "InstanceState",
    "LaunchRequest",
    "LaunchesGangs",
    "LogSource",
    "Market",
    "Notice",
    "NoticeKind",
    "Offer",
    "PermanentError",
    "Provider",
    "ProviderError",
    "QuotaError",
    "Resources",
    "SharesCapacity",
    "SignalsZones",
    "SystemClock",
    "TransientError",
    "ZoneSignal",
    "architecture_rank",
    "gang_environment",
    "launch_nodes",
    "offer_key",
    "zone_signals",
]
