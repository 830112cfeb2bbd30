"""The loop's job-level and tick-level rules, as values: when a job has finished, which orphan instance
is stopped, which prices are worth a row. The loop carries them out (`loop.reconciler`, `loop.offers`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.core.model import AttemptView, TaskState, job_state
from orchestrator.core.plan.task import draining
from vocab import Offer

# An offer's price and availability are recorded when they change, and at least this often.
PRICE_RECORD_S = 600.0


@dataclass(frozen=True, slots=True)
class Finished:
    """Every task is terminal: the job is marked finished (and a campaign's results written)."""

    state: str
    write_output: str | None = None  # where a campaign's results go


def finished(states: Sequence[TaskState], *, output: str | None = None) -> Finished | None:
    if not states or not all(s.terminal for s in states):
        return None
    return Finished(job_state(list(states)), output)


def stop_orphan(attempt: AttemptView | None, now: float) -> bool:
    """Whether an orch-managed instance no live attempt explains is stopped.

    One whose attempt this store has never seen is left alone: it belongs to another orch installation
    sharing the account (or to a store restored from an old backup), and stopping it would destroy
    someone else's work. Nor is one whose attempt was handed over on an interruption notice, until that
    notice's deadline: it is saving the checkpoint its replacement resumes from."""
    return attempt is not None and not attempt.live and not draining(attempt, now)


def prices_to_record(offers: Sequence[Offer], recorded: Mapping[str, tuple[float, bool | None, float]],
                     now: float) -> list[Offer]:
    """The offers whose price or availability changed since last recorded, or were last recorded
    `PRICE_RECORD_S` ago (`recorded`: offer key -> (price, available, when))."""
    fresh = []
    for o in offers:
        seen = recorded.get(o.key)
        if seen is None or seen[:2] != (o.price_per_hour, o.available) or now - seen[2] >= PRICE_RECORD_S:
            fresh.append(o)
    return fresh
