"""Builds the running parts (store, providers, clock) from the environment, for the entry points.

Providers are constructed by explicit factories, each importing its SDK only when called, so
`orch status` never loads boto3 and a missing optional SDK only matters to jobs that use it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.extras import missing_extra
from orchestrator.store import Store, database_url, make_engine, orch_home
from orchestrator.store.engine import ensure_schema
from providers.base import Provider
from vocab import Clock, PermanentError, ProviderError, SystemClock

if TYPE_CHECKING:
    from orchestrator.loop.executor import Executor

AGENT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "orchestrator.job.agent")


def open_store(*, auto_upgrade: bool | None = None) -> Store:
    """The store named by ORCH_DATABASE_URL (else SQLite under ORCH_HOME), at the current schema.

    A new, empty database gets its schema silently, SQLite or PostgreSQL, however many commands
    open it at once (the schema lock in orchestrator/store/schema_lock.py). An older schema: the
    embedded SQLite store upgrades itself; a shared PostgreSQL store must be upgraded on purpose
    (`orch db upgrade`), so that one controller of a new version cannot surprise the others.
    A store that cannot be opened raises StoreUnavailable, one line for the user.
    """
    engine = make_engine(database_url())
    embedded = engine.dialect.name == "sqlite"
    ensure_schema(engine, auto_upgrade=embedded if auto_upgrade is None else auto_upgrade, create_empty=True)
    return Store(engine)


def _local(home: Path, clock: Clock) -> Provider:
    from providers.local.provider import LocalProvider

    return LocalProvider(home / "local", clock, agent_command=AGENT_COMMAND)


def _aws(home: Path, clock: Clock) -> Provider:
    from providers.aws.provider import AwsProvider

    # ORCH_AWS_SETTINGS, else $ORCH_HOME/providers/aws.toml (docs/providers/aws.md).
    return AwsProvider.from_settings_file(clock)


def _gcp(home: Path, clock: Clock) -> Provider:
    from providers.gcp.provider import GcpProvider
    from providers.gcp.settings import load_gcp_settings

    # ORCH_GCP_SETTINGS, else $ORCH_HOME/providers/gcp.toml (docs/providers/gcp.md).
    return GcpProvider(clock, load_gcp_settings())


def _kubernetes(home: Path, clock: Clock) -> Provider:
    import os

    from orchestrator.k8s.config import provider_settings_from_env
    from orchestrator.k8s.kube import default_api_client
    from providers.kubernetes.provider import KubernetesProvider

    return KubernetesProvider(default_api_client(), provider_settings_from_env(os.environ), clock=clock)


FACTORIES: dict[str, Callable[[Path, Clock], Provider]] = {
    "local": _local,
    "aws": _aws,
    "gcp": _gcp,
    "kubernetes": _kubernetes,
}


def known_providers() -> list[str]:
    return sorted(FACTORIES)


def build_providers(names: Iterable[str], *, clock: Clock | None = None,
                    home: Path | None = None) -> dict[str, Provider]:
    clock = clock or SystemClock()
    home = home or orch_home()
    out: dict[str, Provider] = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = FACTORIES[name](home, clock)
        except ProviderError:
            raise
        except Exception as exc:  # a missing settings file, kubeconfig or SDK: say which, no traceback
            hint = missing_extra(exc, f"provider {name!r}")
            raise PermanentError(hint or f"provider {name!r} is not set up: {exc}", provider=name) from exc
    return out


def controller_executor(args: argparse.Namespace) -> Executor:
    """A long-running controller works on its jobs in parallel, so one hung cloud call delays only its job:
    the tick waits for its jobs about one tick (at least 5 s), then leaves the slow ones to finish."""
    from orchestrator.loop.executor import Executor

    return Executor(workers=args.workers, call_timeout_s=args.call_timeout, job_budget_s=max(5.0, args.tick))
