"""AWS settings: the documented file format, and clear errors for the mistakes people make."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.aws.provider import AwsProvider
from providers.aws.settings import AwsSettingsError, default_settings_path, load_aws_settings, parse_aws_settings
from providers.base import ChecksOptions, Provider
from vocab import PermanentError, SystemClock

GOOD = """
regions = ["us-east-1"]
instance_profile = "orch-worker"
key_name = "ops"
security_groups = ["sg-0aaa"]
agent_command = ["/opt/orch/bin/orch", "agent"]
tags = { team = "proteins" }

[retry]
attempts = 3
initial_wait_seconds = 0.2

[region.us-east-1]
ami = "ami-0123456789abcdef0"
notice_queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/orch-ec2-notices"
subnets = { us-east-1a = "subnet-0a", us-east-1b = "subnet-0b" }

[region.us-west-2]
ami = "ami-0fedcba9876543210"
security_groups = ["sg-0bbb"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aws.toml"
    path.write_text(text)
    return path


def test_a_documented_file_loads(tmp_path: Path) -> None:
    s = load_aws_settings(write(tmp_path, GOOD))
    assert s.region_names == ("us-east-1",)  # `regions` chooses among the configured tables
    assert s.region("us-east-1").subnets == {"us-east-1a": "subnet-0a", "us-east-1b": "subnet-0b"}
    assert s.security_groups_for("us-east-1") == ("sg-0aaa",)
    assert s.agent_command == ("/opt/orch/bin/orch", "agent")
    assert s.retry.attempts == 3 and s.retry.initial_wait_seconds == 0.2
    assert s.region("us-east-1").notice_queue_url is not None
    assert s.spot_interruption == "terminate" and s.shutdown_on_exit


def test_without_regions_every_table_is_used(tmp_path: Path) -> None:
    s = load_aws_settings(write(tmp_path, GOOD.replace('regions = ["us-east-1"]\n', "")))
    assert s.region_names == ("us-east-1", "us-west-2")
    assert s.security_groups_for("us-west-2") == ("sg-0bbb",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("key_name", "keyname"), "keyname: unknown key"),
        (('ami = "ami-0123456789abcdef0"', 'ami = "0123"'), "region.us-east-1.ami"),
        (('regions = ["us-east-1"]', 'regions = ["eu-west-1"]'), "has no [region.eu-west-1] table"),
        (('instance_profile = "orch-worker"', 'aws_secret_access_key = "x"'), "credentials do not belong"),
        (('key_name = "ops"', 'spot_interruption = "hibernate"'), "not supported"),
        (("subnet-0a", "sg-0a"), "subnets.us-east-1a"),
        (("attempts = 3", "attempts = 0"), "retry.attempts"),
        (('key_name = "ops"', "page_size = 2"), "page_size"),
        (('key_name = "ops"', "key_name = 3"), "key_name: must be str"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    assert change[0] in GOOD
    with pytest.raises(AwsSettingsError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        load_aws_settings(write(tmp_path, GOOD.replace(*change)))
    assert str(tmp_path / "aws.toml") in str(info.value)


def test_missing_and_broken_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AwsSettingsError, match="ORCH_AWS_SETTINGS"):
        load_aws_settings(tmp_path / "absent.toml")
    with pytest.raises(AwsSettingsError, match="not valid TOML"):
        load_aws_settings(write(tmp_path, "regions = ["))
    with pytest.raises(AwsSettingsError, match="at least one region"):
        parse_aws_settings({})


def test_default_path_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_AWS_SETTINGS", raising=False)
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    assert default_settings_path() == tmp_path / "providers" / "aws.toml"
    monkeypatch.setenv("ORCH_AWS_SETTINGS", str(tmp_path / "x.toml"))
    assert default_settings_path() == tmp_path / "x.toml"


def test_a_provider_is_built_from_the_file_with_botocore_retries_off(tmp_path: Path) -> None:
    provider = AwsProvider.from_settings_file(SystemClock(), write(tmp_path, GOOD))
    assert isinstance(provider, Provider) and isinstance(provider, ChecksOptions) and provider.name == "aws"
    provider.check_options({}, None)
    with pytest.raises(PermanentError, match="amii"):
        provider.check_options({"amii": "ami-1"}, None)
    assert provider.settings.region_names == ("us-east-1",)
    client = provider.client("ec2", "us-east-1")  # no call is made: only the client is built
    assert client.meta.region_name == "us-east-1"
    assert client.meta.config.retries["total_max_attempts"] == 1  # tenacity is the one retry layer
    assert provider.client("ec2", "us-east-1") is client
