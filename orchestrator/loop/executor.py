"""Where a tick's effects run: a bounded pool of job workers and provider calls with a timeout each.

A cloud call can hang (a GCE operation wait, a TCP connection that never answers). Run serially, one
such call held every other job's work back for as long as it lasted. Here each job's share of a tick
runs on a bounded pool, each provider call is waited for at most `call_timeout_s`, and the tick waits
for its jobs at most `job_budget_s`: a job still working then is left to finish in the background and
is skipped by the ticks that follow until it has. A call that times out raises `CallTimedOut`, a
`TransientError`: the loop treats it as any transient failure, and since every call it makes is
idempotent (a launch carries the attempt's token; terminate and list are idempotent) the next tick
simply repeats it, even if the abandoned call completes meanwhile.

The pools' threads are daemon threads (`DaemonPool`): `concurrent.futures` joins its pools' threads
when the interpreter exits, so one abandoned call still hanging kept `orch run` from exiting after
Ctrl-C until the cloud answered. Abandoning such a call at exit is as safe as abandoning it mid-run.

`workers=0` runs everything inline, in the caller's thread and order: simulations and tests that
replay a tick step by step stay deterministic, and a one-shot command (`orch cancel`) needs no pool.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from providers.base import LaunchesGangs, Provider, zone_signals
from vocab import Instance, LaunchRequest, Notice, Offer, PermanentError, Resources, TransientError, ZoneSignal

T = TypeVar("T")


class CallTimedOut(TransientError):
    """A provider call that did not answer in time. It may still finish; repeating it is safe."""


class DaemonPool:
    """A fixed set of daemon threads running submitted calls in order; `shutdown` lets them finish what
    was queued and stop, and the process may exit while one still hangs."""

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiter, as concurrent.futures does
                future.set_exception(exc)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


@dataclass
class Executor:
    workers: int = 0
    call_timeout_s: float = 60.0
    # How long a tick waits for its jobs before leaving the slow ones to finish in the background.
    job_budget_s: float = 30.0
    # Whether a tick's independent reads (checkpoint storage, `gather`) run at once on the process's read
    # pool (`READ_THREADS` threads, shared by every executor), in every mode.
    parallel_reads: bool = True
    _jobs: DaemonPool | None = field(default=None, init=False, repr=False)
    _calls: DaemonPool | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.workers < 0 or self.call_timeout_s <= 0 or self.job_budget_s < 0:
            raise ValueError("workers must be >= 0, call_timeout_s > 0 and job_budget_s >= 0")

    @property
    def inline(self) -> bool:
        return self.workers == 0

    def _pools(self) -> tuple[DaemonPool, DaemonPool]:
        with self._lock:
            if self._jobs is None or self._calls is None:
                # Separate pools: a job worker waits on its calls, so sharing one pool could deadlock
                # once every worker waits on a call that has no thread left to run on. Calls get twice
                # the workers, so that a few hung calls leave room for the rest.
                self._jobs = DaemonPool(self.workers, "orch-job")
                self._calls = DaemonPool(2 * self.workers, "orch-call")
            return self._jobs, self._calls

    def call(self, fn: Callable[[], T], what: str) -> T:
        """`fn()`, waited for at most `call_timeout_s` (inline: simply called)."""
        if self.inline:
            return fn()
        future = self._pools()[1].submit(fn)
        try:
            return future.result(timeout=self.call_timeout_s)
        except FutureTimeout:
            raise CallTimedOut(f"{what}: no answer within {self.call_timeout_s:.0f} s; the call may still "
                               "finish, and the next tick repeats it (each call is idempotent)") from None

    def gather(self, fns: Sequence[Callable[[], T]]) -> list[T | Exception]:
        """Independent reads, run at once on their own pool (also when inline: reads change nothing, so
        their order cannot change a result), each waited for at most `call_timeout_s` from the start;
        an error, or a timeout (`CallTimedOut`), is returned in the read's place."""
        if len(fns) <= 1 or not self.parallel_reads:
            return [_outcome(fn) for fn in fns]
        pool = _read_pool()
        futures = [pool.submit(fn) for fn in fns]
        give_up = time.monotonic() + self.call_timeout_s
        out: list[T | Exception] = []
        for future in futures:
            try:
                out.append(future.result(timeout=max(0.0, give_up - time.monotonic())))
            except FutureTimeout:
                out.append(CallTimedOut(f"no answer within {self.call_timeout_s:.0f} s"))
            except Exception as exc:
                out.append(exc)
        return out

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run one job's share of a tick on the pool (inline: now, returning a finished future)."""
        if self.inline:
            done: Future[T] = Future()
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller through the future, as a pool would
                done.set_exception(exc)
            return done
        return self._pools()[0].submit(fn)

    def timed(self, providers: Mapping[str, Provider]) -> dict[str, Provider]:
        """The providers with every protocol call made through `call` (inline: unchanged)."""
        if self.inline:
            return dict(providers)
        return {name: TimedProvider(p, self) for name, p in providers.items()}

    def shutdown(self) -> None:
        """Let the pools' threads stop once their queued work is done, without waiting for them (an
        abandoned call may still hang); a later call starts new pools."""
        with self._lock:
            for pool in (self._jobs, self._calls):
                if pool is not None:
                    pool.shutdown()
            self._jobs = self._calls = None


