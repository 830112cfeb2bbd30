"""The one boundary where Google's errors become orch's provider errors, and the retry policy.

GCE reports a failure in two places: as an HTTP error on the call (`google.api_core.exceptions`),
or, for work that runs after the call was accepted, inside the zone operation (`Operation.error`).
Running out of capacity usually arrives the second way. Both are classified here by the same table,
so the reconciler sees one error type per meaning (`CapacityError`: another offer; `QuotaError`: a
person must act; `TransientError`: the same call again; `PermanentError`: stop). Transient failures
are first retried here, bounded in attempts and time, with the provider clock's `sleep` so tests
decide what a backoff costs. Messages carry Google's codes and messages, never request bodies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from providers.settings_file import RetrySettings
from vocab import CapacityError, PermanentError, ProviderError, QuotaError, TransientError

PROVIDER = "gcp"
T = TypeVar("T")

# Codes and reasons compared after `_norm` (lowercase letters only): GCE spells the same thing as
# ZONE_RESOURCE_POOL_EXHAUSTED in operations and zoneResourcePoolExhausted in HTTP errors.
CAPACITY_CODES = frozenset(
    {
        "zoneresourcepoolexhausted",
        "zoneresourcepoolexhaustedwithdetails",
        "resourcepoolexhausted",
        "resourceexhausted",
        "stockout",
    }
)
CAPACITY_MESSAGES = ("does not have enough resources", "resource pool exhausted")
QUOTA_CODES = frozenset({"quotaexceeded"})
_QUOTA_MESSAGE = re.compile(r"quota '[^']+' exceeded", re.IGNORECASE)
TRANSIENT_CODES = frozenset(
    {"ratelimitexceeded", "userratelimitexceeded", "backenderror", "internalerror", "serviceunavailable"}
)
TRANSIENT_EXCEPTIONS: tuple[type[Exception], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.BadGateway,
    gexc.GatewayTimeout,
    auth_exc.TransportError,
    requests.ConnectionError,
    requests.Timeout,
)


def _norm(code: str) -> str:
    return re.sub(r"[^a-z]", "", code.lower())


def classify(
    text: str,
    *,
    status: int | None,
    codes: Iterable[str],
    message: str,
    capacity_retry_after: float,
) -> ProviderError:
    """The provider error for one failure, from its HTTP status, Google error codes and message."""
    norm = {_norm(c) for c in codes if c}
    lowered = message.lower()
    first = next(iter(sorted(norm)), "") or str(status or "")
    # Capacity before 5xx: GCE answers some stockouts with 503, and those need another offer.
    if (norm & CAPACITY_CODES and status != 429) or any(m in lowered for m in CAPACITY_MESSAGES):
        code = next(iter(sorted(norm & CAPACITY_CODES)), "ZONE_RESOURCE_POOL_EXHAUSTED")
        return CapacityError(text, provider=PROVIDER, code=code, retry_after=capacity_retry_after)
    if norm & QUOTA_CODES or _QUOTA_MESSAGE.search(message):
        return QuotaError(text, provider=PROVIDER, code="QUOTA_EXCEEDED")
    if norm & TRANSIENT_CODES or (status is not None and (status == 429 or status >= 500)):
        return TransientError(text, provider=PROVIDER, code=first)
    return PermanentError(text, provider=PROVIDER, code=first)


def translate(exc: Exception, *, operation: str, where: str, capacity_retry_after: float = 300.0) -> ProviderError:
    """Map one exception of the Google client stack to the provider error carrying its retry meaning."""
    at = f"{operation} in {where}"
    if isinstance(exc, gexc.GoogleAPICallError):
        codes = [str(e.get("reason", "")) for e in (exc.errors or []) if isinstance(e, dict)]
        if exc.reason:
            codes.append(str(exc.reason))
        status = int(exc.code) if isinstance(exc.code, int) else None
        text = f"{at}: HTTP {status}: {exc.message}"
        error = classify(text, status=status, codes=codes, message=str(exc.message or ""),
                         capacity_retry_after=capacity_retry_after)
        if isinstance(exc, TRANSIENT_EXCEPTIONS) and isinstance(error, PermanentError):
            return TransientError(text, provider=PROVIDER, code=error.code)
        return error
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return PermanentError(
            f"{at}: no Google credentials found by google.auth.default (GOOGLE_APPLICATION_CREDENTIALS, "
            "`gcloud auth application-default login`, or the metadata server of a VM or pod)",
            provider=PROVIDER,
            code="NoCredentials",
        )
    if isinstance(exc, TRANSIENT_EXCEPTIONS):
        return TransientError(f"{at}: connection failed: {type(exc).__name__}", provider=PROVIDER, code="Connection")
    if isinstance(exc, auth_exc.GoogleAuthError):
        return PermanentError(f"{at}: credentials refused: {type(exc).__name__}", provider=PROVIDER, code="Auth")
    return PermanentError(f"{at}: unexpected {type(exc).__name__}: {exc}", provider=PROVIDER)


def operation_error(
    op: Any, *, operation: str, where: str, capacity_retry_after: float = 300.0
) -> ProviderError | None:
    """The error a finished zone operation carries, or None when it succeeded."""
    errors = list(op.error.errors) if op.error else []
    if not errors:
        return None
    codes = [str(e.code) for e in errors]
    message = "; ".join(f"{e.code}: {e.message}" for e in errors)
    status = int(op.http_error_status_code) if op.http_error_status_code else None
    return classify(
        f"{operation} in {where}: operation {op.name} failed: {message}",
        status=status,
        codes=codes,
        message=message,
        capacity_retry_after=capacity_retry_after,
    )


_CLIENT_ERRORS = (gexc.GoogleAPIError, auth_exc.GoogleAuthError, requests.RequestException)


@contextmanager
def gcp_errors(operation: str, where: str, *, capacity_retry_after: float = 300.0) -> Iterator[None]:
    """Run a block of Google client calls; any client exception leaves it as a `ProviderError`."""
    try:
        yield
    except _CLIENT_ERRORS as exc:
        raise translate(exc, operation=operation, where=where, capacity_retry_after=capacity_retry_after) from exc


def call(
    fn: Callable[[], T],
    *,
    operation: str,
    where: str,
    retry: RetrySettings,
    sleep: Callable[[float], None],
    capacity_retry_after: float = 300.0,
) -> T:
    """Call `fn` (Google client calls), translating errors and retrying the transient ones."""

    def once() -> T:
        with gcp_errors(operation, where, capacity_retry_after=capacity_retry_after):
            return fn()

    return retry.retrying(sleep)(once)
