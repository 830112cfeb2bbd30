"""How the AWS provider gets boto3 clients: one Session, the standard credential chain, no retries.

boto3 finds credentials itself (environment, shared config and SSO, instance or pod role); orch
never reads, stores, logs or passes them. botocore's own retries are switched off because the
provider retries with its own bounded policy (`providers.aws.errors.call`), and two retry layers
multiply each other's waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

ClientFactory = Callable[[str, str], Any]


def default_client_factory() -> ClientFactory:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    lock = threading.Lock()  # a Session is not thread-safe; the clients it makes are
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra="orch",
    )

    def make(service: str, region: str) -> Any:
        with lock:
            return session.client(service, region_name=region, config=config)

    return make
