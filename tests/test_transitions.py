"""Every named task transition, from every state, through the real Store on SQLite and PostgreSQL.

One database per backend: an array job with one task per (transition, source state) pair, each task
driven to its source state by legal transitions, then the transition under test applied to it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from orchestrator.core.model import TRANSITIONS, IllegalTransition, TaskState, Transition, check_transition, job_state
from orchestrator.core.spec import ArraySpec, JobSpec, ScheduleSpec
from orchestrator.store import Store
from orchestrator.store.tables import EventRow, TaskRow
from orchestrator.store.views import EventView
from vocab import Resources

# The shortest legal way from pending to each state (the store has no "set state" on purpose).
PATH_TO: dict[TaskState, tuple[str, ...]] = {
    TaskState.PENDING: (),
    TaskState.LAUNCHING: ("launch",),
    TaskState.RUNNING: ("launch", "started"),
    TaskState.PREEMPTED: ("launch", "started", "preempted"),
    TaskState.SUCCEEDED: ("launch", "started", "succeed"),
    TaskState.FAILED: ("fail",),
    TaskState.CANCELLED: ("cancel",),
    TaskState.BUDGET_EXCEEDED: ("over_budget",),
}
CASES = [(name, state) for name in TRANSITIONS for state in TaskState]


def array_spec(count: int) -> JobSpec:
    return JobSpec(name="transitions", command=("true",), resources=Resources(),
                   schedule=ScheduleSpec(estimated_hours=1.0), array=ArraySpec(count=count, shard_size=1))


def test_paths_reach_their_states_and_cover_the_machine() -> None:
    assert set(PATH_TO) == set(TaskState)
    for target, path in PATH_TO.items():
        state = TaskState.PENDING
        for name in path:
            state = check_transition(name, state).target
        assert state is target
    # Terminal states have no way out; every live state has one.
    for state in TaskState:
        leaving = [n for n, t in TRANSITIONS.items() if state in t.sources]
        assert bool(leaving) is (not state.terminal), state


def _row(store: Store, task_id: str) -> tuple[str, float, int]:
    with store.session() as s:
        row = s.get(TaskRow, task_id)
        assert row is not None
        return row.state, row.updated_at, row.failures


def _events(store: Store, job_id: str, task_id: str) -> list[EventView]:
    return [e for e in store.events(job_id) if e.task_id == task_id]


def test_every_transition_from_every_state(store: Store) -> None:
    job_id = store.submit(array_spec(len(CASES)), source="t.toml", now=0.0, checkpoint_uri="file:///tmp/ck")
    tasks = store.tasks(job_id)
    assert len(tasks) == len(CASES)
    for task, (_, state) in zip(tasks, CASES, strict=True):
        for step, name in enumerate(PATH_TO[state]):
            store.transition(task.id, name, 1.0 + step)
    problems: list[str] = []
    for task, (name, state) in zip(tasks, CASES, strict=True):
        legal = state in TRANSITIONS[name].sources
        row_before, events_before = _row(store, task.id), _events(store, job_id, task.id)
        assert row_before[0] == state
        try:
            store.transition(task.id, name, 100.0, message=f"{name} from {state}")
        except IllegalTransition:
            if legal:
                problems.append(f"{name} from {state}: refused but legal")
            if (_row(store, task.id), _events(store, job_id, task.id)) != (row_before, events_before):
                problems.append(f"{name} from {state}: a refused transition changed the row or the events")
            continue
        if not legal:
            problems.append(f"{name} from {state}: applied but illegal")
            continue
        new = _events(store, job_id, task.id)[len(events_before):]
        if _row(store, task.id)[:2] != (TRANSITIONS[name].target, 100.0):
            problems.append(f"{name} from {state}: row is {_row(store, task.id)}")
        if [(e.kind, e.message, e.at) for e in new] != [(name, f"{name} from {state}", 100.0)]:
            problems.append(f"{name} from {state}: events {new}")
    assert problems == []


def test_model_check_agrees_with_the_declared_sources() -> None:
    for name, state in CASES:
        if state in TRANSITIONS[name].sources:
            assert check_transition(name, state).target is TRANSITIONS[name].target
        else:
            with pytest.raises(IllegalTransition, match=name):
                check_transition(name, state)
    with pytest.raises(IllegalTransition, match="no transition named"):
        check_transition("teleport", TaskState.PENDING)


def test_event_and_state_share_one_transaction(store: Store) -> None:
    job_id = store.submit(array_spec(1), source="t.toml", now=0.0, checkpoint_uri="file:///tmp/ck")
    (task,) = store.tasks(job_id)
    events = store.events(job_id)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.session() as s:
        store.transition(task.id, "launch", 5.0, session=s)
        assert s.scalar(select(func.count()).select_from(EventRow).where(EventRow.task_id == task.id)) == 1
        raise Boom
    assert store.tasks(job_id)[0].state is TaskState.PENDING
    assert store.events(job_id) == events


def test_values_travel_with_the_transition_and_unknown_names_are_refused(store: Store) -> None:
    job_id = store.submit(array_spec(1), source="t.toml", now=0.0, checkpoint_uri="file:///tmp/ck")
    (task,) = store.tasks(job_id)
    store.transition(task.id, "launch", 1.0)
    store.transition(task.id, "retry", 2.0, failures=2)
    assert _row(store, task.id) == ("pending", 2.0, 2)
    with pytest.raises(IllegalTransition, match="no transition named"):
        store.transition(task.id, "teleport", 3.0)
    with pytest.raises(IllegalTransition, match="missing"):
        store.transition("no-such-task", "launch", 3.0)


def test_job_state_is_derived_from_task_states() -> None:
    s = TaskState
    assert job_state([]) == "empty"
    assert job_state([s.PENDING, s.RUNNING, s.SUCCEEDED]) == "running"
    assert job_state([s.PENDING, s.PREEMPTED]) == "preempted"
    assert job_state([s.PENDING, s.SUCCEEDED]) == "pending"
    assert job_state([s.SUCCEEDED, s.FAILED, s.CANCELLED]) == "cancelled"
    assert job_state([s.SUCCEEDED, s.FAILED, s.BUDGET_EXCEEDED]) == "budget_exceeded"
    assert job_state([s.SUCCEEDED, s.FAILED]) == "failed"
    assert job_state([s.SUCCEEDED, s.SUCCEEDED]) == "succeeded"


def test_every_transition_name_is_declared_once_and_unknown_names_are_refused() -> None:
    assert set(TRANSITIONS) == set(Transition) and all(rule.name is name for name, rule in TRANSITIONS.items())
    with pytest.raises(IllegalTransition, match="no transition named 'teleport'"):
        check_transition("teleport", TaskState.PENDING)
