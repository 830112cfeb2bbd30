"""GCP settings: the documented file format, and clear errors for the mistakes people make."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.gcp.settings import (
    DEFAULT_SCOPES,
    GcpSettingsError,
    default_settings_path,
    load_gcp_settings,
    parse_gcp_settings,
)

GOOD = """
project = "proteins-prod"
regions = ["us-central1"]
image = "projects/proteins-prod/global/images/family/orch-gpu"
network = "projects/proteins-prod/global/networks/orch"
service_account = "orch-worker@proteins-prod.iam.gserviceaccount.com"
labels = { team = "folding" }
boot_disk_gb = 200
external_ip = false
agent_command = ["/opt/orch/bin/orch", "agent"]

[retry]
attempts = 3
initial_wait_seconds = 0.2

[region.us-central1]
zones = ["us-central1-a", "us-central1-c"]
subnetwork = "projects/proteins-prod/regions/us-central1/subnetworks/orch"

[region.us-east1]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gcp.toml"
    path.write_text(text)
    return path


def test_a_documented_file_loads(tmp_path: Path) -> None:
    s = load_gcp_settings(write(tmp_path, GOOD))
    assert s.project == "proteins-prod"
    assert s.region_names == ("us-central1",)  # `regions` chooses among the configured tables
    assert s.region("us-central1").zones == ("us-central1-a", "us-central1-c")
    assert s.region("us-central1").subnetwork is not None
    assert s.scopes == DEFAULT_SCOPES and s.labels == {"team": "folding"}
    assert s.boot_disk_gb == 200 and not s.external_ip and s.shutdown_on_exit
    assert s.agent_command == ("/opt/orch/bin/orch", "agent")
    assert s.retry.attempts == 3 and s.retry.initial_wait_seconds == 0.2


def test_regions_without_tables_use_every_catalog_zone() -> None:
    s = parse_gcp_settings({"project": "proteins-prod", "image": "img", "regions": ["us-east1"]})
    assert s.region("us-east1").zones == () and s.network == "global/networks/default"
    with pytest.raises(GcpSettingsError, match="not configured"):
        s.region("europe-west4")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("boot_disk_gb = 200", "boot_disk = 200"), "boot_disk: unknown key"),
        (('project = "proteins-prod"', 'project = "Proteins_Prod"'), "project: is required"),
        (('image = "projects/proteins-prod/global/images/family/orch-gpu"', ""), "image: is required"),
        (('zones = ["us-central1-a", "us-central1-c"]', 'zones = ["us-east1-b"]'), "not a zone of us-central1"),
        (('labels = { team = "folding" }', 'labels = { Team = "x" }'), "labels.Team"),
        (('labels = { team = "folding" }', 'labels = { orch-job = "x" }'), "reserved"),
        (("boot_disk_gb = 200", "boot_disk_gb = 2"), "between 10 and 65536"),
        (("external_ip = false", 'external_ip = "no"'), "must be bool"),
        (("[retry]", '[retry]\nprivate_key = "-----BEGIN"'), "credentials do not belong here"),
        (("[region.us-east1]", "[region.useast]"), "not a GCP region name"),
        (('service_account = "orch-worker@proteins-prod.iam.gserviceaccount.com"',
          'service_account = "/home/me/key.json"'), "service account email"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(GcpSettingsError, match=message):
        load_gcp_settings(write(tmp_path, GOOD.replace(old, new)))


def test_credentials_at_the_top_are_refused(tmp_path: Path) -> None:
    with pytest.raises(GcpSettingsError, match="credentials do not belong here"):
        load_gcp_settings(write(tmp_path, 'credentials_file = "/k.json"\n' + GOOD))


def test_missing_and_broken_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(GcpSettingsError, match="ORCH_GCP_SETTINGS"):
        load_gcp_settings(tmp_path / "absent.toml")
    with pytest.raises(GcpSettingsError, match="not valid TOML"):
        load_gcp_settings(write(tmp_path, "project = "))


def test_default_path_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_GCP_SETTINGS", raising=False)
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    assert default_settings_path() == tmp_path / "providers" / "gcp.toml"
    monkeypatch.setenv("ORCH_GCP_SETTINGS", str(tmp_path / "x.toml"))
    assert default_settings_path() == tmp_path / "x.toml"
