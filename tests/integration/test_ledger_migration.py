"""Migration 0002_ledger: matches sandbox.ledger.models on SQLite and PostgreSQL, and downgrades."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from support.schema import schema_diff

import sandbox.ledger.models  # noqa: F401 - registers the ledger tables on Base.metadata
from sandbox.control.db import alembic_config, current_revision, make_engine, migrate

LEDGER_TABLES = {"releases", "budget_spend"}


def _check(url: str) -> None:
    migrate(url, "0002_ledger")
    engine = make_engine(url)
    try:
        assert current_revision(engine) == "0002_ledger"
        assert set(inspect(engine).get_table_names()) >= LEDGER_TABLES
        assert schema_diff(engine, LEDGER_TABLES) == []
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001_foundation")
        assert not LEDGER_TABLES & set(inspect(engine).get_table_names())
        assert current_revision(engine) == "0001_foundation"
    finally:
        engine.dispose()
    migrate(url)


def test_ledger_migration_matches_models_on_sqlite(sqlite_url: str) -> None:
    _check(sqlite_url)


def test_ledger_migration_matches_models_on_postgres(pg_database_url: str) -> None:
    _check(pg_database_url)


def test_ledger_revision_follows_the_foundation() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revision = script.get_revision("0002_ledger")
    assert revision is not None and revision.down_revision == "0001_foundation"
