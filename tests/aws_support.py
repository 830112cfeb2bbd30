"""Test support for the AWS provider: moto as a real HTTP server, injected faults, an IMDSv2 emulator.

Everything here talks to the provider the way AWS would: over HTTP, through the real boto3 client.
Faults are injected on the client's `before-send` event by answering the request with an HTTP error
response that botocore parses like any other (or by dropping the connection), so the provider's own
error path handles them. Preemption changes moto's backend state, as EC2 would. Credentials are dummy
values set only in the test's environment.

Fixtures, loaded for every test file by `pytest_plugins` in tests/conftest.py:
`moto_url` (session), `aws_env`, `aws_world` (an `AwsWorld` with a ready provider), `aws_provider`.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from moto.backends import get_backend
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models.instances import StateReason
from moto.server import ThreadedMotoServer

from providers.aws.notices import ensure_notice_queue
from providers.aws.provider import AwsProvider
from providers.aws.settings import AwsSettings, RegionSettings
from providers.settings_file import RetrySettings
from tests import aws_placement
from tests.http_fake import LoopbackServer, ManualClock, QuietHandler

REGION, OTHER_REGION = "us-east-1", "us-west-2"
SPOT_TERMINATION = "Server.SpotInstanceTermination"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- faults ------------------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


@dataclass
class _Rule:
    operation: str
    code: str
    status: int
    times: int
    mode: str  # "answer": an error instead of the server; "after": the server acts, the client sees an error


@dataclass
class Faults:
    """Answers chosen operations with errors, N times each, on every client attached to it."""

    rules: list[_Rule] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def fail(self, operation: str, code: str, *, times: int = 1, status: int = 400) -> None:
        self.rules.append(_Rule(operation, code, status, times, "answer"))

    def fail_after_server_acted(self, operation: str, code: str, *, times: int = 1, status: int = 500) -> None:
        """The request reaches the server and takes effect, but the answer the client gets is an error."""
        self.rules.append(_Rule(operation, code, status, times, "after"))

    def empty(self, operation: str, *, times: int = 1) -> None:
        """A successful answer that holds nothing (EC2 query protocol only)."""
        self.rules.append(_Rule(operation, "", 200, times, "empty"))

    def drop(self, operation: str, *, times: int = 1) -> None:
        self.rules.append(_Rule(operation, "", 0, times, "drop"))

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send", self._before_send)
        return client

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        service, operation = event_name.split(".")[1:3]
        self.calls[operation] += 1
        rule = next((r for r in self.rules if r.operation == operation and r.times > 0), None)
        if rule is None:
            return None
        rule.times -= 1
        if rule.mode == "drop":
            raise EndpointConnectionError(endpoint_url=request.url)
        if rule.mode == "after":
            body = request.body.encode() if isinstance(request.body, str) else request.body
            forwarded = urllib.request.Request(request.url, data=body, method=request.method)
            for name, value in request.headers.items():
                forwarded.add_header(name, value.decode() if isinstance(value, bytes) else value)
            urllib.request.urlopen(forwarded, timeout=10).read()
        if rule.mode == "empty":
            body = f"<{operation}Response><requestId>test</requestId></{operation}Response>"
            return AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, _Raw(body.encode()))
        return _error_response(service, request.url, rule.code, rule.status)


def _error_response(service: str, url: str, code: str, status: int) -> AWSResponse:
    message = f"injected by the test: {code}"
    if service == "ec2":
        body = f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        body += "<RequestID>test</RequestID></Response>"
        headers = {"Content-Type": "text/xml"}
    elif service == "s3":
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        headers = {"Content-Type": "application/xml"}
    else:
        body = json.dumps({"__type": code, "message": message})
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": f"{code};Sender"}
    return AWSResponse(url, status, headers, _Raw(body.encode()))


# --- moto --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).read()


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials and moto's endpoint in this test's environment only (for S3Storage and agents)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "ORCH_S3_ENDPOINT_URL": moto_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_url


def client_factory(url: str, faults: Faults | None = None) -> Any:
    """boto3 clients on moto, botocore's retries off (the provider's own are under test).

    The dummy keys are passed explicitly so that session-scoped setup does not depend on any
    test's environment; they are moto's conventional test values, never real ones.
    """
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)

    def make(service: str, region: str) -> Any:
        client = boto3.client(
            service,
            region_name=region,
            endpoint_url=url,
            config=config,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        return faults.attach(client) if faults is not None else client

    return make


def clean_moto(factory: Any) -> str:
    """Forget every instance, queue and message, keeping networks and profiles; returns a fresh notice queue.

    No PurgeQueue: moto 5.2.5+ allows one per queue per 60 s, as SQS does, and tests come faster than
    that. Instead moto's own per-service reset empties SQS in this account (the instance method of the
    account's backends; `get_backend("sqs").reset()` would be the class method that resets every
    service), and the real setup code makes the queue again: its ARN is the same, so the EventBridge
    rules (put again by the same call) deliver to it. A full `/moto-api/reset` would also rebuild each
    region's default VPC (about half a second per test); EC2 only loses its reservations here.
    """
    for backend in dict.values(get_backend("ec2")[DEFAULT_ACCOUNT_ID]):
        backend.reservations.clear()
    get_backend("sqs")[DEFAULT_ACCOUNT_ID].reset()
    return ensure_notice_queue(REGION, client_factory=factory).queue_url


def moto_instance(instance_id: str) -> Any:
    """The instance object inside moto's in-process backend (the server's own state)."""
    for backend in dict.values(get_backend("ec2")[DEFAULT_ACCOUNT_ID]):
        found = next((i for i in backend.all_instances() if i.id == instance_id), None)
        if found is not None:
            return found
    raise KeyError(f"no instance {instance_id} in moto")


def preempt(instance_id: str, *, reason: str = SPOT_TERMINATION) -> None:
    """Reclaim an instance as EC2 does: terminated, with state reason Server.SpotInstanceTermination."""
    instance = moto_instance(instance_id)
    instance.terminate()
    instance.state_reason = StateReason(f"{reason}: Spot instance termination", reason)
    instance._reason = f"Service initiated ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} GMT)"


@dataclass
class AwsWorld:
    url: str
    provider: AwsProvider
    settings: AwsSettings
    clock: ManualClock
    faults: Faults
    imds: ImdsEmulator
    factory: Any

    def client(self, service: str, region: str = REGION) -> Any:
        return self.provider.client(service, region)

    def user_data(self, instance_id: str, region: str = REGION) -> str:
        reply = self.client("ec2", region).describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        return base64.b64decode(reply["UserData"]["Value"]).decode()

    def start_locally(self, instance_id: str, *, region: str = REGION) -> subprocess.Popen[bytes]:
        """Run the instance's user data here, as cloud-init would on the instance (agent included)."""
        return subprocess.Popen(["bash", "-c", self.user_data(instance_id, region)])


