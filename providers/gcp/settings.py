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
# GCE label keys and values: lowercase letters, digits, '_' and '-', at most 63 characters.
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
DEFAULT_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class GcpSettingsError(ValueError):
    """A settings file that cannot be used; the message names the file, the key and the problem."""


_RULES = TableRules(GcpSettingsError, _CREDENTIAL_KEYS, "the Google libraries read them from google.auth.default")
_Table = SettingsTable[GcpSettingsError]


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


def parse_gcp_settings(doc: Mapping[str, Any], *, source: str = "gcp.toml") -> GcpSettings:
    top = _Table(_RULES, source, doc)
    project = top.get("project", str)
    if not project or not _PROJECT.match(project):
        raise top.fail("project", "is required and must be a project id (lowercase, like my-project-123)")
    image = top.get("image", str)
    if not image:
        raise top.fail("image", 'is required, e.g. "projects/my-project/global/images/family/orch-gpu"')
    regions_table = top.get("region", dict, {})
    regions = {name: _region(top, name, table) for name, table in regions_table.items()}
    listed = top.strings("regions", tuple(regions))
    for name in listed:
        if name not in regions:
            regions[name] = _region(top, name, {})
    if not listed:
        raise top.fail("regions", 'at least one region is required, e.g. regions = ["us-central1"]')
    settings = GcpSettings(
        project=project,
        regions={name: regions[name] for name in listed},
        image=image,
        network=top.get("network", str, "global/networks/default"),
        service_account=_service_account(top),
        scopes=top.strings("scopes", DEFAULT_SCOPES),
        labels=_labels(top),
        boot_disk_gb=_boot_disk_gb(top),
        boot_disk_type=top.get("boot_disk_type", str, "pd-balanced"),
        external_ip=top.get("external_ip", bool, True),
        agent_command=top.argv("agent_command", ("orch", "agent")),
        metadata_url=top.get("metadata_url", str, "http://metadata.google.internal").rstrip("/"),
        shutdown_on_exit=top.get("shutdown_on_exit", bool, True),
        operation_timeout_seconds=top.positive("operation_timeout_seconds", 300.0),
        request_timeout_seconds=top.positive("request_timeout_seconds", 30.0),
        capacity_retry_after_seconds=top.positive("capacity_retry_after_seconds", 300.0),
        page_size=_page_size(top),
        retry=parse_retry(top.child("retry")),
        item_service=parse_item_service(top),
    )
    top.finish()
    return settings


def _service_account(top: _Table) -> str | None:
    email = top.get("service_account", str)
    if email is not None and ("@" not in email or email.endswith(".json") or "/" in email):
        raise top.fail("service_account", "must be a service account email (name@project.iam.gserviceaccount.com)")
    return email


def _labels(top: _Table) -> dict[str, str]:
    labels = top.get("labels", dict, {})
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or not isinstance(value, str) or not LABEL_VALUE.match(value):
            raise top.fail(f"labels.{key}", "GCE labels are lowercase letters, digits, '_' or '-', 63 at most")
        if key.startswith(("orch-", "goog-")):
            raise top.fail(f"labels.{key}", "keys starting with 'orch-' or 'goog-' are reserved")
    return dict(labels)


def _boot_disk_gb(top: _Table) -> int:
    size = int(top.get("boot_disk_gb", int, 100))
    if not 10 <= size <= 65536:
        raise top.fail("boot_disk_gb", "must be between 10 and 65536")
    return size


def _page_size(top: _Table) -> int:
    size = int(top.get("page_size", int, 500))
    if not 1 <= size <= 500:
        raise top.fail("page_size", "must be between 1 and 500 (the Compute API's maxResults range)")
    return size


def _region(top: _Table, name: str, table: Any) -> RegionSettings:
    r = top.entry("region", name, table, _REGION, "not a GCP region name (like us-central1)")
    zones = r.strings("zones")
    for zone in zones:
        if not zone.startswith(f"{name}-") or len(zone) != len(name) + 2:
            raise r.fail("zones", f"{zone!r} is not a zone of {name} (like {name}-a)")
    region = RegionSettings(name, zones, r.get("subnetwork", str))
    r.finish()
    return region
