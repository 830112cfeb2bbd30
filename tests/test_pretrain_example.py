"""The pretrain example's guarantee: a gang stopped by one node's notice, or by a lost node, resumes from
rank 0's checkpoint and ends with the parameters of an uninterrupted run, bit for bit, on any gang size.

Ranks run as plain subprocesses with the environment orch's local provider and agent give them
(`vocab.gang_environment`, MASTER_ADDR 127.0.0.1, a file:// checkpoint URI); the end-to-end run
through the reconcile loop is the loop's own test. Every wait polls a condition with a generous
deadline: nothing here assumes how fast a loaded machine runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from orchestrator.job.checkpoint import newest_manifest, open_storage, read_heartbeat
from orchestrator.job.checkpoint.rendezvous import read_gang_notice
from orchestrator.job_files import load_spec
from vocab import gang_environment

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pretrain"
STEPS = 100  # at 0.1 s a step, the interrupted runs leave ~9 s to send the signal in
TIMEOUT = 60.0  # per wait; a healthy run needs a few seconds
GANG_VARS = ("NODE_RANK", "NNODES", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

Ranks = list[subprocess.Popen[bytes]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env(ckpt: Path, rank: int, nodes: int, port: int, attempt: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_") and k not in GANG_VARS}
    env.update(PYTHONPATH=str(REPO), ORCH_JOB_ID="pretrain", ORCH_TASK_ID="pretrain-0", ORCH_ATTEMPT=str(attempt),
               ORCH_ATTEMPT_ID=f"pretrain-0-a{attempt}", ORCH_CHECKPOINT_URI=ckpt.as_uri(), ORCH_MARKET="spot",
               ORCH_INTERRUPT_SIGNAL="SIGTERM", MASTER_ADDR="127.0.0.1",
               **gang_environment(rank, nodes, 1, port))
    if rank == 0:  # the agent gives every rank its own; only rank 0's is read (the gang's heartbeat)
        env["ORCH_PROGRESS_FILE"] = str(ckpt.parent / f"progress-{ckpt.name}.json")
    return env


def launch(tmp: Path, nodes: int, *, attempt: int = 0, step_seconds: float = 0.0, ckpt: Path | None = None,
           extra: Sequence[str] = (), only: Sequence[int] | None = None,
           own_ckpt: Mapping[int, Path] | None = None) -> Ranks:
    """One gang (or the ranks `only` of it), started last rank first: the members usually find no head yet
    and must retry. Every rank shares `ckpt` (tmp/ckpt), as the nodes of a gang share the task's URI."""
    port = free_port()
    argv = [sys.executable, str(EXAMPLE / "train.py"), "--steps", str(STEPS), "--out", str(tmp / "params.json"),
            "--step-seconds", str(step_seconds), "--checkpoint-every", "5", "--connect-timeout", "30", *extra]
    procs = {}
    for rank in reversed(range(nodes) if only is None else only):
        where = (own_ckpt or {}).get(rank) or ckpt or tmp / "ckpt"
        procs[rank] = subprocess.Popen(argv, env=rank_env(where, rank, nodes, port, attempt), cwd=tmp,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return [procs[rank] for rank in sorted(procs)]


def finish(ranks: Ranks) -> list[tuple[int, str]]:
    """Every rank's exit status and stderr; a rank still running after TIMEOUT is a hang: killed, failed."""
    results = []
    try:
        for proc in ranks:
            _, err = proc.communicate(timeout=TIMEOUT)
            results.append((proc.returncode, err.decode()))
    finally:
        for proc in ranks:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def committed_step(ckpt: Path) -> int:
    manifest = newest_manifest(open_storage(ckpt.as_uri()))
    return -1 if manifest is None else int(manifest.metadata["step"])


def reported_step(ckpt: Path) -> int:
    try:
        return round(json.loads((ckpt.parent / f"progress-{ckpt.name}.json").read_text())["progress"] * STEPS)
    except (OSError, ValueError, KeyError):
        return -1


def wait_until(condition: Callable[[], bool], ranks: Ranks) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert all(p.poll() is None for p in ranks), f"a rank ended early: {finish(ranks)}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def run_to_end(tmp: Path, nodes: int, *, attempt: int = 0, ckpt: Path | None = None) -> bytes:
    results = finish(launch(tmp, nodes, attempt=attempt, ckpt=ckpt))
    assert [code for code, _ in results] == [0] * nodes, results
    return (tmp / "params.json").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return run_to_end(tmp_path_factory.mktemp("clean"), 4)


def test_the_result_does_not_depend_on_the_gang_size(tmp_path: Path, reference: bytes) -> None:
    doc = json.loads(reference)
    assert doc["steps"] == STEPS and len(doc["params"]) == 8
    (tmp_path / "two").mkdir()
    assert run_to_end(tmp_path / "two", 2) == reference
    assert run_to_end(tmp_path, 1) == reference


def test_one_nodes_notice_stops_the_gang_and_it_resumes_exactly(tmp_path: Path, reference: bytes) -> None:
    ranks = launch(tmp_path, 4, step_seconds=0.1)
    wait_until(lambda: committed_step(tmp_path / "ckpt") >= 5, ranks)
    ranks[2].send_signal(signal.SIGTERM)  # only the reclaimed node's job gets the notice at first
    results = finish(ranks)
    assert [code for code, _ in results] == [143] * 4, results
    stopped = committed_step(tmp_path / "ckpt")
    assert 5 <= stopped < STEPS
    assert all(f"stopped after step {stopped} " in err for _, err in results), results
    assert not (tmp_path / "params.json").exists()
    shutil.copytree(tmp_path / "ckpt", tmp_path / "ckpt-elastic")

    results = finish(launch(tmp_path, 4, attempt=1))
    assert [code for code, _ in results] == [0] * 4, results
    assert all(f"resuming at step {stopped} " in err for _, err in results), results
    assert (tmp_path / "params.json").read_bytes() == reference
    # An elastic gang goes on with fewer nodes from the same checkpoint, to the same result.
    (tmp_path / "params.json").unlink()
    assert run_to_end(tmp_path, 2, attempt=1, ckpt=tmp_path / "ckpt-elastic") == reference


def under_agents(tmp: Path, nodes: int, attempt: int, step_seconds: float) -> Ranks:
    """The ranks as the local provider starts them: each under orch's agent, with its own notice file."""
    port = free_port()
    procs = []
    for rank in range(nodes):
        node = f"{attempt}-{rank}"  # each attempt's node has its own files, as each local instance does
        agent = [sys.executable, "-m", "orchestrator.job.agent", "--notice-file", str(tmp / f"notice-{node}.json"),
                 "--status-file", str(tmp / f"status-{node}.json"), "--grace", "30",
                 "--poll-interval", "0.05", "--heartbeat-interval", "0.2", "--"]
        job = [sys.executable, str(EXAMPLE / "train.py"), "--steps", str(STEPS), "--out", str(tmp / "params.json"),
               "--step-seconds", str(step_seconds), "--checkpoint-every", "5"]
        procs.append(subprocess.Popen([*agent, *job], env=rank_env(tmp / "ckpt", rank, nodes, port, attempt),
                                      cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return procs


def test_under_the_agent_a_notice_file_stops_the_gang_and_it_resumes_exactly(tmp_path: Path,
                                                                              reference: bytes) -> None:
    ranks = under_agents(tmp_path, 4, 0, 0.1)
    wait_until(lambda: committed_step(tmp_path / "ckpt") >= 5, ranks)
    notice = {"kind": "interruption", "deadline": time.time() + 30}
    (tmp_path / "notice-0-3.json").write_text(json.dumps(notice))  # what the local market writes for one node
    results = finish(ranks)
    assert [code for code, _ in results] == [143] * 4, results
    store = open_storage((tmp_path / "ckpt").as_uri())
    heartbeat, manifest = read_heartbeat(store), newest_manifest(store)  # rank 0's heartbeat is the gang's
    assert heartbeat is not None and manifest is not None and heartbeat.exit_code == 143, heartbeat
    assert heartbeat.newest_checkpoint == manifest.seq and manifest.attempt == 0
    assert read_gang_notice(store, "pretrain-0-a0") is not None  # rank 3's agent told the gang
    results = finish(under_agents(tmp_path, 4, 1, 0.0))
    assert [code for code, _ in results] == [0] * 4, results
    assert (tmp_path / "params.json").read_bytes() == reference


def test_a_node_lost_without_notice_stops_the_gang_within_seconds(tmp_path: Path, reference: bytes) -> None:
    # No periodic checkpoint: the one found afterwards is the one rank 0 saved when it lost its peer.
    ranks = launch(tmp_path, 4, step_seconds=0.1, extra=["--peer-timeout", "120", "--checkpoint-every", "1000"])
    wait_until(lambda: reported_step(tmp_path / "ckpt") >= 8, ranks)
    ranks[3].kill()
    started = time.monotonic()
    results = finish(ranks[:3])
    elapsed = time.monotonic() - started
    assert [code for code, _ in results] == [75] * 3, results
    assert elapsed < 30, f"took {elapsed:.1f} s: the ranks waited for a timeout instead of seeing the loss"
    lost = committed_step(tmp_path / "ckpt")  # rank 0 saved the last step it had completed
    assert lost >= 8 and f"lost the gang at step {lost}:" in results[0][1], results
    finish(ranks[3:])
    assert run_to_end(tmp_path, 1, attempt=1) == reference


def test_a_hung_peer_is_given_up_after_the_peer_timeout(tmp_path: Path) -> None:
    ranks = launch(tmp_path, 3, step_seconds=0.1, extra=["--peer-timeout", "3"])
    wait_until(lambda: committed_step(tmp_path / "ckpt") >= 5, ranks)
    ranks[1].send_signal(signal.SIGSTOP)
    try:
        results = finish([ranks[0], ranks[2]])
    finally:
        ranks[1].send_signal(signal.SIGCONT)
    assert [code for code, _ in results] == [75, 75], results
    assert "no answer within 3 s" in results[0][1], results
    assert finish(ranks[1:2])[0][0] == 75  # woken, it finds the head gone


def test_a_member_without_a_head_gives_up(tmp_path: Path) -> None:
    code, err = finish(launch(tmp_path, 2, only=[1], extra=["--connect-timeout", "1"]))[0]
    assert code == 75 and "cannot reach the head at 127.0.0.1:" in err, err


def test_ranks_that_resumed_from_different_states_refuse_to_train(tmp_path: Path) -> None:
    run_to_end(tmp_path, 1)  # tmp/ckpt now holds step STEPS; rank 1 below reads an empty prefix instead
    results = finish(launch(tmp_path, 2, own_ckpt={1: tmp_path / "elsewhere"}))
    assert [code for code, _ in results] == [2, 2], results
    assert f"rank 1 has step 0, rank 0 has step {STEPS}" in results[1][1], results


def test_the_job_file_is_a_four_node_gang_that_runs_train_py() -> None:
    spec = load_spec(EXAMPLE / "job.toml", submitted_at=time.time())
    assert spec.gang.nodes == 4 and spec.command[:2] == ("python3", "train.py"), spec
    assert (EXAMPLE / spec.command[1]).is_file()
