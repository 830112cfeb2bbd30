"""The bucket transport's races, against moto's S3 over HTTP and the GCS fake: conditional writes
(S3 If-None-Match / If-Match, GCS ifGenerationMatch), two workers racing through the controller's
pump, a lapsed lease committed twice, a retried write, forged tokens, two controllers answering one
request. The store (SQLite) is the real one; each tick of the controller is `BucketPump.pump_job`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.auth.transport.requests import AuthorizedSession

from orchestrator.core.model import Outcome
from orchestrator.core.spec import ArraySpec, JobSpec, ScheduleSpec
from orchestrator.job.checkpoint.conditional import ConditionalObjects, GcsObjects, S3Objects, result_key
from orchestrator.job.checkpoint.storage import StorageError
from orchestrator.job.item_records import ItemCounts, Lease
from orchestrator.job.items_format import ParsedItem
from orchestrator.job.worker.bucket_source import BucketItemSource
from orchestrator.loop.campaign_bucket import BucketPump
from orchestrator.store import Store
from orchestrator.store.item_source import ItemEndpoint, attempt_token, items_uri, worker_environment
from orchestrator.store.items import ItemStore
from tests import gcs_fake
from vocab import Billing, Market, Offer, Resources

SECRET = b"0123456789abcdef-bucket-secret"
ENDPOINT = ItemEndpoint("", SECRET, providers=frozenset(), bucket_providers=frozenset({"aws", "gcp"}))


@pytest.fixture(params=["s3", "gcs"])
def objects(request: pytest.FixtureRequest) -> Iterator[ConditionalObjects]:
    """A fresh items prefix on moto's S3 (over HTTP) or on the GCS fake."""
    if request.param == "s3":
        moto = request.getfixturevalue("aws_env")
        import boto3

        bucket = f"orch-items-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=moto, region_name="us-east-1").create_bucket(Bucket=bucket)
        yield S3Objects(items_uri(f"s3://{bucket}/jobs/j1"))
    else:
        for fake in gcs_fake.running(("ckpt",)):
            yield GcsObjects(items_uri("gs://ckpt/jobs/j1"), session=AuthorizedSession(gcs_fake.anonymous()),
                             endpoint=fake.url)


def campaign(store: Store, n: int, workers: int = 2, max_failures: int = 3) -> tuple[str, list[str]]:
    array = ArraySpec(count=workers, shard_size=1, items="items.jsonl", workers=workers).with_item_count(n)
    spec = JobSpec(name="squares", command=("python", "w.py"), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=1.0), array=array)
    items = [ParsedItem(i, f"k{i}", json.dumps({"n": i})) for i in range(n)]
    job = store.submit(spec, source="jobs/squares.toml", now=time.time(), checkpoint_uri="s3://b/jobs/j1",
                       items=items)
    offer = Offer(provider="aws", region="us-east-1", zone="us-east-1a", instance_type="p3.2xlarge",
                  market=Market.SPOT, price_per_hour=0.9, gpu="V100", gpu_count=1, gpu_memory_gb=16.0,
                  architecture="volta", on_demand_price_per_hour=3.06, billing=Billing(1, 60))
    return job, [store.begin_attempt(t, offer, time.time()).id for t in store.tasks(job)]


def worker(objects: ConditionalObjects, job: str, attempt: str, **kw: Any) -> BucketItemSource:
    return BucketItemSource(objects.uri, job_id=job, owner=attempt, token=attempt_token(SECRET, job, attempt),
                            objects=objects, retry_for_s=5.0, answer_wait_s=30.0, **kw)


class Ticks:
    """The controller's ticks on a thread, every `every` seconds, until stopped."""

    def __init__(self, store: Store, objects: ConditionalObjects, job: str, every: float = 0.05) -> None:
        self.pump = BucketPump(ItemStore(store.engine), ENDPOINT)
        self.store, self.objects, self.job, self.every = store, objects, job, every
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tick(self) -> int:
        attempts = {a.id: a for a in self.store.attempts(self.job)}
        return self.pump.pump_job(self.objects, self.job, attempts, 3, time.time())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except BaseException as exc:  # surfaced by __exit__
                self.errors.append(exc)
                return
            self._stop.wait(self.every)

    def __enter__(self) -> Ticks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self.errors, self.errors


def test_conditional_writes_create_once_and_delete_only_what_was_read(objects: ConditionalObjects) -> None:
    assert objects.create("a/one.json", b"1") is True
    assert objects.create("a/one.json", b"2") is False  # If-None-Match: * / ifGenerationMatch=0
    first = objects.read("a/one.json")
    assert first is not None and first.data == b"1"
    assert objects.read("a/none.json") is None
    assert objects.delete_if("a/one.json", first.version + "0") is False  # If-Match with another version
    assert objects.delete_if("a/one.json", first.version) is True
    assert objects.read("a/one.json") is None and objects.delete_if("a/one.json", first.version) is False
    assert objects.create("a/one.json", b"3") is True
    assert objects.list("a/") == ["a/one.json"]


