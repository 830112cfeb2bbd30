"""Finding the jobs a command names, and saying who runs them: shared by every command that takes JOB.

- `resolve`: a job id or unique prefix; an ambiguous prefix (`orch status 2`) lists the jobs it
  matches instead of a bare error, so the user can pick one.
- `controller_hint` / `controller_line`: whether a controller runs a job, from the leases in the
  store (`store.leases`): a running controller renews the lease of every unfinished job it holds each
  tick, and a stopped one releases them. A pending job no controller holds stays pending for ever, so
  every view of one says how to get it run.

Module imports stay light (`orch --help` builds every parser); the store is imported by the callers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.cli.errors import EXIT_USAGE, CliError

if TYPE_CHECKING:
    from orchestrator.store import Store
    from orchestrator.store.views import JobView

# Matches listed for an ambiguous prefix: enough to pick from, short enough to read.
LISTED = 20
START_ONE = "start one with `orch controller` (any terminal), or run it here with `orch run {job}`"


def resolve(store: Store, ref: str) -> JobView:
    """The job `ref` names (an id or a unique prefix); a CliError naming what is wrong otherwise."""
    from orchestrator.store.repo import AmbiguousJob

    try:
        job = store.job(ref)
    except AmbiguousJob:
        raise CliError(ambiguous(store, ref), EXIT_USAGE) from None
    if job is None:
        raise CliError(f"no job {ref!r}")
    return job


def ambiguous(store: Store, ref: str) -> str:
    """`'2' matches 3 jobs; give more of the id:` and one line per match (newest first)."""
    from orchestrator.cli import render
    from orchestrator.store.job_list import JobFilter

    where = JobFilter(id_prefix=ref)
    jobs = store.jobs(where, limit=LISTED)
    total = store.count_jobs(where)
    now = time.time()
    lines = [f"{ref!r} matches {total:,} jobs; give more of the id:"]
    lines += [f"  {j.id[:12]}  {render.clip(j.name, 24):<24}  {render.age(j.created_at, now)} ago" for j in jobs]
    if total > len(jobs):
        lines.append(f"  … and {total - len(jobs):,} more (`orch ls --all`)")
    return "\n".join(lines)


def resolve_many(store: Store, refs: Sequence[str]) -> list[JobView]:
    """Every job `refs` name, each once, in the order given; all checked before any is acted on."""
    seen: dict[str, JobView] = {}
    for ref in refs:
        job = resolve(store, ref)
        seen.setdefault(job.id, job)
    return list(seen.values())


def controller_line(store: Store, job_id: str, unfinished: bool, now: float) -> str | None:
    """`orch-1a2b… (holds this job)` or how to start one; None for a finished job (nothing to run)."""
    if not unfinished:
        return None
    owner = store.job_leases([job_id], now).get(job_id)
    if owner is not None:
        return f"{owner} holds this job"
    others = store.live_controllers(now)
    if others:
        return (f"none holds this job yet; {_names(others)} running: a controller takes a new job at its "
                "next tick")
    return "none running: " + START_ONE.format(job=job_id[:8])


def submitted_hint(store: Store, job_id: str, now: float) -> str:
    """What `orch submit` (without --wait) says about who will run the job it just stored."""
    others = store.live_controllers(now)
    if others:
        return (f"job {job_id[:8]} is queued: {_names(others)} running and takes it at its next tick "
                f"(`orch status {job_id[:8]}` to follow)")
    return (f"job {job_id[:8]} is pending and no controller is running (none holds a job): "
            f"{START_ONE.format(job=job_id[:8])}")


def unclaimed_hint(store: Store, pending: Sequence[str], now: float) -> str | None:
    """For the job list: the pending jobs no controller holds, when no controller runs at all."""
    if not pending or store.live_controllers(now):
        return None
    held = store.job_leases(pending, now)
    idle = [j for j in pending if j not in held]
    if not idle:
        return None
    return (f"{len(idle):,} pending job(s) and no controller running: start one with `orch controller`, "
            f"or `orch run JOB` to run one here")


def _names(owners: dict[str, int]) -> str:
    names = sorted(owners)
    shown = ", ".join(f"controller {n}" for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{shown}{more} {'is' if len(names) == 1 else 'are'}"
