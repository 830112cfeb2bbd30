"""One provider call hangs for 60 s: how long does the tick take, and how much of the other jobs' work gets done?

    python bench/hung_call.py [--jobs 200] [--hang 60] [--call-timeout 5]

Compares the inline loop (one job after another, as simulations run) with the controller's pool
(`orch controller --workers 8 --call-timeout S`). One job's launch blocks for `--hang` seconds (a GCE
operation wait that never ends); every other job launches normally. The table shows, per mode: the
tick's wall time, the other jobs launched by that tick, and whether the hung job's attempt was kept
`launching` for a same-token retry. SQLite in a temporary folder, sim provider.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.core.model import AttemptState, TaskState
from orchestrator.core.spec import parse_spec
from orchestrator.loop.executor import Executor
from orchestrator.loop.reconciler import Reconciler
from orchestrator.research.traces import Trace
from orchestrator.store import Store
from orchestrator.store.engine import make_engine, upgrade
from providers.sim import SimClock, SimProvider
from vocab import Instance, LaunchRequest

JOB = """
name = "j{n}"
command = ["true"]
[resources]
gpu = "V100"
[schedule]
estimated_hours = 10
market = "spot"
[placement]
providers = ["sim"]
"""


class _Hanging(SimProvider):
    def __init__(self, clock: SimClock, hang_s: float) -> None:
        super().__init__(clock, {"a": Trace(source="always", gap_seconds=60.0, data=(1,) * 100, prices=None)})
        self.hang_s, self.hang_job, self.release = hang_s, "", threading.Event()
        self.last_other = 0.0  # perf_counter when the last other job's launch returned

    def launch(self, request: LaunchRequest) -> Instance:
        if request.job_id == self.hang_job:
            self.release.wait(self.hang_s)
            return super().launch(request)
        inst = super().launch(request)
        self.last_other = max(self.last_other, time.perf_counter())
        return inst


def run(mode: str, jobs: int, hang_s: float, call_timeout_s: float) -> tuple[float, float, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'orch.db'}")
        upgrade(engine)
        store = Store(engine)
        clock = SimClock()
        provider = _Hanging(clock, hang_s)
        ids = [store.submit(parse_spec(JOB.format(n=i), source="job.toml", submitted_at=clock.now()),
                            source="job.toml", now=clock.now(), checkpoint_uri=f"file://{tmp}/c{i}")
               for i in range(jobs)]
        provider.hang_job = ids[0]
        executor = (Executor() if mode == "inline" else
                    Executor(workers=8, call_timeout_s=call_timeout_s, job_budget_s=max(5.0, call_timeout_s)))
        r = Reconciler(store, {"sim": provider}, clock, tick_seconds=60.0, executor=executor)
        began = time.perf_counter()
        r.tick()
        took = time.perf_counter() - began
        launched = sum(1 for j in ids[1:] if [t.state for t in store.tasks(j)] == [TaskState.RUNNING])
        (attempt,) = store.attempts(ids[0])
        kept = "yes" if attempt.state is AttemptState.LAUNCHING else f"no ({attempt.state})"
        provider.release.set()
        executor.shutdown()
        engine.dispose()
        return took, provider.last_other - began, launched, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--hang", type=float, default=60.0)
    ap.add_argument("--call-timeout", type=float, default=5.0)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}; "
          f"{args.jobs} single-task jobs, one launch hangs {args.hang:.0f} s")
    print("| mode | tick wall time (s) | other jobs all launched after (s) | other jobs launched in the tick "
          "| hung attempt kept launching |")
    print("|---|---|---|---|---|")
    for mode in ("inline", "pool"):
        took, others, launched, kept = run(mode, args.jobs, args.hang, args.call_timeout)
        label = ("inline (workers=0)" if mode == "inline"
                 else f"pool (workers=8, call timeout {args.call_timeout:.0f} s)")
        print(f"| {label} | {took:.2f} | {others:.2f} | {launched}/{args.jobs - 1} | {kept} |")


if __name__ == "__main__":
    main()
