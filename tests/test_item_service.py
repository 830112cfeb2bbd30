"""The item service and HttpItemSource over real HTTP, on SQLite and PostgreSQL.

Workers are separate processes using the SDK as a pod does (`orch.items()` from the environment the
loop gives a kubernetes attempt), with the database driver and the kubernetes client made
unimportable. One worker is killed in the middle of an item and its items are returned by the loop's
`release_worker`; the others race over what is left: every item is done exactly once. A wrong token,
another job's token, an ended attempt, malformed and oversized requests are refused; a worker rides
out the service's restart.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.model import Outcome
from orchestrator.core.spec import ArraySpec, JobSpec, ScheduleSpec
from orchestrator.job.item_records import ItemCounts, Lease
from orchestrator.job.items_format import ParsedItem
from orchestrator.job.worker.http_source import HttpItemSource, ItemServiceError
from orchestrator.store import Store
from orchestrator.store.item_service import MAX_BODY_BYTES, ItemService
from orchestrator.store.item_source import ItemEndpoint, attempt_token, worker_environment
from orchestrator.store.items import ItemStore
from vocab import Billing, Market, Offer, Resources

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"0123456789abcdef-test-secret"
N = 120


def campaign(store: Store, n: int, workers: int = 6) -> tuple[str, list[str]]:
    """A campaign of `n` items {"n": i} and one live kubernetes attempt per worker slot."""
    array = ArraySpec(count=workers, shard_size=1, items="items.jsonl", workers=workers).with_item_count(n)
    spec = JobSpec(name="squares", command=("python", "w.py"), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=1.0), array=array)
    items = [ParsedItem(i, f"k{i}", json.dumps({"n": i})) for i in range(n)]
    job = store.submit(spec, source="GpuJob lab/squares", now=time.time(), checkpoint_uri="file:///tmp/orch-its",
                       items=items)
    offer = Offer(provider="kubernetes", region="kubernetes", zone=None, instance_type="p3.2xlarge",
                  market=Market.SPOT, price_per_hour=0.9, gpu="V100", gpu_count=1, gpu_memory_gb=16.0,
                  architecture="volta", on_demand_price_per_hour=3.06, billing=Billing(1, 60))
    return job, [store.begin_attempt(t, offer, time.time()).id for t in store.tasks(job)]


@pytest.fixture
def service(store: Store) -> Iterator[ItemService]:
    svc = ItemService(store, secret=SECRET, host="127.0.0.1", port=0).start()
    yield svc
    svc.stop()


def source(svc: ItemService, job: str, attempt: str, *, token: str | None = None, **kw: float) -> HttpItemSource:
    return HttpItemSource(f"http://127.0.0.1:{svc.port}", job_id=job, owner=attempt,
                          token=token if token is not None else attempt_token(SECRET, job, attempt), **kw)


def worker(svc: ItemService, job: str, attempt: str, mode: str, out: Path) -> subprocess.Popen[bytes]:
    """A worker process with the environment the loop gives a pod (minus what a pod alone has)."""
    endpoint = ItemEndpoint(f"http://127.0.0.1:{svc.port}", SECRET)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(worker_environment("postgresql://never-given", provider="kubernetes", endpoint=endpoint,
                                  job_id=job, attempt_id=attempt, gpu_memory_gb=16.0),
               ORCH_JOB_ID=job, ORCH_ATTEMPT_ID=attempt, PYTHONPATH=str(ROOT))
    assert "ORCH_ITEMS_URL" not in env and "never-given" not in json.dumps(env)
    return subprocess.Popen([sys.executable, str(ROOT / "tests" / "import_blocker.py"), "sqlalchemy,kubernetes,psycopg",
                             "-m", "tests.items_http_worker", mode, str(out)], cwd=ROOT, env=env)


def test_workers_over_http_with_a_killed_one_do_every_item_once(store: Store, service: ItemService,
                                                                tmp_path: Path) -> None:
    job, attempts = campaign(store, N)
    items = ItemStore(store.engine)
    killed = worker(service, job, attempts[0], "hang", tmp_path / "killed")
    deadline = time.monotonic() + 60
    while not (tmp_path / "killed.started").exists():
        assert killed.poll() is None and time.monotonic() < deadline, "the hanging worker never started an item"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert items.counts(job).leased == 3
    # The loop saw its pod end: its items go back now, the started one charged with the failure.
    assert items.release_worker(attempts[0], now=time.time(), failure="killed") == 3

    racers = [worker(service, job, a, "work", tmp_path / f"w{i}") for i, a in enumerate(attempts[1:])]
    for p in racers:
        assert p.wait(timeout=300) == 0
    wins = sorted(int(line) for f in tmp_path.glob("w*") for line in f.read_text().split())
    assert wins == list(range(N)), "an item was committed twice, or never"
    assert items.counts(job) == ItemCounts(done=N)
    results = list(items.results(job))
    assert all(json.loads(r.result or "null") == {"square": r.index ** 2} for r in results)
    assert attempts[0] not in {r.done_by for r in results}
    assert len({r.done_by for r in results}) > 1, "the workers did not race"


def test_tokens_act_only_as_their_worker_of_their_job(store: Store, service: ItemService) -> None:
    job, attempts = campaign(store, 4, workers=2)
    other_job, other_attempts = campaign(store, 4, workers=2)
    mine = source(service, job, attempts[0])
    assert [x.index for x in mine.lease(2)] == [0, 1]

    refusals = [
        source(service, job, attempts[1], token=attempt_token(SECRET, job, attempts[0])),  # a sibling's token
        source(service, job, attempts[0], token=attempt_token(SECRET, other_job, other_attempts[0])),  # another job's
        source(service, other_job, other_attempts[0], token=attempt_token(SECRET, job, attempts[0])),
        source(service, job, attempts[0], token=attempt_token(b"another-controller-secret", job, attempts[0])),
        source(service, job, attempts[0], token="0" * 64),
    ]
    for bad in refusals:
        with pytest.raises(ItemServiceError) as caught:
            bad.lease(1)
        assert caught.value.status == 403 and "does not belong" in str(caught.value)
        with pytest.raises(ItemServiceError):
            bad.complete(Lease(1, 0, "k0", "", 1), result="1", result_uri=None, work_seconds=1.0)
    with pytest.raises(ItemServiceError) as caught:
        source(service, job, attempts[0], token="").lease(1)
    assert caught.value.status == 401
    assert ItemStore(store.engine).counts(job) == ItemCounts(leased=2, queued=2)
    assert ItemStore(store.engine).counts(other_job) == ItemCounts(queued=4)


def test_an_ended_attempt_takes_no_new_items_but_its_result_still_counts(store: Store, service: ItemService) -> None:
    job, attempts = campaign(store, 3, workers=1)
    src = source(service, job, attempts[0])
    (held,) = src.lease(1)
    assert src.start(held)
    attempt = store.attempt(attempts[0])
    assert attempt is not None
    store.end_attempt(attempt, Outcome.PREEMPTED, time.time(), task_transitions=("preempted", "requeue"),
                      message="reclaimed")
    assert src.lease(1) == []  # 410: the worker finishes what it holds and exits
    assert src.complete(held, result='{"square": 0}', result_uri=None, work_seconds=2.0)
    assert src.complete(held, result='{"square": 0}', result_uri=None, work_seconds=2.0), \
        "a repeated commit of this worker's own result must read as committed"
    assert ItemStore(store.engine).counts(job).done == 1


def test_a_worker_rides_out_the_service_restarting(store: Store, tmp_path: Path) -> None:
    job, attempts = campaign(store, 3, workers=1)
    first = ItemService(store, secret=SECRET, host="127.0.0.1", port=0).start()
    port = first.port
    src = source(first, job, attempts[0], lease_seconds=30.0, retry_for_s=30.0)
    held = src.lease(2)
    first.stop()  # the controller restarts; for about a second nothing listens
    restarted: list[ItemService] = []
    timer = threading.Timer(1.0, lambda: restarted.append(
        ItemService(store, secret=SECRET, host="127.0.0.1", port=port).start()))
    timer.start()
    try:
        began = time.monotonic()
        assert src.renew(held) == {x.item_id for x in held}
        assert time.monotonic() - began >= 0.9, "the renewal should have waited for the new service"
        assert all(src.complete(x, result="1", result_uri=None, work_seconds=1.0) for x in held)
    finally:
        timer.join()
        for svc in restarted:
            svc.stop()
    with pytest.raises(ItemServiceError) as caught:  # nothing listens: it gives up after retry_for_s
        source(first, job, attempts[0], retry_for_s=0.5).lease(1)
    assert caught.value.status == 0 and "gave up" in str(caught.value)


def _post(svc: ItemService, path: str, body: bytes, token: str | None, method: str = "POST") -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{svc.port}{path}", data=body if method == "POST" else None,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["error"]


def test_malformed_and_oversized_requests_get_clear_errors(store: Store, service: ItemService) -> None:
    job, attempts = campaign(store, 2, workers=1)
    base, token = f"/v1/jobs/{job}/workers/{attempts[0]}", attempt_token(SECRET, job, attempts[0])
    assert _post(service, f"{base}/lease", b'{"n": 1}', token)[0] == 200
    cases = [
        (f"{base}/lease", b"[1, 2]", 400, "JSON object"),
        (f"{base}/lease", b"{not json", 400, "JSON object"),
        (f"{base}/lease", b'{"n": 0}', 400, "n must be"),
        (f"{base}/lease", b'{"n": 1, "lease_seconds": 1e9}', 400, "lease_seconds"),
        (f"{base}/renew", b'{"item_ids": "all"}', 400, "item_ids"),
        (f"{base}/done", b'{"lease": {"item_id": "x"}}', 400, "lease must hold"),
        (f"{base}/done", json.dumps({"lease": {"item_id": 1, "index": 0, "key": None, "lease_no": 1},
                                     "result": "not json"}).encode(), 400, "JSON text"),
        (f"{base}/steal", b"{}", 404, "no operation"),
        ("/v1/jobs/../etc", b"{}", 404, "no such path"),
        (f"/v1/jobs/nojob/workers/{attempts[0]}/lease", b"{}", 403, "does not belong"),
    ]
    for path, body, code, text in cases:
        got = _post(service, path, body, token)
        assert got[0] == code and text in str(got[1]), (path, body, got)
    assert _post(service, "/v1/jobs/nojob/workers/w/lease", b"{}", attempt_token(SECRET, "nojob", "w"))[0] == 404
    assert _post(service, f"{base}/lease", b"{}", None)[0] == 401
    assert _post(service, f"{base}/lease", b"", token, method="GET")[0] == 405
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)  # refused before the body is read
    conn.putrequest("POST", f"{base}/done")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()
    big = conn.getresponse()
    assert big.status == 413 and "over the" in json.loads(big.read())["error"]
    conn.close()
    huge_result = json.dumps({"lease": {"item_id": 1, "index": 0, "key": None, "lease_no": 1},
                              "result": json.dumps("x" * (1024 * 1024 + 10))}).encode()
    assert _post(service, f"{base}/done", huge_result, token)[0] == 413
    with pytest.raises(ValueError, match="write it to storage"):  # the worker refuses it before sending
        source(service, job, attempts[0]).complete(Lease(1, 0, None, "", 1), result=json.dumps("x" * 1024 * 1024),
                                                   result_uri=None, work_seconds=1.0)
    assert ItemStore(store.engine).counts(job).done == 0


def test_only_the_providers_the_endpoint_serves_get_it() -> None:
    endpoint = ItemEndpoint("http://orch-items.orch-system.svc:8081", SECRET)
    env = worker_environment("sqlite:///orch.db", provider="kubernetes", endpoint=endpoint, job_id="j", attempt_id="a")
    assert env == {"ORCH_ITEMS_ENDPOINT": "http://orch-items.orch-system.svc:8081",
                   "ORCH_ITEMS_TOKEN": attempt_token(SECRET, "j", "a")}
    assert worker_environment("sqlite:///orch.db", provider="aws", endpoint=endpoint, job_id="j", attempt_id="a") == {}
    assert worker_environment("sqlite:///orch.db", provider="local", endpoint=endpoint, job_id="j",
                              attempt_id="a") == {"ORCH_ITEMS_URL": "sqlite:///orch.db"}
    assert SECRET.decode() not in repr(endpoint)
    assert attempt_token(SECRET, "j", "a") != attempt_token(SECRET, "j", "b") != attempt_token(SECRET, "k", "a")


def test_the_worker_side_bound_on_a_result_is_the_stores() -> None:
    from orchestrator.job.worker.http_source import MAX_RESULT_CHARS
    from orchestrator.store.items import MAX_RESULT_BYTES

    assert MAX_RESULT_CHARS == MAX_RESULT_BYTES


def test_a_store_that_cannot_be_reached_is_a_503_the_worker_retries() -> None:
    from orchestrator.store import make_engine

    down = Store(make_engine("postgresql://orch@127.0.0.1:1/orch"))  # nothing listens on port 1
    svc = ItemService(down, secret=SECRET, host="127.0.0.1", port=0).start()
    try:
        began = time.monotonic()
        with pytest.raises(ItemServiceError) as caught:
            source(svc, "job", "attempt", retry_for_s=1.0).lease(1)
        assert caught.value.status == 503 and "gave up" in str(caught.value)
        assert time.monotonic() - began >= 0.25, "it backed off twice before giving up"
    finally:
        svc.stop()
        down.engine.dispose()


def test_giving_items_back_to_a_service_that_is_gone_is_quick_and_quiet(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.job.worker import http_source

    monkeypatch.setattr(http_source, "RELEASE_RETRY_S", 1.0)
    job, attempts = campaign(store, 3, workers=1)
    svc = ItemService(store, secret=SECRET, host="127.0.0.1", port=0).start()
    src = source(svc, job, attempts[0], retry_for_s=300.0)
    held = src.lease(2)
    svc.stop()
    began = time.monotonic()
    src.release(held)  # a notice while the controller restarts: no error, the leases will lapse instead
    assert time.monotonic() - began < 5.0, "a release waits RELEASE_RETRY_S, not the 300 s of a commit"
    assert ItemStore(store.engine).counts(job).leased == 2
