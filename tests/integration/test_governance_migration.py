"""Migration 0004_governance matches sandbox.governance.models, keeps one linear chain, downgrades."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from support.schema import schema_diff

from sandbox.control.db import alembic_config, current_revision, head_revision, make_engine, migrate
from sandbox.governance.models import GOVERNANCE_TABLES


def _check(url: str) -> None:
    migrate(url, "0004_governance")
    engine = make_engine(url)
    try:
        # channel_requests changed in 0007_channel_sla (test_channel_migration.py compares it there)
        assert schema_diff(engine, GOVERNANCE_TABLES - {"channel_requests"}) == []
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
