"""Which optional install (`pip install 'orch[…]'`) brings a missing module, said in one line.

The embedded default (the local provider, SQLite) needs none of the cloud SDKs, so a newcomer's
`pip install .` stays small and quick; a user who then names `aws`, `gcp`, `kubernetes` or a
PostgreSQL URL is told exactly what to install instead of reading an ImportError.
"""

from __future__ import annotations

# Top-level module -> the extra that installs it (pyproject.toml [project.optional-dependencies]).
EXTRA_OF = {
    "boto3": "aws", "botocore": "aws", "s3transfer": "aws",
    "google": "gcp", "requests": "gcp",
    "kubernetes": "kubernetes", "urllib3": "kubernetes", "prometheus_client": "kubernetes",
    "psycopg": "postgres", "psycopg2": "postgres",
    "starlette": "server", "uvicorn": "server",
}


def missing_extra(exc: BaseException, needed_for: str) -> str | None:
    """One line naming the install command, when `exc` is a missing module of an extra; else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    extra = EXTRA_OF.get(exc.name.split(".")[0])
    if extra is None:
        return None
    return (f"{needed_for} needs the {exc.name.split('.')[0]} package, which is not installed: "
            f"python3 -m pip install 'orch[{extra}]'")
