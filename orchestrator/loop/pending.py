"""A tick's observations, held in memory and written in one transaction (`store.observations`).

A step that sees new progress applies it to the tick's snapshot at once (the decision that follows
reads it there) and leaves the row write here. Before a step changes its task's state, the task's
held observations are written first (`loop.step_store.StepStore`), so a transition never lands before the
progress it was decided on, and a later progress write can never overwrite a state change's row.
Whatever is left is written when the tick ends; a controller that dies first loses only
observations, which the next tick makes again from the same heartbeats and listings.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from operator import attrgetter
from typing import Any

from orchestrator.core.model import AttemptView, TaskView
from orchestrator.store import Store
from orchestrator.store.observations import ATTEMPT_NOTES, TASK_PROGRESS


class PendingWrites:
    """Progress by task and notes by attempt, from every job's step (the executor's pool: locked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: dict[str, dict[str, float]] = {}
        self._notes: dict[str, dict[str, dict[str, float]]] = {}  # task id -> attempt id -> columns

    def __len__(self) -> int:
        with self._lock:
            return len(self._progress) + sum(len(n) for n in self._notes.values())

    def progress(self, task_id: str, values: Mapping[str, float]) -> None:
        with self._lock:
            self._progress.setdefault(task_id, {}).update(values)

    def note(self, task_id: str, attempt_id: str, values: Mapping[str, float]) -> None:
        with self._lock:
            self._notes.setdefault(task_id, {}).setdefault(attempt_id, {}).update(values)

    def flush(self, store: Store, *, task_id: str | None = None) -> None:
        """Write what is held (only `task_id`'s, if given) and forget it."""
        with self._lock:
            if task_id is None:
                progress, by_task = self._progress, self._notes
                self._progress, self._notes = {}, {}
            else:
                progress = {task_id: self._progress.pop(task_id)} if task_id in self._progress else {}
                by_task = {task_id: self._notes.pop(task_id)} if task_id in self._notes else {}
        if progress or by_task:
            store.record_observations(progress, {a: v for notes in by_task.values() for a, v in notes.items()})


# A view copied with a few fields changed, made positionally: `dataclasses.replace` (a dict of every
# field, then keyword init) was ~4.5 us a copy, twice per task in a tick where every task reports progress.
_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(TaskView))
_ATTEMPT_FIELDS = tuple(f.name for f in dataclasses.fields(AttemptView))
_task_values, _attempt_values = attrgetter(*_TASK_FIELDS), attrgetter(*_ATTEMPT_FIELDS)
_TASK_AT = {name: i for i, name in enumerate(_TASK_FIELDS)}
_ATTEMPT_AT = {name: i for i, name in enumerate(_ATTEMPT_FIELDS)}


def with_progress(task: TaskView, values: Mapping[str, float]) -> TaskView:
    """The task as the snapshot holds it once `values` (`core.plan.progress.progress_values`) are written."""
    fields: list[Any] = list(_task_values(task))
    for name in TASK_PROGRESS.intersection(values):
        fields[_TASK_AT[name]] = values[name]
    return TaskView(*fields)


def with_notes(attempt: AttemptView, notes: Mapping[str, float]) -> AttemptView:
    """The attempt as the snapshot holds it once `notes` are written."""
    fields: list[Any] = list(_attempt_values(attempt))
    for name in ATTEMPT_NOTES.intersection(notes):
        fields[_ATTEMPT_AT[name]] = notes[name]
    return AttemptView(*fields)
