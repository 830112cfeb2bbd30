"""A gang's job side: the environment contract, the rendezvous through checkpoint storage, and a
notice for one node reaching every rank, with real agents and real child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.job import agent
from orchestrator.job.checkpoint import open_storage
from orchestrator.job.checkpoint.rendezvous import (
    GangNode,
    RendezvousError,
    forward_gang_notice,
    gang_node,
    head_key,
    read_gang_notice,
    read_head,
    rendezvous,
)
from orchestrator.job.notices import GceNoticeSource, ImdsNoticeSource, NoticeSourceError
from providers.base import gang_environment
from vocab import LaunchRequest, Market, Offer

REPO = Path(__file__).resolve().parents[1]


def offer(gpu_count: int = 8) -> Offer:
    return Offer("local", "local", "local-a", "p4d.24xlarge", Market.SPOT, 10.0, "A100", gpu_count, 40.0,
                 "ampere", 32.0)


def request(nodes: int) -> LaunchRequest:
    return LaunchRequest("j", "j-0", "att-1", 2, offer(), ("true",), {"MASTER_PORT": "1", "A": "b"}, "file:///x",
                         30.0, nodes=nodes, master_port=29600)


def test_a_gang_node_gets_its_rank_and_torchruns_variables() -> None:
    env = request(4).environment(rank=3)
    assert {k: env[k] for k in ("ORCH_NODE_RANK", "ORCH_NUM_NODES", "NODE_RANK", "NNODES", "WORLD_SIZE",
                                "MASTER_PORT", "ORCH_GPUS_PER_NODE")} == {
        "ORCH_NODE_RANK": "3", "ORCH_NUM_NODES": "4", "NODE_RANK": "3", "NNODES": "4", "WORLD_SIZE": "32",
        "MASTER_PORT": "29600", "ORCH_GPUS_PER_NODE": "8"}
    assert env["A"] == "b" and "MASTER_ADDR" not in env  # the head's address only exists once it runs
    template = request(4).environment(rank=None)  # one boot template for every node: the agent asks
    assert "ORCH_NODE_RANK" not in template and template["NNODES"] == "4"
    single = request(1).environment()
    assert "ORCH_NUM_NODES" not in single and single["MASTER_PORT"] == "1"  # a single node: the job's own
    with pytest.raises(ValueError, match="rank 4 is outside a gang of 4"):
        gang_environment(4, 4, 8, 29500)


def test_gang_node_reads_and_refuses_its_environment() -> None:
    assert gang_node({"ORCH_NUM_NODES": "1"}) is None
    env = {"ORCH_NUM_NODES": "2", "ORCH_NODE_RANK": "1", "ORCH_ATTEMPT_ID": "a1", "MASTER_PORT": "1234"}
    assert gang_node(env) == GangNode("a1", 1, 2, 1234)
    with pytest.raises(ValueError, match="ORCH_NODE_RANK=2 is outside a gang of 2"):
        gang_node({**env, "ORCH_NODE_RANK": "2"})
    with pytest.raises(ValueError, match="ORCH_NUM_NODES must be an integer"):
        gang_node({**env, "ORCH_NUM_NODES": "two"})
    with pytest.raises(ValueError, match="cannot name a storage folder"):
        gang_node({**env, "ORCH_ATTEMPT_ID": "../x"})


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_rendezvous_through_storage(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "ck").as_uri())
    clock = FakeTime()
    worker = GangNode("att-7", 1, 2, 29500)
    with pytest.raises(RendezvousError, match="rank 1: no head address after 30 s"):
        rendezvous(storage, worker, {}, wait_s=30, poll_s=1, monotonic=clock.monotonic, sleep=clock.sleep)
    assert clock.t == 30
    head = GangNode("att-7", 0, 2, 29500)
    assert rendezvous(storage, head, {"ORCH_NODE_ADDR": "10.0.0.5"}) == {"MASTER_ADDR": "10.0.0.5",
                                                                          "MASTER_PORT": "29500"}
    assert read_head(storage, "att-7") == ("10.0.0.5", 29500)
    assert rendezvous(storage, worker, {}) == {"MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29500"}
    assert read_head(storage, "att-8") is None  # the next attempt never reads this head
    storage.put_bytes(head_key("att-9"), b"{not json")
    with pytest.raises(RendezvousError, match="not JSON"):
        read_head(storage, "att-9")
    # A head the provider already knows (local: 127.0.0.1) needs no storage round trip.
    preset = rendezvous(storage, GangNode("att-10", 1, 2, 4000), {"MASTER_ADDR": "127.0.0.1"})
    assert preset == {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "4000"} and read_head(storage, "att-10") is None


def test_forwarded_notice_keeps_the_nearest_deadline(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "ck").as_uri())
    assert read_gang_notice(storage, "a") is None
    forward_gang_notice(storage, "a", at=100.0, deadline=220.0)
    forward_gang_notice(storage, "a", at=110.0, deadline=400.0)  # later: the gang already acts on 220
    notice = read_gang_notice(storage, "a")
    assert notice is not None and notice.deadline == 220.0 and notice.at == 100.0
    forward_gang_notice(storage, "a", at=120.0, deadline=150.0, source="rank 2")
    notice = read_gang_notice(storage, "a")
    assert notice is not None and notice.deadline == 150.0 and notice.source == "rank 2"


# -- real agents ----------------------------------------------------------------------------------

# The job: records its gang variables, then waits for the interruption signal and exits 0 on it.
CHILD = """
import json, os, signal, sys, time
from pathlib import Path
keys = ("ORCH_NODE_RANK", "ORCH_NUM_NODES", "NODE_RANK", "NNODES", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
Path(sys.argv[1]).write_text(json.dumps({k: os.environ.get(k) for k in keys}))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(20)
sys.exit(99)
"""


def gang_agent(tmp: Path, rank: int | None, uri: str, *extra: str) -> subprocess.Popen[bytes]:
    script = tmp / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "MASTER_"))}
    env.update(request(2).environment(rank=rank), PYTHONPATH=str(REPO), ORCH_CHECKPOINT_URI=uri,
               ORCH_NODE_ADDR="10.1.2.3")
    marker = tmp / f"env-{rank}.json"
    argv = [sys.executable, "-m", "orchestrator.job.agent", "--poll-interval", "0.05", "--heartbeat-interval", "0.1",
            "--grace", "5", *extra, "--", sys.executable, str(script), str(marker)]
    return subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE)


def wait_file(path: Path, timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    time.sleep(0.05)
    return dict(json.loads(path.read_text()))


def test_two_agents_rendezvous_and_a_notice_for_one_stops_both(tmp_path: Path) -> None:
    uri = (tmp_path / "ck").as_uri()
    worker = gang_agent(tmp_path, 1, uri, "--notice-file", str(tmp_path / "notice-1.json"))
    try:
        time.sleep(0.5)
        assert not (tmp_path / "env-1.json").exists()  # rank 1 waits for its head before starting the job
        head = gang_agent(tmp_path, 0, uri)
        try:
            env0, env1 = wait_file(tmp_path / "env-0.json"), wait_file(tmp_path / "env-1.json")
            assert env0 == {"ORCH_NODE_RANK": "0", "ORCH_NUM_NODES": "2", "NODE_RANK": "0", "NNODES": "2",
                            "WORLD_SIZE": "16", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29600"}
            assert env1 == {**env0, "ORCH_NODE_RANK": "1", "NODE_RANK": "1"}
            # Rank 1's instance is reclaimed: its notice reaches rank 0 through the gang's file.
            (tmp_path / "notice-1.json").write_text(json.dumps({"kind": "interruption",
                                                                "deadline": time.time() + 60}))
            assert worker.wait(timeout=30) == 0
            assert head.wait(timeout=30) == 0
            assert b"interruption notice from gang:att-1" in (head.stderr.read() if head.stderr else b"")
        finally:
            head.kill()
            head.wait()
    finally:
        worker.kill()
        worker.wait()
    storage = open_storage(uri)
    assert storage.list("_orch/heartbeat.json") == ["_orch/heartbeat.json"]  # rank 0's only
    notice = read_gang_notice(storage, "att-1")
    assert notice is not None and notice.source.startswith("rank 1: interruption notice from file:")


def test_a_node_whose_head_never_comes_does_not_start_the_job(tmp_path: Path) -> None:
    worker = gang_agent(tmp_path, 1, (tmp_path / "ck").as_uri(), "--rendezvous-timeout", "0.3",
                        "--status-file", str(tmp_path / "status.json"))
    assert worker.wait(timeout=30) == agent.RENDEZVOUS_FAILED
    assert not (tmp_path / "env-1.json").exists()
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["started"] is False and status["exit_code"] == agent.RENDEZVOUS_FAILED


# -- ranks from instance metadata (EC2 launch index, GCE instance name) ----------------------------


def metadata_handler(launch_index: str, gce_name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def reply(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            self.reply(200, b"tok")

        def do_GET(self) -> None:
            if self.path == "/latest/meta-data/ami-launch-index" and self.headers.get("X-aws-ec2-metadata-token"):
                return self.reply(200, launch_index.encode())
            if self.path == "/computeMetadata/v1/instance/name":
                return self.reply(200, gce_name.encode())
            self.reply(404)

    return Handler


@pytest.fixture
def metadata_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), metadata_handler("3", "orch-abc-r5"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_rank_from_the_instance_metadata(metadata_url: str, tmp_path: Path) -> None:
    assert ImdsNoticeSource(metadata_url).node_rank() == 3
    assert GceNoticeSource(metadata_url).node_rank() == 5
    assert agent.node_rank([ImdsNoticeSource(metadata_url)]) == 3
    with pytest.raises(RendezvousError, match="ORCH_NODE_RANK is not set"):
        agent.node_rank([])
    server = ThreadingHTTPServer(("127.0.0.1", 0), metadata_handler("x", "plain-vm"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(NoticeSourceError, match="no ami-launch-index"):
            ImdsNoticeSource(url).node_rank()
        with pytest.raises(NoticeSourceError, match="carries no gang rank"):
            GceNoticeSource(url).node_rank()
    finally:
        server.shutdown()
        server.server_close()
    # The agent fills in the rank before the rendezvous: an EC2 node of a template without one.
    options = agent.AgentOptions(command=("true",), imds=metadata_url)
    sup = agent.Supervisor(options, agent.notice_sources(options))
    env = {**request(4).environment(rank=None), "ORCH_CHECKPOINT_URI": (tmp_path / "ck").as_uri(),
           "MASTER_ADDR": "10.9.9.9"}
    out, node = agent.join_gang(sup, env)
    assert node == GangNode("att-1", 3, 4, 29600)
    assert out["ORCH_NODE_RANK"] == out["NODE_RANK"] == "3" and out["MASTER_ADDR"] == "10.9.9.9"
