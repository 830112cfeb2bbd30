"""AWS answers that are not AWS answers: the real boto3 client against a tiny server that returns
garbage, an HTML page or a 404. Every one leaves the provider as one readable `ProviderError` line
(never a botocore exception or a traceback); the unparseable ones are retried like other transient
failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from providers.aws.provider import AwsProvider
from providers.aws.settings import AwsSettings, RegionSettings
from providers.settings_file import RetrySettings
from tests.http_fake import LoopbackServer, ManualClock, QuietHandler
from vocab import PermanentError, ProviderError, Resources, TransientError

REGION = "us-east-1"
EMPTY_OFFERINGS = (b'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstanceTypeOfferingsResponse '
                   b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId>'
                   b"<instanceTypeOfferingSet/></DescribeInstanceTypeOfferingsResponse>")
HTML_404 = (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body>\n<h1>Not Found</h1>\n"
            b"<p>The requested URL was not found on this server.</p>\n</body></html>")


class Hostile:
    """A server answering every request with the next scripted (status, body, content type)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, bytes, str]] = []
        self.requests = 0
        self._lock = threading.Lock()
        hostile = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.read_request()
                with hostile._lock:
                    hostile.requests += 1
                    status, body, kind = hostile.script.pop(0) if len(hostile.script) > 1 else hostile.script[0]
                self.reply(status, body, {"Content-Type": kind})

            do_GET = do_POST

        self.server = LoopbackServer(Handler)


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hostile]:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    server = Hostile()
    yield server
    server.server.stop()


def _provider(server: Hostile, attempts: int = 3) -> AwsProvider:
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5)

    def make(service: str, region: str) -> Any:
        return boto3.session.Session().client(service, region_name=region, endpoint_url=server.server.url,
                                              config=config)

    settings = AwsSettings(regions={REGION: RegionSettings(REGION, "ami-12c6146b")},
                           retry=RetrySettings(attempts=attempts, initial_wait_seconds=0.01, max_wait_seconds=0.02,
                                               deadline_seconds=10))
    return AwsProvider(ManualClock(), settings, client_factory=make)


A10G = Resources(gpus=("A10G",))


def test_garbage_is_a_transient_error_retried_then_reported_on_one_line(hostile: Hostile) -> None:
    hostile.script = [(200, b"garbage \x00 not xml <<\n" * 20, "text/plain")]
    with pytest.raises(TransientError) as caught:
        _provider(hostile, attempts=3).offers(A10G, [REGION])
    message = str(caught.value)
    assert hostile.requests == 3, "an unparseable answer is retried like other transient failures"
    assert message.startswith("DescribeInstanceTypeOfferings in us-east-1: ")
    assert "garbage" in message and "\n" not in message and len(message) < 200


def test_garbage_once_then_a_real_answer_succeeds(hostile: Hostile) -> None:
    hostile.script = [(200, b"<html>busy", "text/html"), (200, EMPTY_OFFERINGS, "text/xml")]
    assert _provider(hostile).offers(A10G, [REGION]) == []
    assert hostile.requests >= 2


def test_an_html_404_names_the_http_status_and_quotes_one_line_of_the_page(hostile: Hostile) -> None:
    hostile.script = [(404, HTML_404, "text/html")]
    with pytest.raises(PermanentError) as caught:
        _provider(hostile).offers(A10G, [REGION])
    message = str(caught.value)
    assert hostile.requests == 1, "a 404 is not retried: the endpoint is wrong"
    assert "HTTP 404" in message and "Not Found" in message
    assert ": : " not in message and "\n" not in message and len(message) < 200


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_an_html_server_error_is_transient_and_says_its_status(hostile: Hostile, status: int) -> None:
    hostile.script = [(status, b"<html><body>upstream is down</body></html>", "text/html")]
    with pytest.raises(TransientError) as caught:
        _provider(hostile, attempts=2).offers(A10G, [REGION])
    assert hostile.requests == 2
    assert f"HTTP {status}" in str(caught.value) and "\n" not in str(caught.value)


def test_an_empty_body_is_transient(hostile: Hostile) -> None:
    hostile.script = [(200, b"", "text/xml")]
    with pytest.raises(ProviderError) as caught:
        _provider(hostile, attempts=2).offers(A10G, [REGION])
    assert isinstance(caught.value, TransientError) and hostile.requests == 2