def world_settings(imds_url: str, subnets: Mapping[str, str], groups: Mapping[str, str], queue: str) -> AwsSettings:
    return AwsSettings(
        regions={
            REGION: RegionSettings(REGION, "ami-12c6146b", dict(subnets), (groups[REGION],), queue),
            OTHER_REGION: RegionSettings(OTHER_REGION, "ami-0a1b2c3d", {}, (groups[OTHER_REGION],)),
        },
        instance_profile="orch-worker",
        agent_command=(sys.executable, "-m", "orchestrator.job.agent"),
        imds_url=imds_url,
        shutdown_on_exit=False,
        tags={"team": "proteins"},
        page_size=5,
        retry=RetrySettings(attempts=4, initial_wait_seconds=0.01, max_wait_seconds=0.05, deadline_seconds=10),
    )


@dataclass(frozen=True)
class _Base:
    subnets: Mapping[str, str]
    groups: Mapping[str, str]


@pytest.fixture(scope="session")
def aws_base(moto_url: str) -> _Base:
    """Networks and an instance profile, made once (the notice queue is made per test by `clean_moto`)."""
    reset_moto(moto_url)
    factory = client_factory(moto_url)
    subnets = {
        s["AvailabilityZone"]: s["SubnetId"]
        for s in factory("ec2", REGION).describe_subnets()["Subnets"]
        if s["AvailabilityZone"] in ("us-east-1a", "us-east-1b")
    }
    groups = {
        region: factory("ec2", region).create_security_group(GroupName="orch-workers", Description="orch")["GroupId"]
        for region in (REGION, OTHER_REGION)
    }
    factory("iam", REGION).create_instance_profile(InstanceProfileName="orch-worker")
    return _Base(subnets, groups)


