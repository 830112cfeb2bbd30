"""The one boundary where botocore's exceptions become orch's provider errors, and the retry policy.

Callers above the provider never see a `ClientError`: they see an error whose type says what to do
(`CapacityError`: another offer; `QuotaError`: a person must act; `TransientError`: the same call
again later; `PermanentError`: stop). Transient failures are first retried here, with exponential
backoff and full jitter, bounded in attempts and in time, so one throttled call does not cost the
reconciler a whole tick. Messages carry the AWS error code and message, never request parameters,
so nothing secret can leak through them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError, NoCredentialsError

from providers.base import CapacityError, PermanentError, ProviderError, QuotaError, TransientError
from providers.settings_file import RetrySettings

PROVIDER = "aws"
T = TypeVar("T")

CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",
    }
)
QUOTA_CODES = frozenset({"VcpuLimitExceeded", "InstanceLimitExceeded"})
TRANSIENT_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequestsException",
        "SlowDown",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "RequestTimeout",
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, *, operation: str, region: str, capacity_retry_after: float = 300.0) -> ProviderError:
    """Map one botocore exception to the provider error that carries its retry meaning."""
    where = f"{operation} in {region}"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{where}: {code}: {message}"
        if code in CAPACITY_CODES:
            return CapacityError(text, provider=PROVIDER, code=code, retry_after=capacity_retry_after)
        if code in QUOTA_CODES:
            return QuotaError(text, provider=PROVIDER, code=code)
        if code in TRANSIENT_CODES or status >= 500:
            return TransientError(text, provider=PROVIDER, code=code or str(status))
        return PermanentError(text, provider=PROVIDER, code=code)
    if isinstance(exc, NoCredentialsError):
        return PermanentError(
            f"{where}: no AWS credentials found by boto3's standard chain (environment, shared config, "
            "instance or pod role)",
            provider=PROVIDER,
            code="NoCredentials",
        )
    if isinstance(exc, ConnectionError | HTTPClientError):
        return TransientError(f"{where}: connection failed: {type(exc).__name__}", provider=PROVIDER, code="Connection")
    if isinstance(exc, BotoCoreError):
        return PermanentError(f"{where}: {type(exc).__name__}: {exc}", provider=PROVIDER, code=type(exc).__name__)
    return PermanentError(f"{where}: unexpected {type(exc).__name__}: {exc}", provider=PROVIDER)


@contextmanager
def aws_errors(operation: str, region: str, *, capacity_retry_after: float = 300.0) -> Iterator[None]:
    """Run a block of boto3 calls; any botocore exception leaves it as a `ProviderError`."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation=operation, region=region, capacity_retry_after=capacity_retry_after) from exc


def call(
    fn: Callable[[], T],
    *,
    operation: str,
    region: str,
    retry: RetrySettings,
    sleep: Callable[[float], None],
    capacity_retry_after: float = 300.0,
) -> T:
    """Call `fn` (boto3 calls), translating errors and retrying the transient ones.

    `sleep` is the provider clock's, so tests decide how long a backoff really waits.
    """

    def once() -> T:
        with aws_errors(operation, region, capacity_retry_after=capacity_retry_after):
            return fn()

    return retry.retrying(sleep)(once)
