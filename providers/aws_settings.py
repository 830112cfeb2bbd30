"""The AWS provider's settings: where instances go and how they start, read from a TOML file.

Everything account-specific (AMIs, subnets, security groups, the instance profile) lives in this file
and never in code or in a job, so the same job runs in any account whose operator wrote one. The file
holds no credentials: boto3 finds those through its standard chain (environment, shared config,
instance or pod role), and a settings file that tries to carry them is refused.

Default location: `$ORCH_AWS_SETTINGS`, else `$ORCH_HOME/providers/aws.toml`, else
`~/.orch/providers/aws.toml`. The format is documented in docs/providers/aws.md.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPOT_INTERRUPTION_BEHAVIORS = ("terminate",)
_FORBIDDEN_KEYS = {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "secret_access_key"}
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


class AwsSettingsError(ValueError):
    """A settings file that cannot be used; the message names the file, the key and the problem."""


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Bounds of the provider's own retries of throttled or failed calls (tenacity)."""

    attempts: int = 5
    initial_wait_seconds: float = 0.5
    max_wait_seconds: float = 20.0
    deadline_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class RegionSettings:
    """Where instances of one region start: its AMI, and optionally one subnet per zone."""

    name: str
    ami: str
    subnets: Mapping[str, str] = field(default_factory=dict)  # zone -> subnet id
    security_groups: tuple[str, ...] = ()
    # SQS queue fed by this region's EventBridge rules (see `ensure_notice_queue`); None: no early notices.
    notice_queue_url: str | None = None


@dataclass(frozen=True, slots=True)
class AwsSettings:
    regions: Mapping[str, RegionSettings]
    instance_profile: str | None = None  # name or ARN of the role instances run as
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()  # default for regions that name none
    # argv that starts the agent on the instance; the AMI must have it on PATH.
    agent_command: tuple[str, ...] = ("orch", "agent")
    imds_url: str = "http://169.254.169.254"
    spot_interruption: str = "terminate"
    # Shut the instance down (and so terminate it) when the agent exits: no idle billing.
    shutdown_on_exit: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)  # extra tags, e.g. cost allocation
    offer_cache_seconds: float = 60.0
    capacity_retry_after_seconds: float = 300.0
    page_size: int = 500
    retry: RetrySettings = field(default_factory=RetrySettings)

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(self.regions)

    def region(self, name: str) -> RegionSettings:
        try:
            return self.regions[name]
        except KeyError:
            raise AwsSettingsError(
                f"region {name!r} is not configured (configured: {', '.join(self.regions) or 'none'})"
            ) from None

    def security_groups_for(self, region: str) -> tuple[str, ...]:
        return self.region(region).security_groups or self.security_groups


def default_settings_path() -> Path:
    explicit = os.environ.get("ORCH_AWS_SETTINGS")
    if explicit:
        return Path(explicit)
    home = os.environ.get("ORCH_HOME")
    base = Path(home) if home else Path.home() / ".orch"
    return base / "providers" / "aws.toml"


