"""The job file's bounds and vocabulary, and the one error type every refusal of a job file raises.

Split from `orchestrator.core.spec` so that the typed models (`orchestrator.core.spec_model`, which
import pydantic) and the light runtime records (`orchestrator.core.spec`, imported by `orch --help`)
share them without importing each other: the CLI's start-up never pays for pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MARKETS = ("auto", "spot", "on-demand")
CHECKPOINT_SCHEMES = ("file://", "s3://", "gs://")
# Credential variables of the clouds' standard chains: refused in a job's env on every provider.
CREDENTIAL_VARIABLES = frozenset({
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_OAUTH_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
    "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", "AZURE_CLIENT_SECRET",
})
DEFAULT_GRACE_SECONDS = 120.0
DEFAULT_RESTART_OVERHEAD_HOURS = 0.1
# One task row per shard is written at submission, and item bounds are 32-bit columns.
MAX_SHARDS = 100_000
MAX_ITEMS = 2**31 - 1
MAX_WORKERS = 1000  # instances of one campaign at once
# Bounds of the numbers a job may give (docs/job-spec.md, "Limits"): wide enough for any real job,
# narrow enough that no value can overflow a computation, a column or the controller's patience.
MAX_SPEC_BYTES = 1024 * 1024
MAX_HOURS = 87_600.0  # ten years: work, deadlines
MIN_WORK_HOURS = 0.001  # 3.6 s: below the loop's resolution
MAX_RESTART_OVERHEAD_HOURS = 24.0
MAX_GPU_COUNT = 256
MAX_NODES = 128  # nodes of one gang (`[resources] nodes`): ESM-1v's 128 V100s at one GPU a node
MAX_GPU_MEMORY_GB = 4096.0
MAX_BUDGET_USD = 1e9
MAX_KEEP = 1000
MAX_GRACE_SECONDS = 600.0  # beyond every cloud's notice (AWS 120 s, GCE 30 s); a local terminate waits this long
MAX_FAILURES = 1000
MAX_NAME = 128
# What a pod accepts as an environment variable name, so one spec runs on every provider.
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


class SpecError(ValueError):
    """A job specification that cannot be accepted. `str()` is the whole user-facing message."""

    def __init__(self, source: str, field_name: str, problem: str) -> None:
        self.source = source
        self.field = field_name
        self.problem = problem
        where = f"{source}: {field_name}" if field_name else source
        super().__init__(f"{where}: {problem}")


# A key TOML writes without quotes; any other key is shown quoted (repr), so a key holding a newline
# or a control character cannot split a message over two lines.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_text(key: object) -> str:
    """A key as messages show it: bare when TOML would write it bare, else its repr."""
    return key if isinstance(key, str) and _BARE_KEY.fullmatch(key) else repr(key)


def show(value: Any) -> str:
    """A value as the message quotes it: repr, cut short so that one mistake stays one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key or string under `value` holding a NUL byte, or None.

    No argument, path or environment variable can hold one (execve and open stop at it, or Python
    refuses), so such a job could be stored but never started: it is refused as a whole, first.
    """
    if isinstance(value, str):
        return path if "\0" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key_text(key)}" if path else key_text(key)
            if isinstance(key, str) and "\0" in key:
                return where
            found = nul_path(item, where)
            if found is not None:
                return found
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = nul_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None
