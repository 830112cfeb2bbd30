"""The errors a provider raises, whose type says what the caller does next; vendor exceptions never
cross into the orchestrator."""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every error a provider may raise. `retryable` says whether the same call may succeed."""

    retryable: bool = False

    def __init__(self, message: str, *, provider: str = "", code: str = "") -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code


class CapacityError(ProviderError):
    """No capacity for this offer now: try another offer and avoid this one for `retry_after` s."""

    retryable = True

    def __init__(self, message: str, *, provider: str = "", code: str = "", retry_after: float = 300.0):
        super().__init__(message, provider=provider, code=code)
        self.retry_after = retry_after


class QuotaError(ProviderError):
    """An account limit: no offer of this provider/region will work until a person raises it."""


class TransientError(ProviderError):
    """Throttling, 5xx, a dropped connection: retry the same call with backoff."""

    retryable = True


class PermanentError(ProviderError):
    """A bad request or missing permission: retrying will not help."""