READ_THREADS = 64
_READS: tuple[int, DaemonPool] | None = None  # (the process that made it, the pool)
_READS_LOCK = threading.Lock()


def _read_pool() -> DaemonPool:
    """One pool of read threads per process, made on first use and never shut down (daemon threads):
    reads are independent and change nothing, so every executor may share it, and a process that makes
    many controllers (tests, the simulation harness) holds `READ_THREADS` threads, not that many each."""
    global _READS
    with _READS_LOCK:
        if _READS is None or _READS[0] != os.getpid():  # a forked child starts its own
            _READS = (os.getpid(), DaemonPool(READ_THREADS, "orch-read"))
        return _READS[1]


def _outcome(fn: Callable[[], T]) -> T | Exception:
    try:
        return fn()
    except Exception as exc:
        return exc


class TimedProvider:
    """A provider whose protocol calls are bounded by the executor's timeout.

    Its `abilities` are the provider's; the optional protocols the loop uses are answered here, typed
    (zone signals, bounded like the rest); anything else is the provider's own business (`inner`).
    """

    def __init__(self, inner: Provider, executor: Executor) -> None:
        self._inner, self._executor = inner, executor
        self.name = inner.name
        self.abilities = inner.abilities

    def offers(self, resources: Resources, regions: Sequence[str], *, job_id: str | None = None,
               options: Mapping[str, object] | None = None) -> list[Offer]:
        return self._executor.call(lambda: self._inner.offers(resources, regions, job_id=job_id, options=options),
                                   f"{self.name} offers")

    def launch(self, request: LaunchRequest) -> Instance:
        return self._executor.call(lambda: self._inner.launch(request), f"{self.name} launch of {request.attempt_id}")

    def launch_gang(self, request: LaunchRequest) -> list[Instance]:
        inner = self._gangs()
        return self._executor.call(lambda: inner.launch_gang(request),
                                   f"{self.name} launch of the gang {request.attempt_id}")

    def release_gang(self, request: LaunchRequest) -> bool:
        inner = self._gangs()
        return self._executor.call(lambda: inner.release_gang(request),
                                   f"{self.name} release of the gang {request.attempt_id}")

    def _gangs(self) -> LaunchesGangs:
        if not isinstance(self._inner, LaunchesGangs):  # `launch_nodes` asks `max_gang_nodes` first
            raise PermanentError(f"{self.name} does not launch gangs", provider=self.name, code="GangTooLarge")
        return self._inner

    def instances(self) -> list[Instance]:
        return self._executor.call(self._inner.instances, f"{self.name} instances")

    def terminate(self, instance: Instance) -> None:
        self._executor.call(lambda: self._inner.terminate(instance), f"{self.name} terminate {instance.instance_id}")

    def notices(self) -> list[Notice]:
        return self._executor.call(self._inner.notices, f"{self.name} notices")

    def zone_signals(self, offers: Sequence[Offer]) -> Mapping[str, ZoneSignal]:
        return zone_signals(self._inner, offers)  # bounded by its caller (`loop.zones`), as one call

    @property
    def inner(self) -> Provider:
        return self._inner
