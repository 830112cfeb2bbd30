"""Where a cloud provider's campaign workers reach the controller's item service, from its settings file.

A controller that runs in the same network as its workers (an instance in the VPC, a pod beside it)
serves the campaign's items over TLS at a private address; the provider's settings name it:

    item_service_url = "https://10.0.3.17:8443"     # as the workers see it
    item_service_tls_cert = "/etc/orch/items.pem"   # the certificate the service presents
    item_service_tls_key = "/etc/orch/items.key"    # its private key (read by the controller only)

Without `item_service_url` the workers go through the job's bucket (no address needed). Shared by the
aws and gcp settings modules so each adds one field and one line; nothing here talks to a cloud.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["ItemServiceAccess", "parse_item_service"]


@dataclass(frozen=True, slots=True)
class ItemServiceAccess:
    """The item service as a provider's workers reach it: `url` (https), and the certificate and key files
    the controller serves it with."""

    url: str
    tls_cert: str
    tls_key: str

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 443)


def parse_item_service(url: str | None, cert: str | None, key: str | None,
                       fail: Callable[[str, str], Exception]) -> ItemServiceAccess | None:
    """`item_service_url` with its TLS files, or None (the bucket transport); a partial set is an error
    (`fail(key, problem)` makes the settings reader's own error)."""
    if url is None:
        if cert is not None or key is not None:
            raise fail("item_service_url", "is required when item_service_tls_cert or _key is set")
        return None
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "https" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise fail("item_service_url", f"must be https://<private address>:<port> as workers see it, got {url!r} "
                                           "(workers outside the controller's host reach it over TLS only)")
    if not cert or not key:
        raise fail("item_service_tls_cert", "and item_service_tls_key (PEM files) are required with "
                                                "item_service_url")
    return ItemServiceAccess(url.rstrip("/"), cert, key)
