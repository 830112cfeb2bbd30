"""The fold campaign example: workers interrupted and racing, every sequence's result exactly once.

The workers are started here by hand, with the environment a local campaign worker gets
(`worker_environment`), to interrupt and race them at chosen moments: the worker's half. The loop's
half, `orch submit examples/fold/campaign.toml --wait` end to end, is tests/test_campaign_loop.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from orchestrator.cli.main import main
from orchestrator.cli.wiring import open_store
from orchestrator.job.checkpoint import INTERRUPTED_EXIT_CODE
from orchestrator.store.item_source import worker_environment
from orchestrator.store.items import ItemStore

REPO = Path(__file__).resolve().parents[1]
FOLD = REPO / "examples" / "fold"


def _fold_module() -> ModuleType:
    """examples/fold/fold.py, loaded by path (the example is not a package)."""
    spec = importlib.util.spec_from_file_location("fold_example", FOLD / "fold.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(job_id: str, attempt: str, url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(PYTHONPATH=str(REPO), ORCH_JOB_ID=job_id, ORCH_ATTEMPT_ID=attempt,
               **worker_environment(url, provider="local", gpu_memory_gb=16.0))
    return subprocess.Popen([sys.executable, str(FOLD / "fold_campaign.py"), "--seconds-per-seq", "0.01",
                             "--rounds", "50"], env=env, cwd=FOLD)


def test_interrupted_and_racing_workers_fold_every_sequence_once(
        orch_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", str(FOLD / "campaign.toml"), "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]
    store = open_store()
    items = ItemStore(store.engine)
    url = store.engine.url.render_as_string(hide_password=False)
    assert items.counts(job_id).queued == 200 and len(store.tasks(job_id)) == 4

    first = worker(job_id, "attempt-1", url)
    deadline = time.monotonic() + 60
    while items.counts(job_id).done < 10:
        assert first.poll() is None and time.monotonic() < deadline, "the first worker made no progress"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # the agent's signal on a reclamation notice
    assert first.wait(timeout=60) == INTERRUPTED_EXIT_CODE
    stopped = items.counts(job_id)
    assert stopped.leased == 0 and 10 <= stopped.done < 200

    rest = [worker(job_id, f"attempt-{i}", url) for i in range(2, 5)]
    assert [p.wait(timeout=120) for p in rest] == [0, 0, 0]

    assert main(["results", job_id, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    example = _fold_module()
    records = example.read_fasta(FOLD / "campaign.fasta")
    assert [r["index"] for r in rows] == list(range(200))
    for row, (name, seq) in zip(rows, records, strict=True):
        _, length, score, plddt = example.fold(name, seq, 50).split("\t")
        assert row["result"] == {"id": name, "length": int(length), "score": float(score), "plddt": float(plddt)}