def test_two_workers_race_through_the_bucket_and_do_every_item_once(
        sqlite_store: Store, objects: ConditionalObjects) -> None:
    n = 24
    job, attempts = campaign(sqlite_store, n)
    done: dict[str, list[int]] = {a: [] for a in attempts}

    def run(attempt: str) -> None:
        src = worker(objects, job, attempt)
        while leases := src.lease(3):
            for lease in leases:
                assert src.start(lease)
                n_ = json.loads(lease.payload)["n"]
                if src.complete(lease, result=json.dumps({"square": n_ * n_}), result_uri=None, work_seconds=0.1):
                    done[attempt].append(lease.index)

    with Ticks(sqlite_store, objects, job) as ticks:
        threads = [threading.Thread(target=run, args=(a,)) for a in attempts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        ticks.tick()  # the last `done` requests
    assert sorted(done[attempts[0]] + done[attempts[1]]) == list(range(n))
    assert all(done.values()), "both workers should have had a share"
    items = ItemStore(sqlite_store.engine)
    assert items.counts(job) == ItemCounts(done=n)
    results = {r.index: r for r in items.results(job)}
    assert all(json.loads(results[i].result or "null") == {"square": i * i} for i in range(n))
    assert all(results[i].done_by == a for a, won in done.items() for i in won)
    assert objects.list("req/") == [], "every request was applied and deleted"


def test_a_lapsed_lease_committed_twice_keeps_the_first_result_and_a_retry_reads_its_own(
        sqlite_store: Store, objects: ConditionalObjects) -> None:
    job, (slow, fast) = campaign(sqlite_store, 2)
    with Ticks(sqlite_store, objects, job) as ticks:
        first = worker(objects, job, slow, lease_seconds=1.0)
        (held,) = first.lease(1)
        assert ItemStore(sqlite_store.engine).release_expired(time.time() + 5) == 1  # its lease lapsed
        second = worker(objects, job, fast)
        (again,) = second.lease(1)
        assert again.item_id == held.item_id and again.lease_no == held.lease_no + 1
        assert second.complete(again, result='"fast"', result_uri=None, work_seconds=1.0) is True
        assert first.complete(held, result='"slow"', result_uri=None, work_seconds=9.0) is False  # dropped
        # A retried write whose first answer was lost reads as committed: the result in is its own.
        assert second.complete(again, result='"fast"', result_uri=None, work_seconds=1.0) is True
        ticks.tick()
    (result,) = ItemStore(sqlite_store.engine).results(job)
    assert (result.result, result.done_by) == ('"fast"', fast)
    body = objects.read(result_key(0))
    assert body is not None and json.loads(body.data)["attempt"] == fast


def test_a_worker_that_died_after_writing_its_result_is_moved_in_by_the_next_one(
        sqlite_store: Store, objects: ConditionalObjects) -> None:
    job, (dead, alive) = campaign(sqlite_store, 2)
    with Ticks(sqlite_store, objects, job) as ticks:
        (held,) = worker(objects, job, dead).lease(1)
        body = {"attempt": dead, "token": attempt_token(SECRET, job, dead), "result": '"first"', "result_uri": None,
                "work_seconds": 2.0, "lease": {"item_id": held.item_id, "index": 0, "key": "k0", "lease_no": 1}}
        assert objects.create(result_key(0), json.dumps(body).encode())  # then it died: no `done` request
        attempt = sqlite_store.attempt(dead)
        assert attempt is not None
        sqlite_store.end_attempt(attempt, Outcome.PREEMPTED, time.time(), task_transitions=("preempted", "requeue"),
                                 message="reclaimed")
        ItemStore(sqlite_store.engine).release_worker(dead, now=time.time())
        assert worker(objects, job, dead).lease(1) == [], "an ended attempt takes no new items"
        src = worker(objects, job, alive)
        (again,) = src.lease(1)
        assert src.complete(again, result='"second"', result_uri=None, work_seconds=1.0) is False
        ticks.tick()  # its `done` request moves the first result in
    (result,) = ItemStore(sqlite_store.engine).results(job)
    assert (result.result, result.done_by) == ('"first"', dead)


def test_tokens_let_a_worker_touch_only_its_own_leases(sqlite_store: Store, objects: ConditionalObjects) -> None:
    job, (mine, other) = campaign(sqlite_store, 2)
    items = ItemStore(sqlite_store.engine)
    with Ticks(sqlite_store, objects, job) as ticks:
        (held,) = worker(objects, job, mine).lease(1)
        thief = BucketItemSource(objects.uri, job_id=job, owner=mine, token=attempt_token(SECRET, job, other),
                                 objects=objects, retry_for_s=5.0, answer_wait_s=30.0)
        with pytest.raises(StorageError, match="does not belong"):
            thief.lease(1)
        with pytest.raises(StorageError, match="does not belong"):
            BucketItemSource(objects.uri, job_id=job, owner=mine, token=attempt_token(b"another-secret-0123", job,
                             mine), objects=objects, retry_for_s=5.0, answer_wait_s=30.0).lease(1)
        thief.release([held])  # not waited for: refused at the next tick, the lease stays
        # A result written in this worker's name with a sibling's token: the holder does not take it
        # for its own, its `done` has the controller delete it, and it is never moved into the store.
        assert thief.complete(held, result='"forged"', result_uri=None, work_seconds=1.0) is True
        holder = worker(objects, job, mine)
        assert holder.complete(held, result='"real"', result_uri=None, work_seconds=1.0) is False
        ticks.tick()
        assert objects.read(result_key(held.index)) is None and items.counts(job).done == 0
        assert items.counts(job).leased == 1, "the item is still the holder's; it commits it again"
        assert holder.complete(held, result='"real"', result_uri=None, work_seconds=1.0) is True
        ticks.tick()
    (result,) = items.results(job)
    assert (result.result, result.done_by) == ('"real"', mine)
    assert items.counts(job) == ItemCounts(done=1, queued=1)


def test_two_controllers_answering_one_lease_request_lease_once(
        sqlite_store: Store, objects: ConditionalObjects) -> None:
    job, (attempt, _) = campaign(sqlite_store, 4)
    items = ItemStore(sqlite_store.engine)
    src = worker(objects, job, attempt)
    stamp = src._send("lease", {"n": 2, "lease_seconds": 60.0})

    class OtherControllerAnswersFirst:
        """The bucket as a controller sees it when another controller's answer lands between its read
        of the answer (none yet) and its conditional create of one."""

        def __getattr__(self, name: str) -> Callable[..., Any]:
            return getattr(objects, name)  # type: ignore[no-any-return]

        def create(self, key: str, data: bytes) -> bool:
            if key.startswith("ans/"):
                assert objects.create(key, b'{"leases": []}')
            return objects.create(key, data)

    attempts = {a.id: a for a in sqlite_store.attempts(job)}
    BucketPump(items, ENDPOINT).pump_job(OtherControllerAnswersFirst(), job, attempts, 3,  # type: ignore[arg-type]
                                         time.time())
    assert items.counts(job) == ItemCounts(queued=4), "the losing controller gave its chunk back"
    answer = objects.read(f"ans/{attempt}/{stamp}.json")
    assert answer is not None and json.loads(answer.data) == {"leases": []}
    # The same request written again (a retried write) is applied no second time: its answer exists.
    assert objects.create(f"req/{attempt}/{stamp}.json", json.dumps(
        {"op": "lease", "n": 2, "token": attempt_token(SECRET, job, attempt)}).encode())
    assert BucketPump(items, ENDPOINT).pump_job(objects, job, attempts, 3, time.time()) == 1
    assert items.counts(job) == ItemCounts(queued=4) and objects.list("req/") == []


def test_the_environment_names_the_bucket_and_never_the_database() -> None:
    env = worker_environment("postgresql://orch:pw@db/orch", provider="aws", endpoint=ENDPOINT, job_id="j",
                             attempt_id="a", checkpoint_uri="s3://b/jobs/j1/")
    assert env == {"ORCH_ITEMS_BUCKET": "s3://b/jobs/j1/_orch/items",
                   "ORCH_ITEMS_TOKEN": attempt_token(SECRET, "j", "a")}
    assert worker_environment("sqlite:///x", provider="kubernetes", endpoint=ENDPOINT, job_id="j", attempt_id="a",
                              checkpoint_uri="s3://b/j") == {}
    assert worker_environment("sqlite:///x", provider="aws", endpoint=ENDPOINT, job_id="j", attempt_id="a",
                              checkpoint_uri="file:///home/u/ckpt") == {}, "an instance cannot reach a local folder"
    assert Lease(1, 0, None, "", 1).lease_no == 1


def test_failures_count_quarantine_and_out_of_memory_ask_for_a_larger_gpu(
        sqlite_store: Store, objects: ConditionalObjects) -> None:
    job, (attempt, _) = campaign(sqlite_store, 2)
    items = ItemStore(sqlite_store.engine)
    src = worker(objects, job, attempt, gpu_memory_gb=16.0)
    with Ticks(sqlite_store, objects, job):
        (oom,) = src.lease(1)
        assert src.fail(oom, reason="CUDA out of memory", oom=True) == "failed"  # not counted: a larger GPU
        states = []
        while (held := src.lease(1)) and held[0].index == 1:
            states.append(src.fail(held[0], reason="bad input", oom=False))
            if states[-1] == "quarantined":
                break
    assert states == ["failed", "failed", "failed", "quarantined"]  # max_failures = 3: the 4th quarantines
    assert items.memory_needed(job) == 16.0
    assert [q.index for q in items.quarantined(job)] == [1]
    assert items.counts(job).quarantined == 1
