"""A gang on the local provider: one process per rank under orch's own agent, all or nothing."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from orchestrator.cli.wiring import AGENT_COMMAND
from providers.base import launch_nodes
from providers.local.gang import node_instance_id
from tests import local_support
from tests.local_support import make, request, wait_for
from vocab import CapacityError, Market, TransientError

# The shared fixture, bound here so pytest finds it for this module's tests.
home = local_support.home

# Writes the gang variables it sees to <workdir>/rank-<ORCH_NODE_RANK>.json, then sleeps.
RECORD_ENV = (sys.executable, "-c",
              "import json, os, time\n"
              "keys = ('ORCH_NODE_RANK', 'ORCH_NUM_NODES', 'NODE_RANK', 'NNODES', 'WORLD_SIZE', 'MASTER_ADDR',"
              " 'MASTER_PORT')\n"
              "open('rank-%s.json' % os.environ['ORCH_NODE_RANK'], 'w').write(json.dumps({k: os.environ[k]"
              " for k in keys}))\n"
              "time.sleep(60)\n")


def test_every_rank_runs_with_the_same_head_and_its_own_rank(home: Path, tmp_path: Path) -> None:
    provider = make(home, list(AGENT_COMMAND))
    req = dataclasses.replace(request(provider, RECORD_ENV, workdir=str(tmp_path)), nodes=3)
    gang = launch_nodes(provider, req)
    try:
        assert [i.node_rank for i in gang] == [0, 1, 2]
        assert gang[0].instance_id == node_instance_id("att-1", 0) != gang[1].instance_id
        wait_for(lambda: all((tmp_path / f"rank-{r}.json").exists() for r in range(3)), timeout=30)
        seen = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(3)]
        port = seen[0]["MASTER_PORT"]
        assert port != "29500" and int(port) > 0  # a port free on this machine, not torchrun's default
        for rank, env in enumerate(seen):
            assert env == {"ORCH_NODE_RANK": str(rank), "ORCH_NUM_NODES": "3", "NODE_RANK": str(rank),
                           "NNODES": "3", "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        assert provider.release_gang(req) is False  # its nodes still run
    finally:
        for inst in gang:
            provider.terminate(inst)
    assert provider.release_gang(req) is True
    assert not (home / "gangs").exists() or list((home / "gangs").iterdir()) == []


def test_a_node_that_cannot_start_rolls_back_the_ranks_before_it(home: Path, tmp_path: Path) -> None:
    provider = make(home, list(AGENT_COMMAND))
    req = dataclasses.replace(request(provider), nodes=3)
    # Rank 2's instance folder cannot be made (a file stands in its place): a disk error mid-gang.
    (home / "instances" / node_instance_id("att-1", 2)).write_text("in the way")
    with pytest.raises(TransientError):
        launch_nodes(provider, req)
    listed = provider.instances()
    assert sorted(i.node_rank for i in listed) == [0, 1]
    assert not any(i.alive for i in listed), "a rolled-back gang left a node running"


def test_no_spot_capacity_starts_no_node(home: Path, tmp_path: Path) -> None:
    trace = tmp_path / "none.json"
    trace.write_text(json.dumps({"metadata": {"gap_seconds": 3600}, "data": [0]}))
    provider = make(home, list(AGENT_COMMAND), availability="trace", trace=str(trace))
    req = dataclasses.replace(request(provider, market=Market.SPOT), nodes=2)
    with pytest.raises(CapacityError):
        launch_nodes(provider, req)
    assert provider.instances() == []
