"""The job-side SDK for campaigns: `for item in orch.items(): …; item.done(result)`.

    from orchestrator.job import worker as orch

    for item in orch.items():
        with item:                      # an exception fails this item (OOM noted) and the loop goes on
            item.done(fold(item.payload["sequence"]))

A worker leases items a chunk at a time from an `ItemSource`, renews its leases from a background
thread while it works, commits each result the moment `done` is called (one write: a result is in or
it is not), and stops taking items once an interruption notice arrives (the agent's signal, as for
`Checkpointer`), giving back the items it holds but has not started. Items that are done are never
handed out again, so a restarted worker simply carries on with what is left.

`ItemSource` (orchestrator/job/worker/sources.py) is the seam: `SqlItemSource`
(orchestrator/store/item_source.py) talks to orch's own database, given as ORCH_ITEMS_URL to local
workers; `HttpItemSource` (orchestrator/job/worker/http_source.py) talks to the controller's item
service, given as ORCH_ITEMS_ENDPOINT and a per-attempt ORCH_ITEMS_TOKEN to pods and cloud workers,
which must not hold database credentials. `MemoryItemSource` runs a worker by hand, without orch.
See docs/campaigns.md.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from orchestrator.job.checkpoint.interrupts import Interrupts
from orchestrator.job.checkpoint.sdk import _interrupt_signals
from orchestrator.job.item_records import Lease
from orchestrator.job.worker.sources import ItemSource

__all__ = ["DEFAULT_LEASE_SECONDS", "Item", "ItemsConfigError", "WorkerItems", "is_out_of_memory", "items",
           "source_from_env"]

log = logging.getLogger("orch.items")

DEFAULT_LEASE_SECONDS = 120.0


class ItemsConfigError(RuntimeError):
    """The environment does not say where the campaign's items are (not started by orch as a campaign worker)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a GPU out-of-memory error (PyTorch's, JAX's / XLA's, TensorFlow's), known by name and
    message so that no framework is imported here."""
    name = type(exc).__name__
    text = str(exc)
    return (name in ("OutOfMemoryError", "ResourceExhaustedError", "XlaRuntimeError") and
            ("memory" in text.lower() or name == "OutOfMemoryError")) or "CUDA out of memory" in text \
        or "RESOURCE_EXHAUSTED: Out of memory" in text


class Item:
    """One leased item. Call `done(result)` or `fail(reason)` exactly once; `with item:` fails it on an exception."""

    def __init__(self, owner: WorkerItems, lease: Lease, started_at: float) -> None:
        self._owner = owner
        self.lease = lease
        self._started_at = started_at
        self.settled = False
        self.committed: bool | None = None  # after done(): was this result the item's one result?

    @property
    def index(self) -> int:
        return self.lease.index

    @property
    def key(self) -> str | None:
        return self.lease.key

    @property
    def payload(self) -> Any:
        """The item: a FASTA record as {"id", "description", "sequence"}, a text line as str, a JSONL object."""
        return json.loads(self.lease.payload)

    def done(self, result: Any = None, *, result_uri: str | None = None) -> bool:
        """Commit the result (any JSON value; large outputs go to storage, committed as `result_uri`).

        Returns True if it is the item's one result, False if another worker's result was in first
        (possible only after this worker's lease lapsed): then this result is dropped, never duplicated.
        """
        self._settle()
        text = None if result is None else json.dumps(result, allow_nan=False)
        self.committed = self._owner.source.complete(self.lease, result=text, result_uri=result_uri,
                                                     work_seconds=self._owner.now() - self._started_at)
        return self.committed

    def fail(self, reason: str, *, oom: bool = False) -> str | None:
        """Record a failure: retried later (on a GPU with more memory if `oom`), quarantined if it keeps failing."""
        self._settle()
        return self._owner.source.fail(self.lease, reason=reason, oom=oom)

    def _settle(self) -> None:
        if self.settled:
            raise RuntimeError(f"item {self.index} was already marked done or failed")
        self.settled = True

    def __enter__(self) -> Item:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if exc is None or self.settled or not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit: not the item's fault, the worker stops
        oom = is_out_of_memory(exc)
        log.warning("item %d failed%s: %s: %s", self.index, " (out of GPU memory)" if oom else "",
                    type(exc).__name__, exc)
        self.fail(f"{type(exc).__name__}: {exc}", oom=oom)
        return True  # the campaign goes on with the next item


class WorkerItems:
    """The items of one worker: iterate it once. Also a context manager that gives back what it holds."""

    def __init__(self, source: ItemSource, *, chunk: int = 1, now: Callable[[], float] = time.time,
                 interrupted: Callable[[], bool] | None = None) -> None:
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.source = source
        self.chunk = chunk
        self.now = now
        self._external_interrupted = interrupted
        self._interrupts = Interrupts()
        self._held: dict[int, Lease] = {}  # leased and not settled: what the renewer keeps alive
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost: set[int] = set()  # item ids whose lease lapsed and went to another worker

    # -- interruption (the same contract as Checkpointer) -------------------------------------------

    @property
    def interrupted(self) -> bool:
        external = self._external_interrupted is not None and self._external_interrupted()
        return external or self._interrupts.is_set

    def mark_interrupted(self) -> None:
        self._interrupts.mark()

    def install_signal_handlers(self, signals: Sequence[int]) -> None:
        self._interrupts.install(signals)

    # -- iteration ----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Item]:
        self._start_renewer()
        buffer: list[Lease] = []
        current: Item | None = None
        try:
            while not self.interrupted:
                if not buffer:
                    buffer = self.source.lease(self.chunk)
                    with self._lock:
                        self._held.update((x.item_id, x) for x in buffer)
                    if not buffer:
                        return  # nothing waiting: the loop starts workers again if items come back
                lease = buffer.pop(0)
                if lease.item_id in self.lost or not self.source.start(lease):
                    self._forget(lease)
                    continue
                current = Item(self, lease, self.now())
                yield current
                if not current.settled:
                    current.fail("the worker went on without calling item.done() or item.fail()")
                self._forget(lease)
                current = None
        finally:
            unsettled = [*buffer, *([current.lease] if current is not None and not current.settled else [])]
            self.close(unsettled)

    def _forget(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(lease.item_id, None)

    def close(self, give_back: Collection[Lease] = ()) -> None:
        """Stop renewing, give back `give_back` (held, not finished: no failure counted), restore signals."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)
        try:
            if give_back:
                self.source.release(give_back)
        finally:
            with self._lock:
                self._held.clear()
            self._interrupts.restore()
            self.source.close()

    def __enter__(self) -> WorkerItems:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            held = list(self._held.values())
        self.close(held)

    # -- the lease heartbeat ------------------------------------------------------------------------

    def _start_renewer(self) -> None:
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew_loop, name="orch-item-leases", daemon=True)
            self._renewer.start()

    def _renew_loop(self) -> None:
        """Renew every held lease each third of the lease time: two renewals can fail before one lapses."""
        period = max(self.source.lease_seconds / 3.0, 0.05)
        while not self._stop.wait(period):
            with self._lock:
                held = list(self._held.values())
            if not held:
                continue
            try:
                kept = self.source.renew(held)
            except Exception as exc:  # a database blip: the next renewal may work, the lease has margin
                log.warning("could not renew item leases: %s", exc)
                continue
            lapsed = {x.item_id for x in held} - kept
            if lapsed:
                log.warning("lost the lease of %d item(s); their results will count only if no other "
                            "worker's is in first", len(lapsed))
                self.lost |= lapsed