def load_aws_settings(path: Path | None = None) -> AwsSettings:
    path = path or default_settings_path()
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise AwsSettingsError(
            f"{path}: no AWS settings file; write one (see docs/providers/aws.md) or set ORCH_AWS_SETTINGS"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise AwsSettingsError(f"{path}: not valid TOML: {exc}") from None
    return parse_aws_settings(doc, source=str(path))


class _Table:
    """One TOML table being read: remembers keys seen so unknown (misspelt) keys are errors."""

    def __init__(self, source: str, table: Mapping[str, Any], path: str = "") -> None:
        self.source, self.table, self.path = source, table, path
        self.seen: set[str] = set()

    def fail(self, key: str, problem: str) -> AwsSettingsError:
        name = f"{self.path}.{key}" if self.path else key
        return AwsSettingsError(f"{self.source}: {name}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise self.fail(key, f"must be {' or '.join(k.__name__ for k in kinds)}, not {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list)
        if value is None:
            return default
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        return tuple(value)

    def positive(self, key: str, default: float, *, zero_ok: bool = False) -> float:
        value = float(self.get(key, (int, float), default))
        if value < 0 or (value == 0 and not zero_ok):
            raise self.fail(key, f"must be {'zero or more' if zero_ok else 'positive'}, not {value}")
        return value

    def finish(self) -> None:
        for key in self.table:
            if key.lower() in _FORBIDDEN_KEYS:
                raise self.fail(key, "credentials do not belong here; boto3 reads them from its own chain")
            if key not in self.seen:
                raise self.fail(key, "unknown key")


def parse_aws_settings(doc: Mapping[str, Any], *, source: str = "aws.toml") -> AwsSettings:
    top = _Table(source, doc)
    regions_table = top.get("region", dict, {})
    regions = {name: _region(source, name, table) for name, table in regions_table.items()}
    listed = top.strings("regions", tuple(regions))
    for name in listed:
        if name not in regions:
            raise top.fail("regions", f"{name!r} has no [region.{name}] table (it needs at least an ami)")
    if not listed:
        raise top.fail("region", 'configure at least one region, e.g. [region.us-east-1] ami = "ami-..."')
    behavior = top.get("spot_interruption", str, "terminate")
    if behavior not in SPOT_INTERRUPTION_BEHAVIORS:
        raise top.fail(
            "spot_interruption",
            f"{behavior!r} is not supported: orch resumes a reclaimed task on a new attempt from its "
            "checkpoint, so a stopped or hibernated spot instance would only be billed storage",
        )
    agent = top.strings("agent_command", ("orch", "agent"))
    if not agent:
        raise top.fail("agent_command", "must name a program")
    tags = top.get("tags", dict, {})
    if not all(isinstance(v, str) for v in tags.values()) or any(k.startswith(("aws:", "orch:")) for k in tags):
        raise top.fail("tags", "values must be strings and keys may not start with 'aws:' or 'orch:'")
    page_size = int(top.get("page_size", int, 500))
    if not 5 <= page_size <= 1000:
        raise top.fail("page_size", "must be between 5 and 1000 (the EC2 API's MaxResults range)")
    settings = AwsSettings(
        regions={name: regions[name] for name in listed},
        instance_profile=top.get("instance_profile", str),
        key_name=top.get("key_name", str),
        security_groups=top.strings("security_groups"),
        agent_command=agent,
        imds_url=top.get("imds_url", str, "http://169.254.169.254").rstrip("/"),
        spot_interruption=behavior,
        shutdown_on_exit=top.get("shutdown_on_exit", bool, True),
        tags=dict(tags),
        offer_cache_seconds=top.positive("offer_cache_seconds", 60.0, zero_ok=True),
        capacity_retry_after_seconds=top.positive("capacity_retry_after_seconds", 300.0),
        page_size=page_size,
        retry=_retry(source, top.get("retry", dict, {})),
    )
    top.finish()
    return settings


def _region(source: str, name: str, table: Any) -> RegionSettings:
    if not isinstance(table, dict):
        raise AwsSettingsError(f"{source}: region.{name}: must be a table")
    if not _REGION.match(name):
        raise AwsSettingsError(f"{source}: region.{name}: not an AWS region name (like us-east-1)")
    r = _Table(source, table, f"region.{name}")
    ami = r.get("ami", str)
    if not ami or not ami.startswith("ami-"):
        raise r.fail("ami", "is required and must be an AMI id (ami-...)")
    subnets = r.get("subnets", dict, {})
    for zone, subnet in subnets.items():
        if not zone.startswith(name) or not isinstance(subnet, str) or not subnet.startswith("subnet-"):
            raise r.fail(f"subnets.{zone}", f"must map a zone of {name} to a subnet id (subnet-...)")
    queue = r.get("notice_queue_url", str)
    if queue is not None and not queue.startswith(("https://", "http://")):
        raise r.fail("notice_queue_url", "must be an SQS queue URL (https://sqs.<region>.amazonaws.com/...)")
    region = RegionSettings(name, ami, dict(subnets), r.strings("security_groups"), queue)
    r.finish()
    return region


def _retry(source: str, table: Mapping[str, Any]) -> RetrySettings:
    r = _Table(source, table, "retry")
    attempts = int(r.get("attempts", int, 5))
    if attempts < 1:
        raise r.fail("attempts", "must be at least 1")
    retry = RetrySettings(
        attempts=attempts,
        initial_wait_seconds=r.positive("initial_wait_seconds", 0.5),
        max_wait_seconds=r.positive("max_wait_seconds", 20.0),
        deadline_seconds=r.positive("deadline_seconds", 60.0),
    )
    r.finish()
    return retry
