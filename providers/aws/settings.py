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
from typing import Annotated, Any

from pydantic import Field

from providers.item_service import ItemServiceAccess, parse_item_service
from providers.settings_file import (
    Argv,
    FileRules,
    NonEmpty,
    RetryFile,
    RetrySettings,
    Seconds,
    SettingsModel,
    ZeroOrMoreSeconds,
    load_toml,
    lookup_region,
    rule,
    says,
    settings_path,
)

SPOT_INTERRUPTION_BEHAVIORS = ("terminate",)
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


class AwsSettingsError(ValueError):
    """A settings file that cannot be used; the message names the file, the key and the problem."""


_RULES = FileRules(
    AwsSettingsError,
    frozenset({"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "secret_access_key"}),
    "boto3 reads them from its own chain",
)


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


QueueUrl = Annotated[str, rule(lambda v: v.startswith(("https://", "http://")),
                               "must be an SQS queue URL (https://sqs.<region>.amazonaws.com/...)")]


class RegionFile(SettingsModel):
    """`[region.<name>]`: where instances of one region start."""

    ami: Annotated[str, rule(lambda v: v.startswith("ami-"), "is required and must be an AMI id (ami-...)")]
    subnets: dict[str, str] = {}  # zone -> subnet id, checked against the region's name in `_region`
    security_groups: list[NonEmpty] = []
    notice_queue_url: QueueUrl | None = None


RegionName = Annotated[str, rule(lambda v: bool(_REGION.match(v)), "not an AWS region name (like us-east-1)")]


class AwsFile(SettingsModel):
    """The AWS settings file (docs/providers/aws.md), one field per key; `AwsSettings` is what it becomes."""

    region: dict[RegionName, RegionFile] = {}
    regions: list[NonEmpty] | None = None
    instance_profile: str | None = None
    key_name: str | None = None
    security_groups: list[NonEmpty] = []
    agent_command: Argv = ["orch", "agent"]
    imds_url: str = "http://169.254.169.254"
    spot_interruption: Annotated[str, rule(
        lambda v: v in SPOT_INTERRUPTION_BEHAVIORS,
        "{got} is not supported: orch resumes a reclaimed task on a new attempt from its checkpoint, so a "
        "stopped or hibernated spot instance would only be billed storage")] = "terminate"
    shutdown_on_exit: bool = True
    tags: Annotated[dict[str, str], says("values must be strings and keys may not start with 'aws:' or 'orch:'"),
                    rule(lambda t: not any(k.startswith(("aws:", "orch:")) for k in t),
                         "values must be strings and keys may not start with 'aws:' or 'orch:'")] = {}
    offer_cache_seconds: ZeroOrMoreSeconds = 60.0
    capacity_retry_after_seconds: Seconds = 300.0
    page_size: Annotated[int, Field(ge=5, le=1000),
                         says("must be between 5 and 1000 (the EC2 API's MaxResults range)")] = 500
    retry: RetryFile = RetryFile()
    placement_scores: bool = False
    placement_score_cache_seconds: Seconds = 3600.0
    # The controller's item service as this provider's workers reach it (providers/item_service.py).
    item_service_url: str | None = None
    item_service_tls_cert: str | None = None
    item_service_tls_key: str | None = None


def parse_aws_settings(doc: Mapping[str, Any], *, source: str = "aws.toml") -> AwsSettings:
    f = _RULES.validate(AwsFile, doc, source)
    regions = {name: _region(source, name, table) for name, table in f.region.items()}
    listed = tuple(f.regions) if f.regions is not None else tuple(regions)
    for name in listed:
        if name not in regions:
            raise _RULES.fail(source, "regions", f"{name!r} has no [region.{name}] table (it needs at least an ami)")
    if not listed:
        raise _RULES.fail(source, "region", 'configure at least one region, e.g. [region.us-east-1] ami = "ami-..."')
    same = {name: getattr(f, name) for name in _SAME_NAMES}
    return AwsSettings(
        **same,
        regions={name: regions[name] for name in listed},
        security_groups=tuple(f.security_groups),
        agent_command=tuple(f.agent_command),
        imds_url=f.imds_url.rstrip("/"),
        retry=f.retry.settings(),
        item_service=parse_item_service(f.item_service_url, f.item_service_tls_cert, f.item_service_tls_key,
                                        lambda key, problem: _RULES.fail(source, key, problem)),
    )


# Keys whose value the settings take as it is (the others are converted above).
_SAME_NAMES = ("instance_profile", "key_name", "spot_interruption", "shutdown_on_exit", "tags", "offer_cache_seconds",
               "capacity_retry_after_seconds", "page_size", "placement_scores", "placement_score_cache_seconds")


def _region(source: str, name: str, r: RegionFile) -> RegionSettings:
    for zone, subnet in r.subnets.items():
        if not zone.startswith(name) or not subnet.startswith("subnet-"):
            raise _RULES.fail(source, f"region.{name}.subnets.{zone}",
                              f"must map a zone of {name} to a subnet id (subnet-...)")
    return RegionSettings(name, r.ami, dict(r.subnets), tuple(r.security_groups), r.notice_queue_url)
