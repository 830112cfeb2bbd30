"""The example campaign on `aws` end to end, by either transport: moto's EC2 and S3 over HTTP, the real
loop and SQLite store, the real agent and worker SDK.

`orch submit` records examples/fold/campaign.toml with `providers = ["aws"]` (fewer sequences, less work
per sequence) and its checkpoints in a moto bucket; the controller's wiring
(`orchestrator/cli/campaign_items.py`, as `orch controller` runs it) chooses the transport from
aws.toml. The test plays EC2: each instance the loop launches is booted by running its user data here (a
test host, as the Kubernetes tier runs pods with a test kubelet), which starts the real agent around the
real `fold_campaign.py` worker. Either the controller has no address the workers could reach, so they
lease and commit through objects in the bucket (`ORCH_ITEMS_BUCKET`), applied to the store by the loop's
pump each tick; or aws.toml names its item service, which the workers reach over TLS with its
certificate (`ORCH_ITEMS_CA`). Halfway, a spot interruption notice on the IMDS emulator stops the
workers (they give back what they hold and exit 143) and EC2 takes the instances back; the controller
restarts; the new loop launches replacements, which finish the rest. Every sequence is in `orch results`
exactly once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator.cli.campaign_items import controller_items
from orchestrator.cli.main import main
from orchestrator.cli.wiring import open_store
from orchestrator.core.model import AttemptView, Outcome
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from orchestrator.store.items import ItemStore
from providers.aws.provider import AwsProvider
from providers.item_service import ItemServiceAccess
from tests.aws_support import REGION, AwsWorld, free_port, moto_instance, preempt
from tests.campaign_host import BootingHost
from tests.test_campaign_aws_service import self_signed

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fold"
N = 16


def campaign_file(tmp_path: Path, bucket: str) -> Path:
    """examples/fold/campaign.toml on aws (an A10G): its first N sequences, 0.3 s each, checkpoints in `bucket`."""
    records = (EXAMPLE / "campaign.fasta").read_text().split(">")[1:N + 1]
    (tmp_path / "seqs.fasta").write_text("".join(">" + r for r in records))
    text = (EXAMPLE / "campaign.toml").read_text().split("[placement.options.local]")[0]
    text = text.replace('command = ["python3", "fold_campaign.py", "--seconds-per-seq", "0.4", "--rounds", "500"]',
                        f'command = ["{sys.executable}", "fold_campaign.py", "--seconds-per-seq", "0.3", '
                        '"--rounds", "200"]')
    text = text.replace('workdir = "."', f'workdir = "{EXAMPLE}"').replace('items = "campaign.fasta"',
                                                                        f'items = "{tmp_path / "seqs.fasta"}"')
    text = text.replace('workers = 4', 'workers = 2').replace('providers = ["local"]',
                                                              f'providers = ["aws"]\nregions = ["{REGION}"]')
    text = text.replace('gpu = "V100"', 'gpu = "A10G"')  # what moto's us-east-1 offers
    text = text.replace("[checkpoint]\n", f'[checkpoint]\nuri = "s3://{bucket}/fold"\n')
    assert 'providers = ["aws"]' in text and "s3://" in text and "fold_campaign.py" in text
    path = tmp_path / "campaign.toml"
    path.write_text(text)
    return path


def settings_file(world: AwsWorld, orch_home: Path, service: ItemServiceAccess | None = None) -> None:
    """The user's providers/aws.toml, as the world's provider is set up (`orch submit` reads its offers)."""
    region = world.settings.region(REGION)
    subnets = ", ".join(f'{zone} = "{subnet}"' for zone, subnet in region.subnets.items())
    path = orch_home / "providers" / "aws.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'''regions = ["{REGION}"]
instance_profile = "{world.settings.instance_profile}"
security_groups = {json.dumps(list(region.security_groups))}
{"" if service is None else f'item_service_url = "{service.url}"' + chr(10) +
 f'item_service_tls_cert = "{service.tls_cert}"' + chr(10) + f'item_service_tls_key = "{service.tls_key}"'}
[region.{REGION}]
ami = "{region.ami}"
subnets = {{ {subnets} }}
''')


class Host(BootingHost):
    """EC2's part: boots each instance the loop launches (runs its user data here), and takes it back."""

    def __init__(self, world: AwsWorld, r: Reconciler, store: Store, job_id: str, needs: tuple[str, ...]) -> None:
        self.world, self.r, self.store, self.job_id = world, r, store, job_id
        self.needs = needs  # what each user data must give its worker
        super().__init__()

    def live(self) -> list[AttemptView]:
        return [a for a in self.store.attempts(self.job_id) if a.live and a.instance_id]

    def tick(self) -> None:
        self.r.tick()
        for attempt in self.live():
            if attempt.instance_id not in self.booted:
                user_data = self.world.user_data(attempt.instance_id or "")
                assert not re.search(r"AWS_(ACCESS|SECRET|SESSION)", user_data), "a credential in the job's env"
                assert all(need in user_data for need in self.needs) and "ORCH_ITEMS_URL" not in user_data
                self.booted[attempt.instance_id or ""] = self.world.start_locally(attempt.instance_id or "")
        for instance_id, agent in self.booted.items():
            if agent.poll() == 0 and moto_instance(instance_id).state == "running":
                moto_instance(instance_id).terminate()  # the user data's shutdown, as EC2 ends it



