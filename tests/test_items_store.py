"""Campaign items in the store, on SQLite and PostgreSQL: leases, exactly-once results, failures, release."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import delete, func, select

from orchestrator.core.spec import JobSpec, ScheduleSpec
from orchestrator.job.item_records import ItemCounts, ItemState, Lease
from orchestrator.job.items_format import ParsedItem
from orchestrator.store import Store
from orchestrator.store.items import ItemStore, insert_items
from orchestrator.store.tables import EventRow, ItemRow, JobRow
from vocab import Resources

LEASE = 60.0


def campaign(store: Store, n: int) -> str:
    spec = JobSpec(name="campaign", command=("python", "w.py"), resources=Resources(gpus=("V100",)),
                   schedule=ScheduleSpec(estimated_hours=1.0))
    job_id = store.submit(spec, source="c.toml", now=0.0, checkpoint_uri="file:///tmp/orch-items-test")
    with store.session() as s:
        insert_items(s, job_id, [ParsedItem(i, f"k{i}", json.dumps({"n": i})) for i in range(n)], now=0.0)
    return job_id


@pytest.fixture
def items(store: Store) -> ItemStore:
    return ItemStore(store.engine)


def test_lease_hands_out_disjoint_chunks_in_index_order(store: Store, items: ItemStore) -> None:
    job = campaign(store, 5)
    a = items.lease(job, "w1", 3, now=1.0, lease_seconds=LEASE)
    b = items.lease(job, "w2", 3, now=1.0, lease_seconds=LEASE)
    assert [x.index for x in a] == [0, 1, 2] and [x.index for x in b] == [3, 4]
    assert [json.loads(x.payload) for x in a] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(x.lease_no == 1 for x in a + b)
    assert items.lease(job, "w3", 3, now=1.0, lease_seconds=LEASE) == []
    assert items.counts(job) == ItemCounts(leased=5)


def test_a_lapsed_lease_is_leased_again_and_the_first_result_wins(store: Store, items: ItemStore) -> None:
    job = campaign(store, 1)
    (old,) = items.lease(job, "w1", 1, now=0.0, lease_seconds=LEASE)
    assert items.lease(job, "w2", 1, now=LEASE - 1, lease_seconds=LEASE) == []  # still held
    (new,) = items.lease(job, "w2", 1, now=LEASE + 1, lease_seconds=LEASE)
    assert (new.item_id, new.lease_no) == (old.item_id, 2)
    assert items.renew(job, "w1", [old.item_id], now=LEASE + 2, lease_seconds=LEASE) == set()
    # The stale worker finishes first: its result is the one; the new holder's commit is refused.
    assert items.complete(job, "w1", old, now=LEASE + 3, result='"first"') is True
    assert items.complete(job, "w2", new, now=LEASE + 4, result='"second"') is False
    (res,) = list(items.results(job))
    assert (res.result, res.done_by) == ('"first"', "w1")
    assert items.counts(job) == ItemCounts(done=1)


def test_a_stale_worker_cannot_fail_an_item_it_no_longer_holds(store: Store, items: ItemStore) -> None:
    job = campaign(store, 1)
    (old,) = items.lease(job, "w1", 1, now=0.0, lease_seconds=LEASE)
    (new,) = items.lease(job, "w2", 1, now=LEASE + 1, lease_seconds=LEASE)
    assert items.fail(job, "w1", old, reason="boom", now=LEASE + 2, max_failures=0) is None
    assert items.counts(job) == ItemCounts(leased=1)
    assert items.renew(job, "w2", [new.item_id], now=LEASE + 2, lease_seconds=LEASE) == {new.item_id}


def test_failures_retry_then_quarantine_and_are_listed(store: Store, items: ItemStore) -> None:
    job = campaign(store, 2)
    for attempt in range(3):  # max_failures = 2: the third failure quarantines
        lease = items.lease(job, "w", 1, now=attempt, lease_seconds=LEASE)[0]
        assert lease.index == 0
        state = items.fail(job, "w", lease, reason=f"bad input {attempt}\nline two", now=attempt, max_failures=2)
        assert state is (ItemState.QUARANTINED if attempt == 2 else ItemState.FAILED)
    assert items.counts(job) == ItemCounts(queued=1, quarantined=1)
    (q,) = items.quarantined(job)
    assert (q.index, q.key, q.failures, q.reason) == (0, "k0", 3, "bad input 2 line two")
    with store.session() as s:
        messages = s.scalars(select(EventRow.message).where(EventRow.kind == "item_quarantined")).all()
    assert messages == ["item 0 quarantined after 3 failure(s): bad input 2 line two"]
    # The campaign goes on: the other item is still handed out, the quarantined one never again.
    assert [x.index for x in items.lease(job, "w", 5, now=9.0, lease_seconds=LEASE)] == [1]


def test_out_of_memory_waits_for_a_larger_gpu_and_does_not_count(store: Store, items: ItemStore) -> None:
    job = campaign(store, 1)
    for memory in (8.0, 12.0, 16.0):  # max_failures 0, yet OOMs never quarantine by count
        (lease,) = items.lease(job, "w", 1, now=0.0, lease_seconds=LEASE, gpu_memory_gb=memory)
        assert items.fail(job, "w", lease, reason="CUDA out of memory", now=0.0, max_failures=0, oom=True,
                          gpu_memory_gb=memory) is ItemState.FAILED
    assert items.memory_needed(job) == 16.0
    assert items.lease(job, "w", 1, now=1.0, lease_seconds=LEASE) == []  # memory unknown
    assert items.lease(job, "w16", 1, now=1.0, lease_seconds=LEASE, gpu_memory_gb=16.0) == []
    (big,) = items.lease(job, "w32", 1, now=1.0, lease_seconds=LEASE, gpu_memory_gb=32.0)
    items.fail(job, "w32", big, reason="OOM", now=2.0, max_failures=0, oom=True, gpu_memory_gb=32.0)
    assert items.memory_needed(job) == 32.0
    assert items.quarantine_needing_more_than(job, 80.0, now=3.0) == 0  # an 80 GB GPU may still do it
    assert items.quarantine_needing_more_than(job, 32.0, now=3.0) == 1  # nothing larger than 32 GB exists
    assert items.counts(job) == ItemCounts(quarantined=1)
    assert items.memory_needed(job) is None


def test_release_worker_returns_its_items_and_charges_only_the_started_one(store: Store, items: ItemStore) -> None:
    job = campaign(store, 4)
    held = items.lease(job, "dead", 3, now=0.0, lease_seconds=LEASE)
    assert items.start(job, "dead", held[0], now=0.5) is True
    assert items.release_worker("dead", now=1.0, failure="exit code 1", max_failures=0) == 3
    assert items.release_worker("dead", now=1.0) == 0  # idempotent
    assert items.counts(job) == ItemCounts(queued=3, quarantined=1)  # max_failures 0: the started one is out
    assert [x.index for x in items.lease(job, "w", 9, now=2.0, lease_seconds=LEASE)] == [1, 2, 3]


def test_release_worker_after_a_reclamation_charges_nothing(store: Store, items: ItemStore) -> None:
    job = campaign(store, 2)
    held = items.lease(job, "gone", 2, now=0.0, lease_seconds=LEASE)
    items.start(job, "gone", held[0], now=0.1)
    assert items.release_worker("gone", now=1.0) == 2
    assert items.counts(job) == ItemCounts(queued=2)


def test_release_expired_and_release_by_the_worker(store: Store, items: ItemStore) -> None:
    job = campaign(store, 4)
    a = items.lease(job, "a", 2, now=0.0, lease_seconds=10.0)
    b = items.lease(job, "b", 2, now=0.0, lease_seconds=100.0)
    assert items.release_expired(now=50.0) == 2
    assert items.counts(job) == ItemCounts(queued=2, leased=2)
    assert items.renew(job, "a", [x.item_id for x in a], now=51.0, lease_seconds=10.0) == set()
    assert items.release(job, "b", [b[1].item_id], now=52.0) == 1
    assert items.counts(job) == ItemCounts(queued=3, leased=1)


def test_start_refuses_a_lease_that_was_taken_over(store: Store, items: ItemStore) -> None:
    job = campaign(store, 1)
    (old,) = items.lease(job, "w1", 1, now=0.0, lease_seconds=1.0)
    items.lease(job, "w2", 1, now=5.0, lease_seconds=1.0)
    assert items.start(job, "w1", old, now=5.0) is False


def test_results_stream_in_index_order_across_pages(store: Store, items: ItemStore) -> None:
    job = campaign(store, 12)
    leases = items.lease(job, "w", 12, now=0.0, lease_seconds=LEASE)
    for x in reversed(leases):  # finished out of order
        if x.index != 5:
            assert items.complete(job, "w", x, now=1.0, result=json.dumps(x.index * 10), work_seconds=2.0)
    got = list(items.results(job, page=4))
    assert [r.index for r in got] == [i for i in range(12) if i != 5]
    assert [json.loads(r.result or "null") for r in got] == [i * 10 for i in range(12) if i != 5]
    assert items.done_by_worker(job) == {"w": (11, 22.0)}
    assert items.done_since(job, 0.5) == 11 and items.done_since(job, 1.5) == 0


def test_a_result_too_large_for_the_store_is_refused(store: Store, items: ItemStore) -> None:
    job = campaign(store, 1)
    (x,) = items.lease(job, "w", 1, now=0.0, lease_seconds=LEASE)
    with pytest.raises(ValueError, match="commit its URI"):
        items.complete(job, "w", x, now=1.0, result='"' + "a" * (1024 * 1024) + '"')
    assert items.complete(job, "w", x, now=1.0, result_uri="file:///out/0.pdb") is True


def test_deleting_the_job_deletes_its_items(store: Store, items: ItemStore) -> None:
    job = campaign(store, 3)
    with store.session() as s:
        s.execute(delete(JobRow).where(JobRow.id == job))
        assert s.scalar(select(func.count()).select_from(ItemRow)) == 0


# --- racing workers (threads here; processes, and a killed one, in test_items_race.py) ---------------


def test_racing_threads_finish_every_item_exactly_once(store: Store, items: ItemStore) -> None:
    n, workers = 120, 6
    job = campaign(store, n)
    wins: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(owner: str, lease_seconds: float) -> None:
        try:
            mine = ItemStore(store.engine)
            while True:
                got: list[Lease] = mine.lease(job, owner, 4, now=0.0, lease_seconds=lease_seconds)
                if not got:
                    return
                for x in got:
                    if mine.complete(job, owner, x, now=1.0, result=json.dumps({"by": owner, "i": x.index})):
                        with lock:
                            wins.append(x.index)
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}", LEASE)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(wins) == list(range(n))
    assert items.counts(job) == ItemCounts(done=n)
    assert [r.index for r in items.results(job)] == list(range(n))
