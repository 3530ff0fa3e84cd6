"""Fixtures shared by the whole suite.

* ``require(condition, reason)`` (from ``tests/support``): skip locally, fail under ``CI=true``.
* ``postgres_url`` (session): a throwaway PostgreSQL 15 cluster started as the ``postgres``
  user; yields ``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``.
* ``pg_database_url`` (function): a fresh, empty database on that cluster, dropped afterwards.
* ``sqlite_url`` (function): a SQLite control-DB file under ``tmp_path``.
* ``control_engine`` (function): a migrated SQLite control DB engine.
* Password hashing uses cheap argon2 parameters in tests (autouse).

Tests that use a PostgreSQL fixture get the ``postgres`` marker automatically.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import in_ci, require
from support.postgres import PostgresCluster, unavailable_reason

__all__ = ["in_ci", "require"]

_POSTGRES_FIXTURES = {"postgres_url", "pg_database_url", "postgres_cluster"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    reason = unavailable_reason()
    require(reason is None, reason or "")
    cluster = PostgresCluster()
    try:
        cluster.start()
    except RuntimeError as err:
        require(False, f"could not start a throwaway PostgreSQL cluster: {err}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """URL of the cluster's ``postgres`` database (create your own databases with care)."""
    return postgres_cluster.url("postgres")


@pytest.fixture
def pg_database_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh database per test; dropped (WITH FORCE) at teardown."""
    url = postgres_cluster.create_database()
    try:
        yield url
    finally:
        postgres_cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'control.sqlite'}"


@pytest.fixture
def control_engine(sqlite_url: str) -> Iterator[Any]:
    """A SQLite control DB migrated to head (every shipped migration)."""
    from sandbox.control.db import make_engine, migrate

    migrate(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """argon2id with minimal cost: the hash format is real, the tests stay fast."""
    try:
        from argon2 import PasswordHasher

        from sandbox.access import registry
    except ImportError:  # pragma: no cover - access layer not importable
        yield
        return
    previous = registry.set_password_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    try:
        yield
    finally:
        registry.set_password_hasher(previous)
