"""Checkpoints for orch jobs: the job-side SDK and the readers the control plane uses.

Importing this package loads no cloud SDK: `s3://` and `gs://` backends are imported the first time
such a URI is opened, so a job on a laptop or a `file://` share needs neither boto3 nor google-cloud.
"""

from orchestrator.job.checkpoint.heartbeat import HEARTBEAT_KEY, Heartbeat, read_heartbeat, write_heartbeat
from orchestrator.job.checkpoint.manifest import (
    CorruptCheckpoint,
    FileEntry,
    Manifest,
    newest_manifest,
)
from orchestrator.job.checkpoint.sdk import (
    INTERRUPTED_EXIT_CODE,
    CheckpointConfigError,
    Checkpointer,
    LoadedCheckpoint,
)
from orchestrator.job.checkpoint.storage import ObjectNotFound, Storage, StorageError, open_storage

__all__ = [
    "HEARTBEAT_KEY",
    "INTERRUPTED_EXIT_CODE",
    "CheckpointConfigError",
    "Checkpointer",
    "CorruptCheckpoint",
    "FileEntry",
    "Heartbeat",
    "LoadedCheckpoint",
    "Manifest",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "newest_manifest",
    "open_storage",
    "read_heartbeat",
    "write_heartbeat",
]
