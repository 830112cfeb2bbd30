"""A campaign GpuJob through the controller: items from a ConfigMap, workers are pods, items over HTTP.

The controller (leader election, informer, sync, the store backend, the real reconciler and the
kubernetes provider) runs against the API-server fake with its item service. A test kubelet plays
the nodes: each pod the provider creates is bound and set running, and its container command (the
real `orch agent` around the user's worker, tests/k8s_campaign_worker.py) runs as a local process
with exactly the pod's environment, so the items flow over HTTP with the pod's own token. One pod
is reclaimed in the middle of the campaign (its processes killed, the pod Failed with a
DisruptionTarget condition); its items go back to the queue and a new pod finishes them. Every item
is done exactly once, and `orch results` lists each once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy import select

from orchestrator.job.item_records import ItemCounts
from orchestrator.k8s.leader import LeaseSettings
from orchestrator.k8s.run import ControllerProcess, ControllerSettings
from orchestrator.k8s.store_backend import StoreBackend
from orchestrator.loop.reconciler import Reconciler
from orchestrator.store import Store
from orchestrator.store.item_service import ItemService
from orchestrator.store.item_source import ItemEndpoint
from orchestrator.store.items import ItemStore
from orchestrator.store.tables import ItemRow
from providers.kubernetes.provider import KubernetesProvider, KubernetesSettings
from tests.kube_fake import KubeFake, now_iso
from tests.test_k8s_controller import CRD, NS, eventually, pods, status
from vocab import SystemClock

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"campaign-test-secret-0123456789"
N = 60


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (the agent and the job it started in a process group of its own)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


class ProcessKubelet:
    """Runs each pod's container command as a local process with the pod's env, and reports it back."""

    def __init__(self, kube: KubeFake) -> None:
        self.kube = kube
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.envs: dict[str, dict[str, str]] = {}
        self.reclaimed: set[str] = set()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ProcessKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for name in list(self.procs):
            self._kill(name, signal.SIGKILL)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with self.lock:
                for pod in pods(self.kube):
                    self._step(pod)

    def _set(self, name: str, phase: str, state: dict[str, Any], **extra: Any) -> None:
        self.kube.update("v1", "pods", NS, name, {"spec": {"nodeName": "n1"}, "status": {
            "phase": phase, **extra, "containerStatuses": [{"name": "job", "image": "img", "imageID": "",
                                                             "ready": phase == "Running", "restartCount": 0,
                                                             "state": state}]}})

    def _step(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase")
        if name not in self.procs and name not in self.reclaimed and not pod["metadata"].get("deletionTimestamp"):
            container = pod["spec"]["containers"][0]
            env = {e["name"]: e["value"] for e in container["env"]}
            self.envs[name] = env
            self.procs[name] = subprocess.Popen(  # the image: orch installed, nothing else of this machine's env
                container["command"], cwd=ROOT, start_new_session=True,
                env={**env, "PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})
            self._set(name, "Running", {"running": {"startedAt": now_iso()}})
            return
        proc = self.procs.get(name)
        if proc is None or phase in ("Succeeded", "Failed"):
            return
        if pod["metadata"].get("deletionTimestamp") and proc.poll() is None:
            self._kill(name, signal.SIGTERM)  # the kubelet stops a deleted pod: SIGTERM, then its grace
        code = proc.poll()
        if code is not None:
            self._set(name, "Succeeded" if code == 0 else "Failed",
                      {"terminated": {"exitCode": code, "startedAt": now_iso(), "finishedAt": now_iso()}})

    def _kill(self, name: str, sig: signal.Signals) -> None:
        proc = self.procs[name]
        for pid in [proc.pid, *_descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig is signal.SIGKILL:
            proc.wait(10)

    def freeze_one_holding(self, store: Store) -> tuple[str, list[int]] | None:
        """Stop (SIGSTOP) a running pod's processes while it holds leased items: (pod, the items' indexes).
        A pod caught between chunks is let go again (None), and the caller tries once more."""
        with self.lock:
            for name, proc in self.procs.items():
                if proc.poll() is not None or name in self.reclaimed:
                    continue
                self._kill(name, signal.SIGSTOP)
                time.sleep(0.3)  # a request already sent (a commit) is answered meanwhile
                with store.engine.connect() as conn:
                    held = sorted(conn.execute(select(ItemRow.index).where(
                        ItemRow.lease_owner == self.envs[name]["ORCH_ATTEMPT_ID"],
                        ItemRow.state == "leased")).scalars())
                if held:
                    return name, held
                self._kill(name, signal.SIGCONT)
        return None

    def reclaim(self, name: str) -> None:
        """The spot node goes: every process of the pod dies at once, the pod fails as disrupted."""
        with self.lock:
            self.reclaimed.add(name)
            self._kill(name, signal.SIGKILL)
            self._set(name, "Failed", {"terminated": {"exitCode": 137, "startedAt": now_iso(),
                                                      "finishedAt": now_iso()}},
                      conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}])


@pytest.fixture
def kube() -> Iterator[KubeFake]:
    fake = KubeFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def controller(kube: KubeFake, store: Store, tmp_path: Path) -> Iterator[ControllerProcess]:
    api = client.ApiClient(client.Configuration(host=kube.url))
    provider = KubernetesProvider(api, KubernetesSettings(
        namespace=NS, instance_types=("p3.2xlarge",), snapshot_ttl_s=0.0,
        agent=(sys.executable, "-m", "orchestrator.job.agent")))
    service = ItemService(store, secret=SECRET, host="127.0.0.1", port=0)
    reconciler = Reconciler(store, {"kubernetes": provider}, SystemClock(), tick_seconds=0.05,
                            item_endpoint=ItemEndpoint(f"http://127.0.0.1:{service.port}", SECRET))
    backend = StoreBackend(store, reconciler, checkpoint_root=(tmp_path / "ckpt").as_uri())
    settings = ControllerSettings(tick_s=0.05, watch_timeout_s=2, relist_s=60.0, health_host="127.0.0.1",
                                  health_port=0, lease=LeaseSettings(name="orch", namespace=NS, duration_s=15,
                                                                     renew_deadline_s=10.0, retry_period_s=0.2))
    proc = ControllerProcess(backend, namespace=NS, api_client=api, identity="replica-a", settings=settings,
                             item_service=service)
    proc.start()
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(proc.run()), daemon=True)
    thread.start()
    yield proc
    proc.shutdown()
    thread.join(10)
    assert codes == [0], "the controller lost its lease (a loaded machine) or crashed"


def test_a_campaign_gpujob_runs_on_pods_over_http_with_a_reclaimed_pod(
        kube: KubeFake, controller: ControllerProcess, store: Store, tmp_path: Path) -> None:
    wins = tmp_path / "wins"
    kube.put("v1", "nodes", {"metadata": {"name": "n1", "labels": {
        "node.kubernetes.io/instance-type": "p3.2xlarge", "topology.kubernetes.io/zone": "z1"}}})
    kube.put("v1", "configmaps", {"metadata": {"name": "squares", "namespace": NS}, "data": {
        "items.jsonl": "".join(json.dumps({"id": f"n{i}", "n": i}) + "\n" for i in range(N))}})
    kube.put(CRD, "gpujobs", {"apiVersion": CRD, "kind": "GpuJob", "metadata": {"name": "squares", "namespace": NS},
                              "spec": {"command": [sys.executable, "-m", "tests.k8s_campaign_worker"],
                                       "env": {"WINS": str(wins)},
                                       "schedule": {"estimated_hours": 1},
                                       "placement": {"providers": ["kubernetes"]},
                                       "array": {"workers": 3, "items_from": {"config_map": "squares",
                                                                              "key": "items.jsonl"}}}})
    kubelet = ProcessKubelet(kube).start()
    try:
        job_id = eventually(lambda: status(kube, "squares").get("jobId"), what="the campaign submitted")
        items = ItemStore(store.engine)
        assert items.counts(job_id).total == N
        eventually(lambda: items.counts(job_id).done >= 8, timeout=60, what="items done over HTTP")
        victim, held = eventually(lambda: kubelet.freeze_one_holding(store), timeout=30,
                                  what="a pod with items in hand")
        kubelet.reclaim(victim)
        eventually(lambda: status(kube, "squares").get("phase") == "Succeeded", timeout=120,
                   what=f"the campaign to finish (status {status(kube, 'squares')}, items {items.counts(job_id)})")
    finally:
        kubelet.stop()

    assert items.counts(job_id) == ItemCounts(done=N)
    # Each worker notes the commits that were *the* result; the reclaimed pod may have died between a
    # commit and its note, so an item missing from the notes must be one the reclaimed pod committed.
    noted = [int(line.split()[0]) for line in wins.read_text().splitlines()]
    assert len(noted) == len(set(noted)), "an item was committed twice"
    results = list(items.results(job_id))
    assert [r.index for r in results] == list(range(N))
    assert all(json.loads(r.result or "null") == {"square": r.index ** 2} for r in results)
    assert [r.key for r in results] == [f"n{i}" for i in range(N)]
    st = status(kube, "squares")
    assert (st["itemsTotal"], st["itemsDone"], st["itemsQuarantined"], st["progressFraction"]) == (N, N, 0, 1.0), st
    assert st["preemptions"] >= 1 and st["attempts"] >= 4, st
    # Each pod had the item service's address and a token of its own, and never the database.
    tokens = {env["ORCH_ITEMS_TOKEN"] for env in kubelet.envs.values()}
    assert len(tokens) == len(kubelet.envs) >= 4
    for env in kubelet.envs.values():
        assert env["ORCH_ITEMS_ENDPOINT"] == f"http://127.0.0.1:{controller.item_service.port}"  # type: ignore[union-attr]
        assert "ORCH_ITEMS_URL" not in env and not any("sqlite" in v or "postgres" in v for v in env.values())
    done_by = {r.index: r.done_by for r in results}
    assert len(set(done_by.values())) >= 2
    # What the reclaimed pod held went back to the queue and was done by other pods.
    victim_attempt = kubelet.envs[victim]["ORCH_ATTEMPT_ID"]
    assert all(done_by[i] == victim_attempt for i in set(range(N)) - set(noted))
    assert held and all(done_by[i] != victim_attempt for i in held)
    assert any(e.kind == "items_returned" for e in store.events(job_id))
    # `orch results` for the campaign, as for a local one.
    out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "results", job_id, "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ORCH_DATABASE_URL": store.engine.url.render_as_string(
                             hide_password=False)})
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["index"] for line in out.stdout.splitlines()] == list(range(N))
