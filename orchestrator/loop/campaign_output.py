"""A finished campaign's results, written once to its `[array] output` URI as JSON lines in item order.

The store keeps every result (`orch results` reads them at any time); `output` is the copy a user
asked to find next to their data. It goes through checkpoint storage (file://, s3://, gs://), so the
credentials are the providers' standard chains as for checkpoints, and it is written to a temporary
file first, then put whole: a reader never sees half a file. A failure is recorded on the job and
does not hold the campaign open: its results stay in the store.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from orchestrator.job.checkpoint.storage import StorageError, open_storage
from orchestrator.store.items import ItemStore


def split_uri(uri: str) -> tuple[str, str]:
    """`file:///data/run/results.jsonl` -> (`file:///data/run`, `results.jsonl`): a storage root and a key."""
    scheme, sep, rest = uri.partition("://")
    head, _, name = rest.rpartition("/")
    if not sep or not name or not head:
        raise StorageError(f"output {uri!r} names no file: give a URI ending in a file name "
                           "(file:///dir/results.jsonl, s3://bucket/prefix/results.jsonl)")
    return f"{scheme}://{head}", name


def write_results(items: ItemStore, job_id: str, uri: str) -> int:
    """Write every result of `job_id` to `uri`; returns how many. Raises `StorageError`."""
    root, name = split_uri(uri)
    storage = open_storage(root)
    n = 0
    with tempfile.TemporaryDirectory(prefix="orch-output-") as tmp:
        path = Path(tmp) / name
        with path.open("w", encoding="utf-8") as out:
            for r in items.results(job_id):
                out.write(json.dumps(r.to_record()) + "\n")
                n += 1
        storage.put_file(name, path)
    return n