@pytest.fixture
def aws_world(aws_env: str, aws_base: _Base) -> Iterator[AwsWorld]:
    """A ready `AwsProvider` on moto: subnets in two zones of us-east-1 (us-west-2 uses the default
    VPC), a security group per region, an instance profile, a notice queue with its EventBridge
    rules, and an IMDSv2 emulator for agents started with `AwsWorld.start_locally`."""
    queue_url = clean_moto(client_factory(aws_env))
    aws_placement.install()  # moto does not serve placement groups itself
    aws_placement.reset()
    faults = Faults()
    factory = client_factory(aws_env, faults)
    with ImdsEmulator() as imds:
        settings = world_settings(imds.url, aws_base.subnets, aws_base.groups, queue_url)
        clock = ManualClock()
        provider = AwsProvider(clock, settings, client_factory=factory)
        yield AwsWorld(aws_env, provider, settings, clock, faults, imds, factory)


@pytest.fixture
def aws_provider(aws_world: AwsWorld) -> AwsProvider:
    return aws_world.provider


# --- IMDSv2 ------------------------------------------------------------------------------------


class ImdsEmulator:
    """The few IMDSv2 paths orch reads, with tokens enforced as EC2 does (PUT for a token, 401 without).

    `instance-action` and `rebalance` answer 404 until the test sets them. `requests` records
    (monotonic time, method, path, status) so tests can check how often the agent polls.
    """

    def __init__(self, instance_id: str = "i-0123456789abcdef0") -> None:
        self.instance_id = instance_id
        self.tokens: set[str] = set()
        self.instance_action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self.requests: list[tuple[float, str, str, int]] = []
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None
        self.url = ""  # known once entered

    def __enter__(self) -> ImdsEmulator:
        self._server = LoopbackServer(self._handler_class(), poll_seconds=0.05)
        self.url = self._server.url
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()

    def set_interruption(self, action: str = "terminate", *, in_seconds: float = 120.0) -> float:
        """Publish a spot instance-action; returns its deadline (Unix seconds)."""
        deadline = time.time() + in_seconds
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
        with self._lock:
            self.instance_action = {"action": action, "time": stamp}
        return deadline

    def set_rebalance(self) -> None:
        with self._lock:
            self.rebalance = {"noticeTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def clear(self) -> None:
        """A new instance: no notice pending (tokens stay valid; each agent fetches its own anyway)."""
        with self._lock:
            self.instance_action = None
            self.rebalance = None

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def polls(self, path: str) -> list[float]:
        with self._lock:
            return [at for at, method, p, _ in self.requests if method == "GET" and p == path]

    def _answer(self, method: str, path: str, headers: Message[str, str]) -> tuple[int, bytes]:
        """Header names are case-insensitive here, as on EC2."""
        with self._lock:
            if method == "PUT" and path == "/latest/api/token":
                if not headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return 400, b""
                token = secrets.token_urlsafe(24)
                self.tokens.add(token)
                return 200, token.encode()
            if method != "GET":
                return 405, b""
            if headers.get("X-aws-ec2-metadata-token") not in self.tokens:
                return 401, b""
            documents: dict[str, Any] = {
                "/latest/meta-data/instance-id": self.instance_id,
                "/latest/meta-data/spot/instance-action": self.instance_action,
                "/latest/meta-data/events/recommendations/rebalance": self.rebalance,
            }
            doc = documents.get(path)
            if doc is None:
                return 404, b""
            return 200, (doc if isinstance(doc, str) else json.dumps(doc)).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(QuietHandler):
            def _serve(self) -> None:
                self.read_request()  # a body left unread would be taken for the next request
                status, body = emulator._answer(self.command, self.path, self.headers)
                with emulator._lock:
                    emulator.requests.append((time.monotonic(), self.command, self.path, status))
                self.reply(status, body, {})

            do_GET = do_PUT = do_POST = _serve

        return Handler
