"""The store as one task's step uses it: a typed unit of work over `Store`, not a proxy.

Two rules hold for every state change a step makes (a transition, an attempt begun, started or ended):
the task's observations held for the tick's end (`loop.pending`) are written first, so the change
never lands beside an older progress; and the step notes that it wrote, so its task is read again
into the snapshot afterwards (`TaskStep.wrote`). Before, two `__getattr__` proxies cast to `Store`
applied these by method name, and mypy checked nothing through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.core.model import AttemptView, NodeSpan, Outcome, TaskView, Transition
from orchestrator.loop.pending import PendingWrites
from orchestrator.store import Store
from vocab import Offer


class StepStore:
    def __init__(self, store: Store, pending: PendingWrites, task_id: str) -> None:
        self._store, self._pending, self.task_id = store, pending, task_id
        self.wrote = False  # a state change since the step last read its task again

    def _changing(self) -> None:
        self._pending.flush(self._store, task_id=self.task_id)
        self.wrote = True

    # --- state changes ----------------------------------------------------------------------------

    def transition(self, task_id: str, name: Transition | str, now: float, *, message: str = "",
                   attempt_id: str | None = None, **values: Any) -> None:
        self._changing()
        self._store.transition(task_id, name, now, message=message, attempt_id=attempt_id, **values)

    def begin_attempt(self, task: TaskView, offer: Offer, now: float, *, reason: str = "",
                      nodes: int = 1) -> AttemptView:
        self._changing()
        return self._store.begin_attempt(task, offer, now, reason=reason, nodes=nodes)

    def attempt_instance(self, attempt: AttemptView, instance_id: str) -> None:
        self._changing()
        self._store.attempt_instance(attempt, instance_id)

    def attempt_running(self, attempt: AttemptView, instance_id: str, now: float, *,
                        started_at: float | None = None) -> None:
        self._changing()
        self._store.attempt_running(attempt, instance_id, now, started_at=started_at)

    def end_attempt(self, attempt: AttemptView, outcome: Outcome, now: float, *,
                    task_transitions: Sequence[Transition | str], message: str, exit_code: int | None = None,
                    unbilled: bool = False, failures: int | None = None, ended_at: float | None = None) -> None:
        self._changing()
        self._store.end_attempt(attempt, outcome, now, task_transitions=task_transitions, message=message,
                                exit_code=exit_code, unbilled=unbilled, failures=failures, ended_at=ended_at)

    def record_attempt_nodes(self, attempt_id: str, spans: Sequence[NodeSpan]) -> None:
        self._changing()
        self._store.record_attempt_nodes(attempt_id, spans)

    def end_attempt_node(self, attempt_id: str, instance_id: str, ended_at: float) -> None:
        self._changing()
        self._store.end_attempt_node(attempt_id, instance_id, ended_at)

    # --- reads and events (no state change: nothing to write first) --------------------------------

    def attempt(self, attempt_id: str) -> AttemptView | None:
        return self._store.attempt(attempt_id)

    def add_event(self, job_id: str, kind: str, message: str, now: float, *, task_id: str | None = None,
                  attempt_id: str | None = None) -> None:
        self._store.add_event(job_id, kind, message, now, task_id=task_id, attempt_id=attempt_id)

    def has_event(self, job_id: str, kind: str, *, attempt_id: str) -> bool:
        return self._store.has_event(job_id, kind, attempt_id=attempt_id)
