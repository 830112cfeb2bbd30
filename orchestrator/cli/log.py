"""`orch controller`'s log: one line per event of the jobs it runs, and one per cost step.

The store already records every launch, notice, preemption, market switch and end as an event row,
in the same transaction as the change. The log is read from there after each tick (rows newer than
the last one logged, of the jobs this controller holds), so it can never say something the store
does not, and the reconciler needs no logging calls of its own. Money is not an event: a `cost` line
is written when a job's spend (orchestrator.core.cost.job_cost, the one derivation) crosses a step.

Lines go through `logging` (logger `orch.controller`), so the loop's own warnings and errors share
the format: human (`time  job  kind  message`) or, with `--json-logs`, one JSON object per line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from orchestrator.core.cost import job_cost
from orchestrator.store.held import events_of_held_jobs, held_jobs, newest_event_id

if TYPE_CHECKING:
    from orchestrator.store import Store

log = logging.getLogger("orch.controller")
BUDGET_STEP = 0.10  # of the budget
DOLLAR_STEP = 1.0  # without a budget


def when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def one_line(text: str) -> str:
    """A message on one line: provider errors can carry newlines; a log line must not."""
    return " ".join(text.split())


class HumanFormatter(logging.Formatter):
    """`2025-01-02 03:04:05Z  5c0e1a2b  launch            message` (job and kind `-` when none)."""

    def format(self, record: logging.LogRecord) -> str:
        at = getattr(record, "at", record.created)
        job = str(getattr(record, "job_id", "-"))[:8]
        kind = getattr(record, "kind", record.levelname.lower())
        line = f"{when(at)}  {job:<8}  {kind:<16}  {one_line(record.getMessage())}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; keys documented in docs/cli.md (`orch controller`)."""

    def format(self, record: logging.LogRecord) -> str:
        at = getattr(record, "at", record.created)
        out: dict[str, Any] = {"at": at, "time": when(at), "level": record.levelname.lower(), "logger": record.name,
                               "kind": getattr(record, "kind", record.levelname.lower()),
                               "job_id": getattr(record, "job_id", None), "message": one_line(record.getMessage())}
        for key in ("job_name", "task_id", "attempt_id", "spent_usd", "budget_usd"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, allow_nan=False, default=str)


def configure(*, json_logs: bool, stream: IO[str] | None = None) -> logging.Handler:
    """Send orch's log (INFO, or ORCH_LOG_LEVEL) and everyone's warnings to `stream`, one line each."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else HumanFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    level = os.environ.get("ORCH_LOG_LEVEL", "INFO").upper()
    for name in ("orch", "orchestrator", "providers"):  # named loggers, and modules' `__name__` ones
        logging.getLogger(name).setLevel(level)
    return handler


def cost_step(spent: float, budget: float | None) -> int:
    """How many steps `spent` has crossed: tenths of the budget, or whole dollars without one."""
    size = budget * BUDGET_STEP if budget else DOLLAR_STEP
    return math.floor(spent / size + 1e-9)


@dataclass
class ControllerLog:
    """Logs, after each tick, what the store recorded for the jobs held by `owner` since the last call."""

    store: Store
    owner: str
    now: Callable[[], float]  # the loop's clock
    last_id: int = 0
    steps: dict[str, int] = field(default_factory=dict)

    @classmethod
    def starting_now(cls, store: Store, owner: str, now: Callable[[], float]) -> ControllerLog:
        """A log that starts after the newest event so far: a restarted controller does not replay history."""
        return cls(store, owner, now, last_id=newest_event_id(store))

    def after_tick(self) -> None:
        """Log what the last tick recorded. Never raises: the loop outlives a database outage, and so
        must its log (the lines not read yet are read after the next tick that reaches the store)."""
        try:
            self._log_new()
        except Exception as exc:
            log.warning("cannot read the store for the log: %s", one_line(str(exc))[:300], extra={"kind": "log"})

    def _log_new(self) -> None:
        touched: set[str] = set()
        for held in events_of_held_jobs(self.store, self.owner, after_id=self.last_id):
            e = held.event
            touched.add(held.job_id)
            log.info("%s", e.message, extra={"at": e.at, "job_id": held.job_id, "job_name": held.job_name,
                                             "kind": e.kind, "task_id": e.task_id, "attempt_id": e.attempt_id})
            self.last_id = e.id
        self._log_cost_steps(touched)

    def _log_cost_steps(self, touched: set[str]) -> None:
        """A `cost` line for each held job whose spend crossed a step since the last line (first sight: if any)."""
        jobs = held_jobs(self.store, self.owner, also=touched)
        now = self.now()
        attempts = self.store.attempts_of([j.id for j in jobs])  # one query for every held job, not one each
        for job_id, name, budget, finished_at in ((j.id, j.name, j.budget_usd, j.finished_at) for j in jobs):
            spent = job_cost(attempts[job_id], now=now, remaining_usd=0.0, on_demand_only_usd=0.0).spent_usd
            step = cost_step(spent, budget)
            if step > self.steps.get(job_id, 0):
                log.info("%s", cost_message(spent, budget),
                         extra={"at": now, "job_id": job_id, "job_name": name, "kind": "cost",
                                "spent_usd": round(spent, 4), "budget_usd": budget})
            if finished_at is None:
                self.steps[job_id] = max(step, self.steps.get(job_id, 0))
            else:
                self.steps.pop(job_id, None)  # its last line is written; a finished job costs no more


def cost_message(spent: float, budget: float | None) -> str:
    if budget:
        return f"spent ${spent:,.2f} ({spent / budget:.0%} of the ${budget:,.2f} budget)"
    return f"spent ${spent:,.2f}"
