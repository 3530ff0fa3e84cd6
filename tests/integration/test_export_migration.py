"""Migration 0003_export matches sandbox.export.models and downgrades cleanly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import sandbox.export.models  # noqa: F401  (registers the tables on Base)
from sandbox.control.db import alembic_config, make_engine, migrate
from sandbox.control.models import Base

TABLES = {"export_requests", "export_reviews"}


def _include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    if type_ == "table":
        return name in TABLES
    table = getattr(obj, "table", None)
    return table is None or table.name in TABLES


def test_migration_matches_models_and_downgrades(sqlite_url: str) -> None:
    migrate(sqlite_url, "0003_export")
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _include})
            assert list(compare_metadata(ctx, Base.metadata)) == []
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002_ledger")
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_revision_chain() -> None:
    rev = ScriptDirectory.from_config(alembic_config()).get_revision("0003_export")
    assert rev is not None and rev.down_revision == "0002_ledger"
