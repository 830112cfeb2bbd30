"""`orch controller --kubernetes` and `orch submit --kubernetes`: the CLI's Kubernetes entry points.

Imports of the controller, the store, the reconciler and the `kubernetes` client happen inside the
functions: `orch` imports this module for its parser, and `orch --help` must not pay for them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cli.errors import CliError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from orchestrator.core.spec import JobSpec
    from providers.base import Provider
    from vocab import Offer


def run_kubernetes_controller(args: argparse.Namespace) -> int:
    from orchestrator.cli.wiring import build_providers, controller_executor, open_store
    from orchestrator.core.policy import has_policy
    from orchestrator.k8s.config import (
        controller_settings_from_env,
        item_service_settings_from_env,
        provider_settings_from_env,
    )
    from orchestrator.k8s.run import run_controller
    from orchestrator.k8s.store_backend import StoreBackend
    from orchestrator.loop.reconciler import Reconciler
    from orchestrator.store import orch_home
    from providers.kubernetes.provider import KubernetesProvider
    from vocab import SystemClock

    clock = SystemClock()
    api = cluster_api_client()
    pods = provider_settings_from_env(os.environ)
    providers: dict[str, Provider] = {"kubernetes": KubernetesProvider(api, pods, clock=clock)}
    extra = [n.strip() for n in args.providers.split(",") if n.strip() and n.strip() not in ("kubernetes", "local")]
    providers.update(build_providers(extra, clock=clock))
    store = open_store()
    items = item_service_settings_from_env(os.environ)  # campaign pods reach their items through it
    reconciler = Reconciler(store, providers, clock, tick_seconds=args.tick, executor=controller_executor(args),
                            item_endpoint=items.endpoint() if items else None)

    def offers(spec: JobSpec, job_id: str) -> list[Offer]:
        out: list[Offer] = []
        for name in spec.placement.providers:
            if name in providers:
                out.extend(providers[name].offers(spec.resources, spec.placement.regions, job_id=job_id,
                                                  options=spec.placement.options.get(name)))
        return out

    root = os.environ.get("ORCH_CHECKPOINT_ROOT") or (orch_home() / "checkpoints").as_uri()
    backend = StoreBackend(store, reconciler, checkpoint_root=root, offers=offers)
    settings = controller_settings_from_env(os.environ, health_port=args.health_port, lease_name=args.lease_name)
    try:
        return run_controller(backend, namespace=args.namespace, api_client=api, settings=settings,
                              policies=has_policy, item_service=items.service(store) if items else None)
    finally:
        store.release_jobs(reconciler.owner)


def cluster_api_client() -> ApiClient:
    """The API client `default_api_client` makes, or a CliError saying how to point orch at a cluster."""
    from orchestrator.k8s.kube import default_api_client

    try:
        return default_api_client()
    except Exception as exc:  # a missing file, bad YAML, no current context: all a setup problem to name
        raise CliError(no_cluster_message(exc)) from None


def no_cluster_message(exc: BaseException) -> str:
    """One line: which kubeconfig was looked for, what was wrong with it, and how to name another."""
    paths = os.environ.get("KUBECONFIG") or "~/.kube/config"
    hint = "set KUBECONFIG to your cluster's kubeconfig file (the one kubectl uses), or run orch in a pod"
    if not any(Path(p).expanduser().is_file() for p in paths.split(os.pathsep) if p):
        return f"no kubeconfig found at {paths} and not running inside a cluster: {hint}"
    return f"cannot use the kubeconfig at {paths}: {' '.join(str(exc).split())}; {hint}"


def submit_gpujob(path: str, namespace: str | None) -> int:
    from orchestrator.core.spec import SpecError
    from orchestrator.k8s.convert import gpujob_from_toml
    from orchestrator.k8s.kube import KubeError, create_gpujob

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
    ns = namespace or os.environ.get("POD_NAMESPACE") or "default"
    manifest = gpujob_from_toml(text, source=path, namespace=ns)
    api = cluster_api_client()
    try:
        created = create_gpujob(api, manifest)
    except KubeError as exc:
        raise CliError(" ".join(str(exc).split())) from None
    meta = created.get("metadata", {})
    print(f"created GpuJob {meta.get('namespace', ns)}/{meta.get('name', '?')}; "
          "watch it with `kubectl get gpujobs -w`")
    return 0
