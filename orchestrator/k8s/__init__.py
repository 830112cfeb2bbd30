"""orch as a Kubernetes controller: the GpuJob resource, its controller, and their seams.

Import from the modules (`orchestrator.k8s.run.run_controller`, `orchestrator.k8s.backend.JobBackend`,
...); this package imports nothing itself, so `python -m orchestrator.k8s.crd` runs cleanly.
See docs/kubernetes.md.
"""
