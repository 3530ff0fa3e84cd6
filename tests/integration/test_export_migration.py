"""Migration 0003_export matches sandbox.export.models and downgrades cleanly."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from support.schema import schema_diff

import sandbox.export.models  # noqa: F401  (registers the tables on Base)
from sandbox.control.db import alembic_config, make_engine, migrate

TABLES = {"export_requests", "export_reviews"}


def test_migration_matches_models_and_downgrades(sqlite_url: str) -> None:
    migrate(sqlite_url, "0003_export")
    engine = make_engine(sqlite_url)
    try:
        assert schema_diff(engine, TABLES) == []
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002_ledger")
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_revision_chain() -> None:
    rev = ScriptDirectory.from_config(alembic_config()).get_revision("0003_export")
    assert rev is not None and rev.down_revision == "0002_ledger"
