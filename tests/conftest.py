"""Shared fixtures: an isolated ORCH_HOME, and stores on SQLite and (when available) PostgreSQL.

PostgreSQL runs for real: `.ci/run` starts a server and sets ORCH_TEST_POSTGRES_URL. Locally, tests
marked for PostgreSQL are skipped without it, unless ORCH_REQUIRE_POSTGRES=1 (as in CI) makes that a
failure, so a broken server can never pass CI by being skipped.
"""

from __future__ import annotations

import os

# One BLAS thread per process, set before anything imports numpy: the policy fits are tiny, and on a
# loaded 2-core machine BLAS threads fighting each other and the test's subprocesses made two `auto`
# tests take 25-29 s instead of 2.9 s. Child processes (the CLI, agents) inherit it.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import Engine, create_engine, text  # noqa: E402

from orchestrator.store import Store, make_engine  # noqa: E402
from orchestrator.store.engine import normalise_url, upgrade  # noqa: E402

# The AWS fixtures (moto server, AwsWorld, IMDS emulator) for every test module that asks for them.
pytest_plugins = ["tests.aws_support"]


@pytest.fixture
def orch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "orch-home"
    home.mkdir()
    monkeypatch.setenv("ORCH_HOME", str(home))
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    return home


def _postgres_admin_url() -> str | None:
    url = os.environ.get("ORCH_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("ORCH_REQUIRE_POSTGRES") == "1":
            pytest.fail("ORCH_REQUIRE_POSTGRES=1 but ORCH_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL not configured (set ORCH_TEST_POSTGRES_URL; .ci/run does)")
    return normalise_url(url)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    admin_url = _postgres_admin_url()
    assert admin_url is not None
    name = f"orch_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orch.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    eng = make_engine(f"sqlite:///{tmp_path / 'orch.db'}")
    upgrade(eng)
    yield Store(eng)
    eng.dispose()
