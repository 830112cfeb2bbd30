"""Gang jobs through the whole loop on this machine: reconciler + store + local provider + orch's agent.

A gang is one decision: launched all or nothing, started when every node has, billed for every node,
stopped whole when one node is reclaimed, relaunched from the head's checkpoint (docs/gangs.md).
Real processes and real time, kept short (0.2 s ticks, a 1 s notice).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from orchestrator.core.cost import attempt_cost
from orchestrator.core.model import Outcome, TaskState
from orchestrator.store import Store
from providers.local.gang import node_instance_id
from tests.loop_support import job_toml, python_command, reclaim_node, reconciler, run_until, submit

pytestmark = pytest.mark.slow

# Each rank notes that it ran (attempt, rank, head port), runs for the attempt's seconds, and notes a
# SIGTERM before exiting 143 as the SDK advises.
RANK = """
import os, signal, sys, time
att, rank = os.environ["ORCH_ATTEMPT"], os.environ["ORCH_NODE_RANK"]
def term(*_):
    open(f"term-{att}-{rank}", "w").close()
    sys.exit(143)
signal.signal(signal.SIGTERM, term)
open(f"ran-{att}-{rank}", "w").write(os.environ["MASTER_ADDR"] + ":" + os.environ["MASTER_PORT"])
end = time.time() + (SECONDS_FIRST if att == "0" else SECONDS_LATER)
while time.time() < end:
    time.sleep(0.05)
"""


def _gang_job(tmp: Path, nodes: int, first: float, later: float) -> Path:
    code = RANK.replace("SECONDS_FIRST", str(first)).replace("SECONDS_LATER", str(later))
    path = job_toml(tmp, command=python_command(code), market="spot",
                    local={"availability": "always", "notice_seconds": 1, "zones": ["local-a"]})
    text = path.read_text().replace('gpu = "V100"\n', f'gpu = "V100"\nnodes = {nodes}\n', 1)
    path.write_text(text)
    return path


def _ran(tmp: Path, attempt: int, nodes: int) -> bool:
    return all((tmp / f"ran-{attempt}-{r}").exists() for r in range(nodes))


def test_a_gang_runs_on_all_its_nodes_at_once_and_is_billed_for_each(
        tmp_path: Path, orch_home: Path, sqlite_store: Store) -> None:
    job_id = submit(sqlite_store, _gang_job(tmp_path, 3, first=1.0, later=1.0), orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=60)

    assert sqlite_store.tasks(job_id)[0].state is TaskState.SUCCEEDED
    (attempt,) = sqlite_store.attempts(job_id)
    assert attempt.outcome is Outcome.SUCCEEDED and attempt.nodes == 3
    assert sorted(s.rank for s in attempt.node_spans) == [0, 1, 2]
    assert len({s.instance_id for s in attempt.node_spans}) == 3
    assert attempt.instance_id == node_instance_id(attempt.id, 0)  # the head stands for the gang
    heads = {(tmp_path / f"ran-0-{r}").read_text() for r in range(3)}
    assert len(heads) == 1 and next(iter(heads)).startswith("127.0.0.1:")  # one rendezvous for all
    # Every node is billed (its own span at the offer's price): three times what one node of the same
    # attempt costs (the local provider bills a minute at least, so the spans' small offsets vanish).
    now = time.time()
    one = dataclasses.replace(attempt, nodes=1, node_spans=())
    assert attempt_cost(attempt, now) == pytest.approx(3 * attempt_cost(one, now), rel=0.02)
    assert all(s.price_per_hour == attempt.price_per_hour for s in attempt.node_spans)
    # What the gang held besides its processes (its head port) is released once it ended.
    assert not list((orch_home / "local").glob("gangs/*.json"))


def test_one_reclaimed_node_stops_the_whole_gang_which_is_relaunched(
        tmp_path: Path, orch_home: Path, sqlite_store: Store) -> None:
    """Rank 2 alone is reclaimed (its own notice, as clouds take nodes one at a time): every rank hears
    the notice, the gang ends as preempted, not failed, and a new gang of three runs to the end."""
    job_id = submit(sqlite_store, _gang_job(tmp_path, 3, first=120.0, later=1.0), orch_home)
    r = reconciler(sqlite_store, orch_home)
    run_until(r, lambda: _ran(tmp_path, 0, 3), timeout=60)
    (first,) = sqlite_store.attempts(job_id)
    reclaim_node(orch_home, first.id, 2)
    run_until(r, lambda: sqlite_store.tasks(job_id)[0].state.terminal, timeout=90)

    assert sqlite_store.tasks(job_id)[0].state is TaskState.SUCCEEDED
    attempts = sqlite_store.attempts(job_id)
    assert [a.outcome for a in attempts] == [Outcome.PREEMPTED, Outcome.SUCCEEDED]
    assert all(a.nodes == 3 and len(a.node_spans) == 3 for a in attempts)
    # The other ranks heard of rank 2's notice (through the gang's notice file) and stopped.
    assert (tmp_path / "term-0-0").exists() and (tmp_path / "term-0-1").exists()
    assert _ran(tmp_path, 1, 3)
    notices = [e for e in sqlite_store.events(job_id) if e.kind == "notice"]
    assert len(notices) == 1 and notices[0].attempt_id == first.id
    # Nothing of the first gang runs on: every node's span ended by the attempt's end at the latest.
    assert all(not i.alive for i in r.providers["local"].instances() if i.attempt_id == first.id)
