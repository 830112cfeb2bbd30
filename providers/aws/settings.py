"""The AWS provider's settings: where instances go and how they start, read from a TOML file.

Everything account-specific (AMIs, subnets, security groups, the instance profile) lives in this file
and never in code or in a job, so the same job runs in any account whose operator wrote one. The file
holds no credentials: boto3 finds those through its standard chain (environment, shared config,
instance or pod role), and a settings file that tries to carry them is refused.

Default location: `$ORCH_AWS_SETTINGS`, else `$ORCH_HOME/providers/aws.toml`, else
`~/.orch/providers/aws.toml`. The format is documented in docs/providers/aws.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.item_service import ItemServiceAccess, parse_item_service
from providers.settings_file import (
    RetrySettings,
    SettingsTable,
    TableRules,
    load_toml,
    lookup_region,
    parse_retry,
    settings_path,
)

SPOT_INTERRUPTION_BEHAVIORS = ("terminate",)
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


class AwsSettingsError(ValueError):
    """A settings file that cannot be used; the message names the file, the key and the problem."""


_RULES = TableRules(
    AwsSettingsError,
    frozenset({"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "secret_access_key"}),
    "boto3 reads them from its own chain",
)
_Table = SettingsTable[AwsSettingsError]


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
    # Ask EC2 for spot placement scores per zone (providers/aws/signals.py); EC2 limits these a day.
    placement_scores: bool = False
    placement_score_cache_seconds: float = 3600.0
    # Campaign workers reach the controller's item service here (None: through the job's bucket).
    item_service: ItemServiceAccess | None = None

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(self.regions)

    def region(self, name: str) -> RegionSettings:
        return lookup_region(self.regions, name, AwsSettingsError)

    def security_groups_for(self, region: str) -> tuple[str, ...]:
        return self.region(region).security_groups or self.security_groups


def default_settings_path() -> Path:
    return settings_path("ORCH_AWS_SETTINGS", "aws.toml")


def load_aws_settings(path: Path | None = None) -> AwsSettings:
    path = path or default_settings_path()
    hint = "no AWS settings file; write one (see docs/providers/aws.md) or set ORCH_AWS_SETTINGS"
    return parse_aws_settings(load_toml(path, AwsSettingsError, hint), source=str(path))


def parse_aws_settings(doc: Mapping[str, Any], *, source: str = "aws.toml") -> AwsSettings:
    top = _Table(_RULES, source, doc)
    regions_table = top.get("region", dict, {})
    regions = {name: _region(top, name, table) for name, table in regions_table.items()}
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
    agent = top.argv("agent_command", ("orch", "agent"))
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
        retry=parse_retry(top.child("retry")),
        placement_scores=top.get("placement_scores", bool, False),
        placement_score_cache_seconds=top.positive("placement_score_cache_seconds", 3600.0),
        item_service=parse_item_service(top),
    )
    top.finish()
    return settings


def _region(top: _Table, name: str, table: Any) -> RegionSettings:
    r = top.entry("region", name, table, _REGION, "not an AWS region name (like us-east-1)")
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
