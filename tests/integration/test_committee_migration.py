"""Migration 0006_committee: matches sandbox.governance.committee_models and the ``expert`` role, keeps
every row that refers to a user, and downgrades (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from support.schema import schema_diff

from sandbox.control.db import alembic_config, current_revision, head_revision, make_engine, migrate
from sandbox.governance.committee_models import COMMITTEE_TABLES


def _add_user(engine: Engine, name: str, role: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (username, role, status, created_at) "
                "VALUES (:name, :role, 'approved', CURRENT_TIMESTAMP)"
            ),
            {"name": name, "role": role},
        )


def _add_project(engine: Engine, name: str, lead_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO projects (name, title, lead_id, created_at) "
                "VALUES (:name, :name, :lead, CURRENT_TIMESTAMP)"
            ),
            {"name": name, "lead": lead_id},
        )


def _check(url: str) -> None:
    migrate(url, "0005_release_abandoned")
    engine = make_engine(url)
    try:
        _add_user(engine, "alice", "researcher")
        _add_project(engine, "lab", 1)
        with pytest.raises(IntegrityError):
            _add_user(engine, "kai", "expert")  # not a role before 0006

        migrate(engine, "0006_committee")
        assert current_revision(engine) == "0006_committee"
        assert set(inspect(engine).get_table_names()) >= COMMITTEE_TABLES
        assert schema_diff(engine, COMMITTEE_TABLES | {"users"}) == []
        _add_user(engine, "kai", "expert")
        with pytest.raises(IntegrityError):
            _add_user(engine, "zed", "oracle")  # the CHECK is still there
        with engine.connect() as conn:
            # the project still refers to its lead (SQLite: users was rebuilt under its own name)
            lead = conn.execute(
                text("SELECT u.username FROM projects p JOIN users u ON u.id = p.lead_id")
            ).scalar_one()
            assert lead == "alice"
            if engine.dialect.name == "sqlite":
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
                assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
        with pytest.raises(IntegrityError):  # foreign keys still enforced
            _add_project(engine, "x", 999)

        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0005_release_abandoned")
        assert current_revision(engine) == "0005_release_abandoned"
        assert not COMMITTEE_TABLES & set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT username, role || '/' || status FROM users")).all())
        assert rows == {"alice": "researcher/approved", "kai": "researcher/suspended"}
        with pytest.raises(IntegrityError):
            _add_user(engine, "lin", "expert")
        migrate(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_committee_migration_on_sqlite(sqlite_url: str) -> None:
    _check(sqlite_url)


def test_committee_migration_on_postgres(pg_database_url: str) -> None:
    _check(pg_database_url)


def test_committee_revision_follows_release_abandoned() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()
    revision = script.get_revision("0006_committee")
    assert revision is not None and revision.down_revision == "0005_release_abandoned"
