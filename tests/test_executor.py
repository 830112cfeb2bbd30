"""One hung cloud call holds up only its own job: the others' work is done in the same tick.

The hang is an `Event` the test sets only after the tick returned, so a tick that waited for the
hung call could not return first (it would fail by timing out the hang, never by a slow clock).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from orchestrator.core.model import AttemptState, TaskState
from orchestrator.core.spec import parse_spec
from orchestrator.loop.executor import CallTimedOut, Executor
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace
from orchestrator.store import Store
from providers.sim import SimClock, SimProvider
from tests.test_loop_lease import JOB
from vocab import Instance, LaunchRequest

HANG_S = 30.0  # the most a broken test waits; a passing one releases the hang at once


class Hanging(SimProvider):
    """A sim provider whose launches for one job hang until released (a GCE operation that never ends)."""

    hang_job: str = ""

    def __init__(self, clock: SimClock, trace: Trace) -> None:
        super().__init__(clock, {"a": trace})
        self.release = threading.Event()
        self.hung = threading.Event()

    def launch(self, request: LaunchRequest) -> Instance:
        if request.job_id == self.hang_job and not self.release.is_set():
            self.hung.set()
            self.release.wait(HANG_S)
        return super().launch(request)


@pytest.fixture
def world(sqlite_store: Store) -> Iterator[tuple[Store, SimClock, Hanging, list[str]]]:
    clock = SimClock()
    provider = Hanging(clock, Trace(source="always", gap_seconds=60.0, data=(1,) * 1000, prices=None))
    jobs = [sqlite_store.submit(parse_spec(JOB, source="job.toml", submitted_at=clock.now()),
                                source="job.toml", now=clock.now(), checkpoint_uri=f"file:///tmp/orch-exec-{n}")
            for n in ("slow", "b", "c")]
    provider.hang_job = jobs[0]
    yield sqlite_store, clock, provider, jobs
    provider.release.set()


def _states(store: Store, job_id: str) -> list[TaskState]:
    return [t.state for t in store.tasks(job_id)]


def test_a_hung_launch_times_out_and_the_other_jobs_launch_in_the_same_tick(
        world: tuple[Store, SimClock, Hanging, list[str]]) -> None:
    store, clock, provider, (slow, b, c) = world
    executor = Executor(workers=4, call_timeout_s=0.5, job_budget_s=HANG_S)
    r = Reconciler(store, {"sim": provider}, clock, tick_seconds=60.0, executor=executor)
    r.tick()
    assert provider.hung.is_set() and not provider.release.is_set()  # the tick returned while the call hung
    assert _states(store, b) == [TaskState.RUNNING] and _states(store, c) == [TaskState.RUNNING]
    (attempt,) = store.attempts(slow)
    assert attempt.state is AttemptState.LAUNCHING  # not failed: the cloud may still make the instance
    assert any(e.kind == "provider_error" and "no answer within" in e.message for e in store.events(slow))
    # The cloud answers at last; the next tick launches the same attempt again (same token) and so
    # finds the one instance the abandoned call made, rather than making a second.
    provider.release.set()
    clock.sleep(60.0)
    r.tick()
    (again,) = store.attempts(slow)
    assert again.id == attempt.id and again.state is AttemptState.RUNNING
    assert [i.attempt_id for i in provider.instances()].count(attempt.id) == 1
    executor.shutdown()


def test_a_job_still_working_after_the_budget_is_left_to_finish_and_skipped_until_then(
        world: tuple[Store, SimClock, Hanging, list[str]]) -> None:
    store, clock, provider, (slow, b, c) = world
    executor = Executor(workers=4, call_timeout_s=HANG_S, job_budget_s=0.2)
    r = Reconciler(store, {"sim": provider}, clock, tick_seconds=60.0, executor=executor)
    assert slow in r.tick()  # unfinished, and reported so
    assert provider.hung.is_set() and not provider.release.is_set()
    assert _states(store, b) == [TaskState.RUNNING] and _states(store, c) == [TaskState.RUNNING]
    clock.sleep(60.0)
    r.tick()  # the slow job is still inside its launch: this tick must not start a second attempt
    assert len(store.attempts(slow)) == 1
    provider.release.set()
    for _ in range(100):  # the abandoned share finishes in the background once the call returns
        if slow not in r._inflight:
            break
        threading.Event().wait(0.05)
    assert slow not in r._inflight
    clock.sleep(60.0)
    r.tick()
    assert _states(store, slow) == [TaskState.RUNNING] and len(store.attempts(slow)) == 1
    executor.shutdown()


def test_inline_is_the_default_and_calls_are_not_wrapped(sqlite_store: Store) -> None:
    clock = SimClock()
    provider = SimProvider(clock, {"a": Trace(source="always", gap_seconds=60.0, data=(1,), prices=None)})
    r = Reconciler(sqlite_store, {"sim": provider}, clock)
    assert r.executor.inline and r.providers["sim"] is provider


def test_a_timed_out_call_is_a_transient_error_and_names_what_hung() -> None:
    executor = Executor(workers=1, call_timeout_s=0.05)
    gate = threading.Event()
    with pytest.raises(CallTimedOut, match="sim launch of a1: no answer within"):
        executor.call(lambda: gate.wait(HANG_S), "sim launch of a1")
    gate.set()
    assert executor.call(lambda: 42, "quick") == 42
    executor.shutdown()
    with pytest.raises(ValueError):
        Executor(workers=-1)


def test_a_call_still_hanging_does_not_keep_the_process_from_exiting() -> None:
    # A child process abandons a call that never returns, then ends: concurrent.futures' pools would
    # join that thread at exit and the child would hang with it; the executor's daemon pools do not.
    script = (
        "import threading\n"
        "from orchestrator.loop.executor import CallTimedOut, Executor\n"
        "ex = Executor(workers=1, call_timeout_s=0.05)\n"
        "try:\n"
        "    ex.call(threading.Event().wait, 'a call that never answers')\n"
        "except CallTimedOut:\n"
        "    print('abandoned', flush=True)\n"
        "ex.shutdown()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_S)
    assert (done.returncode, done.stdout.strip()) == (0, "abandoned"), done.stderr


def test_a_shut_down_executor_finishes_what_was_queued_and_starts_new_pools_when_used_again() -> None:
    ex = Executor(workers=1)
    futures = [ex.submit(lambda i=i: i * i) for i in range(5)]  # type: ignore[misc]
    ex.shutdown()
    assert [f.result(timeout=HANG_S) for f in futures] == [0, 1, 4, 9, 16]
    assert ex.call(lambda: "again", "a call after shutdown") == "again"
    ex.shutdown()
