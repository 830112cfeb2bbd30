"""The vocabulary the control plane and the providers share: offers, instances, launch requests,
abilities, errors, time. Both `orchestrator` and `providers` import it; it imports neither."""

from vocab.abilities import Abilities, CapacityMemory, ZoneSignal
from vocab.clock import Clock, SystemClock
from vocab.errors import CapacityError, PermanentError, ProviderError, QuotaError, TransientError
from vocab.instances import (
    DEFAULT_MASTER_PORT,
    RESUME_NOT_BEFORE,
    EndReason,
    Instance,
    InstanceState,
    LaunchRequest,
    Notice,
    NoticeKind,
    gang_environment,
)
from vocab.markets import ARCHITECTURES, Billing, Market, Offer, Resources, architecture_rank, offer_key

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MASTER_PORT",
    "RESUME_NOT_BEFORE",
    "Abilities",
    "Billing",
    "CapacityError",
    "CapacityMemory",
    "Clock",
    "EndReason",
    "Instance",
    "InstanceState",
    "LaunchRequest",
    "Market",
    "Notice",
    "NoticeKind",
    "Offer",
    "PermanentError",
    "ProviderError",
    "QuotaError",
    "Resources",
    "SystemClock",
    "TransientError",
    "ZoneSignal",
    "architecture_rank",
    "gang_environment",
    "offer_key",
]
