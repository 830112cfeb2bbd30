"""How a controller's campaign workers on cloud instances reach their items, chosen from the providers'
settings (docs/campaigns.md, "Cloud instances").

- A provider whose settings name `item_service_url` gets the item service: this controller serves it
  over TLS on that port (with the settings' certificate and key), the workers get the URL, their
  token and the certificate (ORCH_ITEMS_CA), and the provider opens the port to its workers only
  (`open_item_service`: an AWS security group, a GCP firewall rule by network tag).
- Any other cloud provider gets the job's bucket: nothing to open, a lease waits a tick at most.

The tokens are signed with a secret kept in the orch home (`items.secret`, made once, mode 0600), so
a restarted controller accepts the workers already running.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

from orchestrator.store import Store, orch_home
from orchestrator.store.item_service import ItemService
from orchestrator.store.item_source import BUCKETS, ItemEndpoint, items_uri
from providers.base import Provider
from providers.item_service import ItemServiceAccess

__all__ = ["controller_items", "items_secret", "transport_line"]

CLOUDS = ("aws", "gcp")
SECRET_FILE = "items.secret"


def items_secret(home: Path | None = None) -> bytes:
    """The controller's token secret: made on first use (mode 0600), read afterwards."""
    path = (home or orch_home()) / SECRET_FILE
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def _access(name: str, provider: Provider | None = None) -> ItemServiceAccess | None:
    """The provider's `item_service_*` settings: from the built provider, else from its settings file."""
    if name == "aws":
        from providers.aws.provider import AwsProvider
        from providers.aws.settings import load_aws_settings

        return (provider.settings if isinstance(provider, AwsProvider) else load_aws_settings()).item_service
    if name == "gcp":
        from providers.gcp.provider import GcpProvider
        from providers.gcp.settings import load_gcp_settings

        return (provider.settings if isinstance(provider, GcpProvider) else load_gcp_settings()).item_service
    return None


def _open(name: str, provider: Provider, port: int) -> None:
    """The provider's one opening for the service: its port, from the workers only."""
    if name == "aws":
        from providers.aws.provider import AwsProvider

        if isinstance(provider, AwsProvider):
            provider.open_item_service(port)
            return
    if name == "gcp":
        from providers.gcp.provider import GcpProvider

        if isinstance(provider, GcpProvider):
            provider.open_item_service(port)
            return
    raise TypeError(f"provider {name} cannot open the item service's port")


@contextlib.contextmanager
def controller_items(store: Store, providers: Mapping[str, Provider]) -> Iterator[ItemEndpoint | None]:
    """The endpoint the loop gives campaign workers, with the item service served while the block runs."""
    clouds = {name: p for name, p in providers.items() if name in CLOUDS}
    if not clouds:
        yield None
        return
    access = {name: _access(name, p) for name, p in clouds.items()}
    served = {a for a in access.values() if a is not None}
    if len(served) > 1:
        raise ValueError(f"the providers name different item services ({sorted(a.url for a in served)}); "
                         "one controller serves one: give them the same item_service_url and TLS files")
    secret = items_secret()
    if not served:
        yield ItemEndpoint("", secret, providers=frozenset(), bucket_providers=frozenset(clouds))
        return
    (service_access,) = served
    for name, a in access.items():
        if a is not None:
            _open(name, clouds[name], service_access.port)
    service = ItemService(store, secret=secret, port=service_access.port, tls_cert=service_access.tls_cert,
                          tls_key=service_access.tls_key).start()
    try:
        yield ItemEndpoint(service_access.url, secret, providers=frozenset(n for n, a in access.items() if a),
                           bucket_providers=frozenset(n for n, a in access.items() if a is None),
                           ca_pem=Path(service_access.tls_cert).read_text())
    finally:
        service.stop()


def transport_line(providers: tuple[str, ...], checkpoint_uri: str) -> str:
    """How this campaign's workers reach their items, for `orch status`: one line per provider."""
    ways = []
    for name in providers:
        if name == "local":
            ways.append("local: orch's database")
        elif name == "kubernetes":
            ways.append("kubernetes: the controller's item service in the cluster")
        elif name in CLOUDS:
            try:
                access = _access(name)
            except (ValueError, OSError) as exc:
                ways.append(f"{name}: unknown ({str(exc).splitlines()[0][:120]})")
                continue
            if access:
                ways.append(f"{name}: the item service at {access.url}")
            elif checkpoint_uri.startswith(BUCKETS):
                ways.append(f"{name}: the job's bucket ({items_uri(checkpoint_uri)})")
            else:
                ways.append(f"{name}: none: its [checkpoint] uri must be s3:// or gs:// (or set item_service_url)")
    return "items via   " + "; ".join(ways)