@pytest.mark.parametrize("transport", ["bucket", "service"])
def test_the_example_campaign_on_aws_does_every_item_once_through_a_reclamation(
        transport: str, aws_world: AwsWorld, orch_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`bucket`: a controller with no address (the default). `service`: a controller in the VPC, its item
    service over TLS at the address aws.toml names (here 127.0.0.1), opened to the workers' group."""
    # The "instance role": moto's endpoint and dummy keys through boto3's standard chain, in this process
    # and the hosts it starts, never in a job's environment (checked in every user data).
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_world.url)
    bucket = f"orch-campaign-{uuid.uuid4().hex[:8]}"
    aws_world.client("s3").create_bucket(Bucket=bucket)
    access = None
    if transport == "service":
        cert, key, _ = self_signed(tmp_path)
        access = ItemServiceAccess(f"https://127.0.0.1:{free_port()}", str(cert), str(key))
    settings_file(aws_world, orch_home, access)
    assert main(["submit", str(campaign_file(tmp_path, bucket)), "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]
    store = open_store()
    provider = AwsProvider(aws_world.clock, dataclasses.replace(aws_world.provider.settings, item_service=access),
                           client_factory=aws_world.factory)
    needs = ("ORCH_ITEMS_BUCKET=",) if access is None else (f"ORCH_ITEMS_ENDPOINT={access.url}", "ORCH_ITEMS_CA=")
    items = ItemStore(store.engine)
    with contextlib.ExitStack() as controller:
        endpoint = controller.enter_context(controller_items(store, {"aws": provider}))  # as `orch controller`
        r = Reconciler(store, {"aws": provider}, aws_world.clock, owner="e2e", tick_seconds=0.1,
                       item_endpoint=endpoint)
        host = Host(aws_world, r, store, job_id, needs)
        controller.callback(host.kill)
        host.until(lambda: items.counts(job_id).done >= 4, "the first workers to commit items")
        first = host.live()  # one or two: the deadline sizes the campaign (docs/campaigns.md)
        assert first
        aws_world.imds.set_interruption(in_seconds=120)  # each agent forwards SIGTERM to its worker
        host.until(lambda: all(host.booted[a.instance_id or ""].poll() is not None for a in first),
                   "the interrupted workers to stop")
        assert all(host.booted[a.instance_id or ""].returncode == 143 for a in first)
        for attempt in first:
            preempt(attempt.instance_id or "")  # EC2 takes the capacity back
        aws_world.imds.clear()
        # The controller restarts (it gives up its jobs and stops its service, as `orch controller` does on
        # SIGTERM): a new one with the same secret carries on; the workers' tokens and calls stay good.
        store.release_jobs(r.owner)
        controller.close()
        endpoint = controller.enter_context(controller_items(store, {"aws": provider}))
        controller.callback(host.kill)
        host.r = Reconciler(store, {"aws": provider}, aws_world.clock, owner="e2e-restarted", tick_seconds=0.1,
                            item_endpoint=endpoint)
        host.until(lambda: (job := store.job(job_id)) is not None and job.finished_at is not None,
                   "the campaign to finish", timeout=120)

    assert main(["status", job_id]) == 0
    way = (f"the job's bucket (s3://{bucket}/fold/_orch/items)" if access is None
           else f"the item service at {access.url}")
    assert f"items via   aws: {way}" in capsys.readouterr().out
    assert main(["results", job_id, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["index"] for row in rows] == list(range(N)), "an item missing or twice"
    names = [">" + r.split("\n", 1)[0].split()[0] for r in (tmp_path / "seqs.fasta").read_text().split(">")[1:]]
    assert [">" + row["result"]["id"] for row in rows] == names
    attempts = store.attempts(job_id)
    assert sum(a.outcome is Outcome.PREEMPTED for a in attempts) >= 1, "no reclamation happened"
    workers = {res.done_by for res in items.results(job_id)}
    assert workers - {a.id for a in first}, "the replacements did none of the items"
    pending = aws_world.client("s3").list_objects_v2(Bucket=bucket, Prefix="fold/_orch/items/")
    assert pending.get("KeyCount") == 0 if access is not None else not [
        o for o in pending.get("Contents", []) if "/req/" in o["Key"]], "calls left unapplied (or a bucket used)"
