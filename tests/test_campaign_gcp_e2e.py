"""The example campaign on `gcp` end to end, through the job's bucket: the GCE REST fake and the GCS fake
over HTTP, the real compute_v1 client, the real loop and SQLite store, the real agent and worker SDK.

As tests/test_campaign_aws_e2e.py, with Google's parts: `orch submit` records
examples/fold/campaign.toml with `providers = ["gcp"]` and checkpoints in `gs://ckpt/fold`; the test
boots each instance the loop inserts by running its startup script here, with a GCE metadata server
emulated for the agent; the workers lease and commit through objects in the bucket (GCS
`ifGenerationMatch`); halfway, the metadata server says `preempted`, the agents forward SIGTERM, and
GCE takes the instances back; replacements finish the rest. Credentials reach the hosts only through
the standard chain (a service-account file whose token endpoint is the GCS fake), never in a job's
environment.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from orchestrator.cli.main import main
from orchestrator.cli.wiring import open_store
from orchestrator.core.model import AttemptView, Outcome
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from orchestrator.store.item_source import ItemEndpoint
from orchestrator.store.items import ItemStore
from providers.gcp.launch import instance_name
from tests import gce_fake, gcs_fake
from tests.campaign_host import BootingHost
from tests.gce_fake import GceFake, ManualClock
from tests.gcs_fake import GcsFake
from tests.http_fake import QuietHandler, ServedFake, serving
from tests.test_campaign_aws_e2e import N, campaign_file

pytestmark = pytest.mark.slow


class Metadata(ServedFake):
    """The GCE metadata server as the agent reads it: `instance/preempted`, FALSE until `preempted`."""

    def __init__(self) -> None:
        super().__init__()
        self.preempted = False

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.headers.get("Metadata-Flavor") != "Google":
                    return self.reply(403, b"", {})
                if self.path.split("?")[0] != "/computeMetadata/v1/instance/preempted":
                    return self.reply(404, b"", {})
                self.reply(200, b"TRUE" if fake.preempted else b"FALSE", {"Content-Type": "text/plain"})

        return Handler


@pytest.fixture
def gcs() -> Iterator[GcsFake]:
    yield from gcs_fake.running(("ckpt",))


@pytest.fixture
def gce() -> Iterator[GceFake]:
    yield from gce_fake.running()


@pytest.fixture
def metadata() -> Iterator[Metadata]:
    yield from serving(Metadata())


def service_account(tmp_path: Path, gcs: GcsFake) -> Path:
    """The "instance's service account": a key file whose token endpoint is the GCS fake."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    path = tmp_path / "adc.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "orch-test", "private_key_id": "test", "private_key": key,
        "client_email": "orch-worker@orch-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"{gcs.url}/token"}))
    return path


class Host(BootingHost):
    """GCE's part: boots each instance the loop inserts (runs its startup script here), and stops it."""

    def __init__(self, gce: GceFake, r: Reconciler, store: Store, job_id: str) -> None:
        self.gce, self.r, self.store, self.job_id = gce, r, store, job_id
        super().__init__()

    def live(self) -> list[AttemptView]:
        return [a for a in self.store.attempts(self.job_id) if a.live and a.instance_id]

    def script(self, name: str) -> str:
        body = next(b for b in reversed(self.gce.inserted) if b["name"] == name)
        return str(next(i["value"] for i in body["metadata"]["items"] if i["key"] == "startup-script"))

    def tick(self) -> None:
        self.r.tick()
        for attempt in self.live():
            name = instance_name(attempt.id)
            if name not in self.booted:
                script = self.script(name)
                assert not re.search(r"GOOGLE_APPLICATION_CREDENTIALS|PRIVATE KEY", script), "a credential"
                assert "ORCH_ITEMS_BUCKET=" in script and "ORCH_ITEMS_URL" not in script
                self.booted[name] = subprocess.Popen(["bash", "-c", script])
        for name, agent in self.booted.items():
            if agent.poll() == 0:
                try:
                    if self.gce.find(name)[1]["status"] == "RUNNING":
                        self.gce.stop_instance(name)  # the startup script's shutdown
                except KeyError:
                    pass



def test_the_example_campaign_on_gcp_does_every_item_once_through_a_preemption(
        gce: GceFake, gcs: GcsFake, metadata: Metadata, orch_home: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account(tmp_path, gcs)))
    monkeypatch.setenv("ORCH_GCS_ENDPOINT_URL", gcs.url)
    gcs.require_token = True  # every object call carries the service account's token
    (orch_home / "providers").mkdir(parents=True, exist_ok=True)
    (orch_home / "providers" / "gcp.toml").write_text(
        'project = "orch-test"\nimage = "projects/orch-test/global/images/family/orch-gpu"\n'
        'regions = ["us-central1"]\n[region.us-central1]\nzones = ["us-central1-a", "us-central1-b"]\n')
    text = campaign_file(tmp_path, "unused").read_text()
    text = text.replace('providers = ["aws"]\nregions = ["us-east-1"]',
                        'providers = ["gcp"]\nregions = ["us-central1"]')
    text = text.replace('gpu = "A10G"', 'gpu = "L4"').replace('uri = "s3://unused/fold"', 'uri = "gs://ckpt/fold"')
    (tmp_path / "campaign.toml").write_text(text)
    assert main(["submit", str(tmp_path / "campaign.toml"), "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]

    store = open_store()
    clock = ManualClock()
    provider = gce_fake.provider(gce, clock, agent_command=[sys.executable, "-m", "orchestrator.job.agent"],
                                 metadata_url=metadata.url, shutdown_on_exit=False, regions=["us-central1"])
    endpoint = ItemEndpoint("", secrets.token_bytes(32), providers=frozenset(), bucket_providers=frozenset({"gcp"}))
    r = Reconciler(store, {"gcp": provider}, clock, owner="e2e", tick_seconds=0.1, item_endpoint=endpoint)
    items = ItemStore(store.engine)
    host = Host(gce, r, store, job_id)
    try:
        host.until(lambda: items.counts(job_id).done >= 4, "the first workers to commit items")
        first = host.live()
        assert first
        metadata.preempted = True  # each agent forwards SIGTERM to its worker
        host.until(lambda: all(host.booted[instance_name(a.id)].poll() is not None for a in first),
                   "the preempted workers to stop")
        assert all(host.booted[instance_name(a.id)].returncode == 143 for a in first)
        for attempt in first:
            gce.preempt(instance_name(attempt.id))  # GCE takes the capacity back
        metadata.preempted = False
        host.until(lambda: (job := store.job(job_id)) is not None and job.finished_at is not None,
                   "the campaign to finish", timeout=120)
    finally:
        host.kill()

    assert main(["status", job_id]) == 0
    assert "items via   gcp: the job's bucket (gs://ckpt/fold/_orch/items)" in capsys.readouterr().out
    assert main(["results", job_id, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["index"] for row in rows] == list(range(N)), "an item missing or twice"
    attempts = store.attempts(job_id)
    assert sum(a.outcome is Outcome.PREEMPTED for a in attempts) >= 1, "no preemption happened"
    assert {res.done_by for res in items.results(job_id)} - {a.id for a in first}, "the replacements did nothing"
    assert not [n for (_, n) in gcs.objects if n.startswith("fold/_orch/items/req/")]
