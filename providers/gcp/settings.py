"""The GCP provider's settings: which project and zones, and how instances boot, read from a TOML file.

Everything project-specific (the image, the network, the service account instances run as) lives in
this file, never in code or in a job, so the same job runs in any project whose operator wrote one.
The file holds no credentials: the Google client libraries find those through the standard chain
(`google.auth.default`: GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login, or the
metadata server of the VM or GKE pod), and a file that tries to carry them is refused.

Default location: `$ORCH_GCP_SETTINGS`, else `$ORCH_HOME/providers/gcp.toml`, else
`~/.orch/providers/gcp.toml`. The format is documented in docs/providers/gcp.md.
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
    load_toml,
    lookup_region,
    rule,
    says,
    settings_path,
)

_CREDENTIAL_KEYS = frozenset(
    {
        "credentials",
        "credentials_file",
        "key_file",
        "private_key",
        "private_key_id",
        "client_secret",
        "refresh_token",
        "access_token",
        "service_account_key",
        "api_key",
    }
)
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z0-9.-]+:[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_PROJECT_RULE = "is required and must be a project id (lowercase, like my-project-123)"
# GCE label keys and values: lowercase letters, digits, '_' and '-', at most 63 characters.
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
DEFAULT_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class GcpSettingsError(ValueError):
    """A settings file that cannot be used; the message names the file, the key and the problem."""


_RULES = FileRules(GcpSettingsError, _CREDENTIAL_KEYS, "the Google libraries read them from google.auth.default")


@dataclass(frozen=True, slots=True)
class RegionSettings:
    """The zones of one region orch may use (empty: every catalog zone) and their subnetwork."""

    name: str
    zones: tuple[str, ...] = ()
    subnetwork: str | None = None


@dataclass(frozen=True, slots=True)
class GcpSettings:
    project: str
    regions: Mapping[str, RegionSettings]
    # A boot image with the GPU driver and `orch` installed, e.g. "projects/p/global/images/family/orch-gpu".
    image: str
    network: str = "global/networks/default"
    service_account: str | None = None  # email of the account instances run as; None: no account
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    labels: Mapping[str, str] = field(default_factory=dict)  # extra labels, e.g. cost allocation
    boot_disk_gb: int = 100
    boot_disk_type: str = "pd-balanced"
    external_ip: bool = True
    # argv that starts the agent on the instance; the image must have it on PATH.
    agent_command: tuple[str, ...] = ("orch", "agent")
    metadata_url: str = "http://metadata.google.internal"
    # Stop the instance when the agent exits: the GPU stops billing with the job.
    shutdown_on_exit: bool = True
    operation_timeout_seconds: float = 300.0
    request_timeout_seconds: float = 30.0
    capacity_retry_after_seconds: float = 300.0
    page_size: int = 500
    retry: RetrySettings = field(default_factory=RetrySettings)
    # Campaign workers reach the controller's item service here (None: through the job's bucket).
    item_service: ItemServiceAccess | None = None

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(self.regions)

    def region(self, name: str) -> RegionSettings:
        return lookup_region(self.regions, name, GcpSettingsError)


def default_settings_path() -> Path:
    return settings_path("ORCH_GCP_SETTINGS", "gcp.toml")


def load_gcp_settings(path: Path | None = None) -> GcpSettings:
    path = path or default_settings_path()
    hint = "no GCP settings file; write one (see docs/providers/gcp.md) or set ORCH_GCP_SETTINGS"
    return parse_gcp_settings(load_toml(path, GcpSettingsError, hint), source=str(path))


def _is_email(value: str) -> bool:
    return "@" in value and not value.endswith(".json") and "/" not in value


_LABELS = "GCE labels are lowercase letters, digits, '_' or '-', 63 at most"
LabelKey = Annotated[str, rule(lambda k: bool(LABEL_KEY.match(k)), _LABELS),
                     rule(lambda k: not k.startswith(("orch-", "goog-")),
                          "keys starting with 'orch-' or 'goog-' are reserved")]
LabelValue = Annotated[str, says(_LABELS), rule(lambda v: bool(LABEL_VALUE.match(v)), _LABELS)]
RegionName = Annotated[str, rule(lambda v: bool(_REGION.match(v)), "not a GCP region name (like us-central1)")]


class RegionFile(SettingsModel):
    """`[region.<name>]`: the zones orch may use (empty: every catalog zone) and their subnetwork."""

    zones: list[NonEmpty] = []  # checked against the region's name in `_region`
    subnetwork: str | None = None


class GcpFile(SettingsModel):
    """The GCP settings file (docs/providers/gcp.md), one field per key; `GcpSettings` is what it becomes."""

    project: Annotated[str, says(_PROJECT_RULE), rule(lambda v: bool(_PROJECT.match(v)), _PROJECT_RULE)]
    image: Annotated[str, Field(min_length=1),
                     says('is required, e.g. "projects/my-project/global/images/family/orch-gpu"')]
    region: dict[RegionName, RegionFile] = {}
    regions: list[RegionName] | None = None
    network: str = "global/networks/default"
    service_account: Annotated[str, rule(_is_email, "must be a service account email "
                                                    "(name@project.iam.gserviceaccount.com)")] | None = None
    scopes: list[NonEmpty] = list(DEFAULT_SCOPES)
    labels: dict[LabelKey, LabelValue] = {}
    boot_disk_gb: Annotated[int, Field(ge=10, le=65536), says("must be between 10 and 65536")] = 100
    boot_disk_type: str = "pd-balanced"
    external_ip: bool = True
    agent_command: Argv = ["orch", "agent"]
    metadata_url: str = "http://metadata.google.internal"
    shutdown_on_exit: bool = True
    operation_timeout_seconds: Seconds = 300.0
    request_timeout_seconds: Seconds = 30.0
    capacity_retry_after_seconds: Seconds = 300.0
    page_size: Annotated[int, Field(ge=1, le=500),
                         says("must be between 1 and 500 (the Compute API's maxResults range)")] = 500
    retry: RetryFile = RetryFile()
    # The controller's item service as this provider's workers reach it (providers/item_service.py).
    item_service_url: str | None = None
    item_service_tls_cert: str | None = None
    item_service_tls_key: str | None = None


def parse_gcp_settings(doc: Mapping[str, Any], *, source: str = "gcp.toml") -> GcpSettings:
    f = _RULES.validate(GcpFile, doc, source)
    regions = {name: _region(source, name, table) for name, table in f.region.items()}
    listed = tuple(f.regions) if f.regions is not None else tuple(regions)
    for name in listed:
        regions.setdefault(name, RegionSettings(name))
    if not listed:
        raise _RULES.fail(source, "regions", 'at least one region is required, e.g. regions = ["us-central1"]')
    same = {name: getattr(f, name) for name in _SAME_NAMES}
    return GcpSettings(
        **same,
        regions={name: regions[name] for name in listed},
        scopes=tuple(f.scopes),
        agent_command=tuple(f.agent_command),
        metadata_url=f.metadata_url.rstrip("/"),
        retry=f.retry.settings(),
        item_service=parse_item_service(f.item_service_url, f.item_service_tls_cert, f.item_service_tls_key,
                                        lambda key, problem: _RULES.fail(source, key, problem)),
    )


# Keys whose value the settings take as it is (the others are converted above).
_SAME_NAMES = ("project", "image", "network", "service_account", "labels", "boot_disk_gb", "boot_disk_type",
               "external_ip", "shutdown_on_exit", "operation_timeout_seconds", "request_timeout_seconds",
               "capacity_retry_after_seconds", "page_size")


def _region(source: str, name: str, r: RegionFile) -> RegionSettings:
    for zone in r.zones:
        if not zone.startswith(f"{name}-") or len(zone) != len(name) + 2:
            raise _RULES.fail(source, f"region.{name}.zones", f"{zone!r} is not a zone of {name} (like {name}-a)")
    return RegionSettings(name, tuple(r.zones), r.subnetwork)
