"""Kubernetes provider: one pod per attempt on spot or on-demand node pools.

Import `providers.kubernetes.provider` for the adapter; the package itself imports nothing so that a
missing `orch[kubernetes]` extra costs nothing until Kubernetes is used."""
