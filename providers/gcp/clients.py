"""How the GCP provider gets its Compute Engine clients: REST, the standard credential chain, no retries.

`credentials=None` lets the client library run `google.auth.default()` itself (the environment's
GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login, or the metadata server of a VM
or pod); orch never reads, stores, logs or passes credentials. Tests hand in
`AnonymousCredentials()` and `client_options={"api_endpoint": "http://127.0.0.1:PORT"}`: the REST
transport keeps an explicit `http://` scheme in `api_endpoint`, which is the supported way to point
it at a local server. Every call passes `retry=None`, because the provider retries with its own
bounded policy (`providers.gcp.errors.call`) and two retry layers multiply each other's waits.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any


class ComputeClients:
    """The two clients the provider uses, built on first use (importing compute_v1 takes a second)."""

    def __init__(
        self,
        *,
        credentials: Any = None,
        client_options: Mapping[str, Any] | None = None,
        transport: str = "rest",
    ) -> None:
        self._credentials = credentials
        self._options = dict(client_options or {})
        self._transport = transport
        self._lock = threading.Lock()
        self._instances: Any = None
        self._operations: Any = None
        self._network: tuple[Any, Any] | None = None
        self._policies: tuple[Any, Any] | None = None

    def _make(self) -> None:
        from google.cloud import compute_v1

        kwargs: dict[str, Any] = {"transport": self._transport}
        if self._credentials is not None:
            kwargs["credentials"] = self._credentials
        if self._options:
            kwargs["client_options"] = dict(self._options)
        self._instances = compute_v1.InstancesClient(**kwargs)
        self._operations = compute_v1.ZoneOperationsClient(**kwargs)

    @property
    def instances(self) -> Any:
        with self._lock:
            if self._instances is None:
                self._make()
            return self._instances

    @property
    def firewalls(self) -> Any:
        return self._network_clients()[0]

    @property
    def global_operations(self) -> Any:
        return self._network_clients()[1]

    def _network_clients(self) -> tuple[Any, Any]:
        """The firewall and global-operation clients, made only by a controller that opens the item service."""
        from google.cloud import compute_v1

        with self._lock:
            if self._network is None:
                kwargs: dict[str, Any] = {"transport": self._transport}
                if self._credentials is not None:
                    kwargs["credentials"] = self._credentials
                if self._options:
                    kwargs["client_options"] = dict(self._options)
                self._network = (compute_v1.FirewallsClient(**kwargs), compute_v1.GlobalOperationsClient(**kwargs))
            return self._network

    @property
    def resource_policies(self) -> Any:
        """Made only by a controller that launches gangs (compact placement policies)."""
        from google.cloud import compute_v1

        with self._lock:
            if self._policies is None:
                kwargs: dict[str, Any] = {"transport": self._transport}
                if self._credentials is not None:
                    kwargs["credentials"] = self._credentials
                if self._options:
                    kwargs["client_options"] = dict(self._options)
                self._policies = (compute_v1.ResourcePoliciesClient(**kwargs),
                                  compute_v1.RegionOperationsClient(**kwargs))
            return self._policies[0]

    @property
    def region_operations(self) -> Any:
        self.resource_policies  # noqa: B018  (makes both)
        assert self._policies is not None
        return self._policies[1]

    @property
    def operations(self) -> Any:
        with self._lock:
            if self._operations is None:
                self._make()
            return self._operations
