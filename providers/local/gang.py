"""What a local gang needs besides its processes: instance ids per rank and the head's port.

A gang on this machine is one process session per rank, each an ordinary local instance (its own
notice and status files), tagged with its rank. The head is 127.0.0.1; its port is chosen free when
the gang is first launched and recorded under the home, so a repeated launch of the same attempt (a
crash between two ranks) gives every rank the same port.
"""

from __future__ import annotations

import socket
from pathlib import Path

from providers.local.records import instance_id_for, read_json, write_json

# The spec's limit; processes on one machine, so mostly for examples and tests.
MAX_GANG_NODES = 128


def node_instance_id(attempt_id: str, rank: int) -> str:
    """Rank 0 has the id a single-node attempt would have; the others a suffix of their rank."""
    base = instance_id_for(attempt_id)
    return base if rank == 0 else f"{base}-r{rank}"


def _gang_file(home: Path, attempt_id: str) -> Path:
    return home / "gangs" / f"{instance_id_for(attempt_id)}.json"


def gang_port(home: Path, attempt_id: str) -> int:
    """The gang's head port: recorded, or a port free now (call under the home's launch lock)."""
    path = _gang_file(home, attempt_id)
    known = read_json(path)
    if isinstance(known, dict) and isinstance(known.get("port"), int):
        return int(known["port"])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"attempt_id": attempt_id, "port": port})
    return port


def forget_gang(home: Path, attempt_id: str) -> None:
    _gang_file(home, attempt_id).unlink(missing_ok=True)
