"""The code that runs inside a job, beside or within the user's process: the agent (`python -m
orchestrator.job.agent`: heartbeats, notices, the end of the attempt), notice forwarding, the
checkpoint SDK and storage, and the campaign worker SDK (`from orchestrator.job import worker`).

It imports nothing of the control plane (no store, loop, core or CLI, no SQLAlchemy, no Kubernetes
client): an import-linter contract holds it, so a job image needs only this package and its storage
SDK. What the control plane and the job agree on is defined here and read by both: the checkpoint
manifest and heartbeat, the item records a worker leases, the items file's formats. A worker that
reaches orch's own database (local jobs) gets that source from the installed control plane through
the `orch.item_sources` entry point, never by importing it.
"""
