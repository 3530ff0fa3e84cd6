"""Migration 0004_governance matches sandbox.governance.models, keeps one linear chain, downgrades."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from sandbox.control.db import alembic_config, current_revision, head_revision, make_engine, migrate
from sandbox.control.models import Base
from sandbox.governance.models import GOVERNANCE_TABLES


def _include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    if type_ == "table":
        return name in GOVERNANCE_TABLES
    table = getattr(obj, "table", None)
    return table is None or table.name in GOVERNANCE_TABLES


def _check(url: str) -> None:
    migrate(url, "0004_governance")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _include})
            assert list(compare_metadata(ctx, Base.metadata)) == []
        assert set(inspect(engine).get_table_names()) >= GOVERNANCE_TABLES
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003_export")
        assert not GOVERNANCE_TABLES & set(inspect(engine).get_table_names())
        migrate(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migration_matches_models_and_downgrades_on_sqlite(sqlite_url: str) -> None:
    _check(sqlite_url)


@pytest.mark.postgres
def test_migration_matches_models_and_downgrades_on_postgres(pg_database_url: str) -> None:
    _check(pg_database_url)


def test_one_linear_chain() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()
    rev = script.get_revision("0004_governance")
    assert rev is not None and rev.down_revision == "0003_export"