def items(*, source: ItemSource | None = None, chunk: int = 1, env: Mapping[str, str] | None = None,
          install_signal_handlers: bool = True, interrupted: Callable[[], bool] | None = None) -> WorkerItems:
    """This worker's items: from `source`, else from the environment orch gives a campaign's workers.

    `chunk`: items leased at a time (more saves round trips on short items; a reclaimed worker's chunk
    waits for its lease or the loop to come back). `interrupted`: an extra check, e.g. a Checkpointer's
    `lambda: ckpt.interrupted`, for jobs that use both.
    """
    env = os.environ if env is None else env
    if source is None:
        source = source_from_env(env)
    worker = WorkerItems(source, chunk=chunk, interrupted=interrupted)
    if install_signal_handlers:
        worker.install_signal_handlers(_interrupt_signals(env))
    return worker


def source_from_env(env: Mapping[str, str]) -> ItemSource:
    """The `ItemSource` the environment names, for the worker ORCH_JOB_ID / ORCH_ATTEMPT_ID (the lease
    owner): ORCH_ITEMS_ENDPOINT with ORCH_ITEMS_TOKEN (the controller's item service: pods), else
    ORCH_ITEMS_URL (orch's database: local workers)."""
    endpoint, url = env.get("ORCH_ITEMS_ENDPOINT") or env.get("ORCH_ITEMS_BUCKET"), env.get("ORCH_ITEMS_URL")
    if not endpoint and not url:
        raise ItemsConfigError("neither ORCH_ITEMS_ENDPOINT nor ORCH_ITEMS_URL is set: run this job as an orch "
                               "campaign ([array] items = ...), or pass source=MemoryItemSource.from_file(path) "
                               "to run it by hand")
    job_id, owner = env.get("ORCH_JOB_ID"), env.get("ORCH_ATTEMPT_ID")
    if not job_id or not owner:
        raise ItemsConfigError(f"{'ORCH_ITEMS_ENDPOINT' if endpoint else 'ORCH_ITEMS_URL'} is set but ORCH_JOB_ID "
                               "or ORCH_ATTEMPT_ID is not")
    memory_text = env.get("ORCH_GPU_MEMORY_GB") or None
    memory = float(memory_text) if memory_text else None
    lease_s = float(env.get("ORCH_ITEMS_LEASE_SECONDS") or DEFAULT_LEASE_SECONDS)
    if endpoint:
        token = env.get("ORCH_ITEMS_TOKEN")
        if not token:
            raise ItemsConfigError("ORCH_ITEMS_ENDPOINT or ORCH_ITEMS_BUCKET is set but ORCH_ITEMS_TOKEN is not")
        if not env.get("ORCH_ITEMS_ENDPOINT"):
            from orchestrator.job.worker.bucket_source import BucketItemSource

            return BucketItemSource(endpoint, job_id=job_id, owner=owner, token=token, gpu_memory_gb=memory,
                                    lease_seconds=lease_s,
                                    retry_for_s=float(env.get("ORCH_ITEMS_RETRY_SECONDS") or 300.0))
        from orchestrator.job.worker.http_source import HttpItemSource

        return HttpItemSource(endpoint, job_id=job_id, owner=owner, token=token, gpu_memory_gb=memory,
                              lease_seconds=lease_s, ca_pem=env.get("ORCH_ITEMS_CA") or None,
                              retry_for_s=float(env.get("ORCH_ITEMS_RETRY_SECONDS") or 300.0))
    assert url is not None
    return database_source(url)(url, job_id=job_id, owner=owner, gpu_memory_gb=memory, lease_seconds=lease_s)


ITEM_SOURCES = "orch.item_sources"


def database_source(url: str) -> Callable[..., ItemSource]:
    """The source for orch's own database (a local job, on the controller's host): the installed control
    plane provides it as the `orch.item_sources` entry point `database` (pyproject.toml), so this package
    never imports the store. A job image without the control plane has none, and says so."""
    from importlib.metadata import entry_points

    found = entry_points(group=ITEM_SOURCES, name="database")
    if not found:
        raise ItemsConfigError(f"ORCH_ITEMS_URL is set, but no {ITEM_SOURCES} entry point 'database' is installed: "
                               "a worker that reads orch's database runs where orch itself is installed")
    source: Callable[..., ItemSource] = next(iter(found)).load()
    return source
