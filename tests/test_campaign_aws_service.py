"""A controller in the cloud: the item service over TLS at the address aws.toml names, and the one
security group that lets the workers (and only them) reach it, against moto over HTTP.

The certificate is made by the test (`cryptography`), for 127.0.0.1; workers verify the service with
its PEM (ORCH_ITEMS_CA), and a worker that does not trust it, or speaks plain HTTP, gets nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator.job.item_records import ItemCounts
from orchestrator.job.worker.http_source import HttpItemSource, ItemServiceError
from orchestrator.store import Store
from orchestrator.store.item_service import ItemService
from orchestrator.store.item_source import ItemEndpoint, attempt_token, worker_environment
from orchestrator.store.items import ItemStore
from providers.aws.network import ITEM_SERVICE_GROUP
from providers.aws.settings import AwsSettingsError, parse_aws_settings
from tests.aws_support import REGION, AwsWorld
from tests.test_bucket_items import campaign

SECRET = b"0123456789abcdef-tls-secret"
BASE = {"region": {"us-east-1": {"ami": "ami-0123456789abcdef0"}}, "security_groups": ["sg-0aaa"]}


def self_signed(tmp_path: Path, host: str = "127.0.0.1") -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orch item service")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (tmp_path / "items.pem").write_text(pem)
    (tmp_path / "items.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return tmp_path / "items.pem", tmp_path / "items.key", pem


def test_the_settings_name_the_service_over_tls_or_nothing() -> None:
    s = parse_aws_settings({**BASE, "item_service_url": "https://10.0.3.17:8443",
                            "item_service_tls_cert": "/etc/orch/items.pem", "item_service_tls_key": "/etc/orch/k"})
    assert s.item_service is not None and s.item_service.port == 8443
    assert parse_aws_settings(BASE).item_service is None  # the bucket transport
    bad = [
        ({"item_service_url": "http://10.0.3.17:8443", "item_service_tls_cert": "c", "item_service_tls_key": "k"},
         "item_service_url: must be https://"),
        ({"item_service_url": "https://10.0.3.17", "item_service_tls_cert": "c", "item_service_tls_key": "k"},
         "item_service_url: must be https://"),
        ({"item_service_url": "https://10.0.3.17:8443"}, "item_service_tls_cert: and item_service_tls_key"),
        ({"item_service_tls_cert": "c"}, "item_service_url: is required"),
        ({"item_service_url": 8443}, "item_service_url"),
    ]
    for change, message in bad:
        with pytest.raises(AwsSettingsError, match=message) as caught:
            parse_aws_settings({**BASE, **change}, source="/home/u/.orch/providers/aws.toml")
        assert str(caught.value).startswith("/home/u/.orch/providers/aws.toml: ") and "\n" not in str(caught.value)


def test_the_service_port_is_open_to_the_workers_group_only(aws_world: AwsWorld) -> None:
    groups = aws_world.provider.open_item_service(8443)
    again = aws_world.provider.open_item_service(8443)  # safe to repeat
    assert groups == again and set(groups) == set(aws_world.provider.settings.region_names)
    ec2 = aws_world.client("ec2")
    (group,) = ec2.describe_security_groups(GroupIds=[groups[REGION]])["SecurityGroups"]
    assert group["GroupName"] == ITEM_SERVICE_GROUP
    # moto keeps groups across the session: other tests may have opened other ports of the same group.
    (rule,) = [r for r in group["IpPermissions"] if r["FromPort"] == 8443]
    workers = aws_world.provider.settings.security_groups_for(REGION)
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 8443, 8443)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == list(workers)
    assert all(r.get("IpRanges", []) == [] and r.get("Ipv6Ranges", []) == [] for r in group["IpPermissions"]), \
        "open to an address range"
    (worker_group,) = ec2.describe_security_groups(GroupIds=list(workers))["SecurityGroups"]
    assert group["VpcId"] == worker_group["VpcId"]


def test_workers_reach_the_service_over_tls_with_its_certificate(sqlite_store: Store, tmp_path: Path) -> None:
    cert, key, pem = self_signed(tmp_path)
    job, (attempt, _) = campaign(sqlite_store, 3)
    service = ItemService(sqlite_store, secret=SECRET, host="127.0.0.1", port=0, tls_cert=str(cert),
                          tls_key=str(key)).start()
    try:
        url = f"https://127.0.0.1:{service.port}"
        endpoint = ItemEndpoint(url, SECRET, providers=frozenset({"aws"}), ca_pem=pem)
        env = worker_environment("sqlite:///never", provider="aws", endpoint=endpoint, job_id=job, attempt_id=attempt)
        assert env["ORCH_ITEMS_ENDPOINT"] == url and env["ORCH_ITEMS_CA"] == pem and "ORCH_ITEMS_URL" not in env
        src = HttpItemSource(url, job_id=job, owner=attempt, token=env["ORCH_ITEMS_TOKEN"], ca_pem=pem)
        (held,) = src.lease(1)
        assert src.complete(held, result=json.dumps({"ok": 1}), result_uri=None, work_seconds=0.5)
        assert ItemStore(sqlite_store.engine).counts(job) == ItemCounts(done=1, queued=2)

        untrusting = HttpItemSource(url, job_id=job, owner=attempt, token=attempt_token(SECRET, job, attempt),
                                    retry_for_s=0.3)  # the system's CAs: a self-signed service is refused
        with pytest.raises(ItemServiceError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            untrusting.lease(1)
        plain = HttpItemSource(f"http://127.0.0.1:{service.port}", job_id=job, owner=attempt,
                               token=attempt_token(SECRET, job, attempt), retry_for_s=0.3)
        began = time.monotonic()
        with pytest.raises(ItemServiceError):
            plain.lease(1)
        assert time.monotonic() - began < 10
        assert ItemStore(sqlite_store.engine).counts(job) == ItemCounts(done=1, queued=2)
    finally:
        service.stop()


def test_the_controller_serves_and_opens_what_the_settings_name(aws_world: AwsWorld, sqlite_store: Store,
                                                               orch_home: Path, tmp_path: Path) -> None:
    import dataclasses

    from orchestrator.cli.campaign_items import controller_items, items_secret
    from providers.aws.provider import AwsProvider
    from providers.item_service import ItemServiceAccess
    from tests.aws_support import free_port

    with controller_items(sqlite_store, {"aws": aws_world.provider}) as endpoint:  # no item_service_url
        assert endpoint is not None and endpoint.transport("aws") == "bucket" and endpoint.url == ""
    cert, key, pem = self_signed(tmp_path)
    port = free_port()
    access = ItemServiceAccess(f"https://127.0.0.1:{port}", str(cert), str(key))
    provider = AwsProvider(aws_world.clock, dataclasses.replace(aws_world.provider.settings, item_service=access),
                           client_factory=aws_world.factory)
    job, (attempt, _) = campaign(sqlite_store, 2)
    with controller_items(sqlite_store, {"aws": provider}) as endpoint:
        assert endpoint is not None and endpoint.transport("aws") == "service" and endpoint.ca_pem == pem
        assert endpoint.secret == items_secret() and (orch_home / "items.secret").stat().st_mode & 0o077 == 0
        env = worker_environment("sqlite:///never", provider="aws", endpoint=endpoint, job_id=job, attempt_id=attempt)
        src = HttpItemSource(env["ORCH_ITEMS_ENDPOINT"], job_id=job, owner=attempt, token=env["ORCH_ITEMS_TOKEN"],
                             ca_pem=env["ORCH_ITEMS_CA"])
        assert [x.index for x in src.lease(1)] == [0]
    groups = aws_world.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [ITEM_SERVICE_GROUP]}])["SecurityGroups"]
    opened = [(rule["FromPort"], [g["GroupId"] for g in rule["UserIdGroupPairs"]])
              for group in groups if group["VpcId"] for rule in group["IpPermissions"]]
    assert (port, list(provider.settings.security_groups_for(REGION))) in opened
