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
from botocore.parsers import ResponseParserError

from providers.settings_file import RetrySettings
from vocab import CapacityError, PermanentError, ProviderError, QuotaError, TransientError

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


# How much of an answer that is not AWS's (an HTML page, garbage) a message quotes, on one line.
SNIPPET_CHARS = 80


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def snippet(text: object) -> str:
    """`text` as one short line: whitespace collapsed, cut at SNIPPET_CHARS with an ellipsis."""
    line = " ".join(str(text).split())
    return line if len(line) <= SNIPPET_CHARS else line[: SNIPPET_CHARS - 1] + "…"


def _client_error_text(exc: ClientError, status: int) -> tuple[str, str]:
    """(code, one-line description) of a ClientError, saying the HTTP status when AWS gave no code.

    An answer that is not an AWS error document (a proxy's or a wrong endpoint's HTML page) parses
    to no code and no message; botocore keeps what it could read of the page under "body".
    """
    error = exc.response.get("Error", {}) or {}
    code = str(error.get("Code", "") or "")
    message = str(error.get("Message", "") or "")
    if code and not code.isdigit():
        return code, snippet(message or code)
    body = message or exc.response.get("body") or ""
    seen = f": {snippet(body)}" if body else ""
    return code, f"HTTP {status or code or '?'}, not an AWS API answer{seen}"


def translate(exc: Exception, *, operation: str, region: str, capacity_retry_after: float = 300.0) -> ProviderError:
    """Map one botocore exception to the provider error that carries its retry meaning."""
    where = f"{operation} in {region}"
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        code, message = _client_error_text(exc, status)
        text = f"{where}: {code}: {message}" if code and not code.isdigit() else f"{where}: {message}"
        if code in CAPACITY_CODES:
            return CapacityError(text, provider=PROVIDER, code=code, retry_after=capacity_retry_after)
        if code in QUOTA_CODES:
            return QuotaError(text, provider=PROVIDER, code=code)
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientError(text, provider=PROVIDER, code=code or str(status))
        return PermanentError(text, provider=PROVIDER, code=code or str(status))
    if isinstance(exc, ResponseParserError):
        # Not XML, or cut short: a proxy or an overloaded endpoint; botocore itself says a retry may work.
        first, _, body = str(exc).partition("\n")
        return TransientError(f"{where}: the endpoint's answer is not an AWS API answer: {snippet(body or first)}",
                              provider=PROVIDER, code="ResponseParserError")
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
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
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
