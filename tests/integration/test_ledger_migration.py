"""Migrations 0002_ledger and 0005_release_abandoned: match sandbox.ledger.models on SQLite and
PostgreSQL, and downgrade."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError
from support.schema import schema_diff

import sandbox.ledger.models  # noqa: F401 - registers the ledger tables on Base.metadata
from sandbox.control.db import alembic_config, current_revision, head_revision, make_engine, migrate
from sandbox.ledger.models import Release
from sandbox.ledger.values import ReleaseStatus

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


# --------------------------------------------------------------------------- 0005: status abandoned


def _insert_release(engine: Engine, release_id: str, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO releases (id, request_id, project_id, user_id, dataset, fingerprint, "
                "epsilon_requested, epsilon_charged, status, created_at) VALUES "
                "(:id, :id, 1, 1, 'enterprise_tax', 'fp', '0.5', '0.5', :status, CURRENT_TIMESTAMP)"
            ),
            {"id": release_id, "status": status},
        )


def _check_abandoned(url: str) -> None:
    migrate(url)
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        assert schema_diff(engine, LEDGER_TABLES) == []
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (username, role, status, created_at) "
                    "VALUES ('alice', 'researcher', 'approved', CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO projects (name, title, lead_id, created_at) "
                    "VALUES ('fin-lab', 'Finance lab', 1, CURRENT_TIMESTAMP)"
                )
            )
        for status in ReleaseStatus:
            _insert_release(engine, f"r-{status.value}", status.value)
        with pytest.raises(IntegrityError):
            _insert_release(engine, "r-bogus", "vanished")
        # the indexes survive the table copy on SQLite
        assert {ix["name"] for ix in inspect(engine).get_indexes("releases")} >= {
            "ix_releases_cache",
            "ix_releases_scope",
        }
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0004_governance")
        assert current_revision(engine) == "0004_governance"
        with engine.connect() as conn:
            statuses = dict(conn.execute(select(Release.id, Release.status)).all())
        # abandoned rows become failed ones: both keep their charge
        assert statuses == {
            "r-reserved": "reserved",
            "r-committed": "committed",
            "r-failed": "failed",
            "r-abandoned": "failed",
        }
        with pytest.raises(IntegrityError):
            _insert_release(engine, "r-again", "abandoned")
        migrate(engine)
        assert current_revision(engine) == head_revision()
        _insert_release(engine, "r-again", "abandoned")
    finally:
        engine.dispose()


def test_abandoned_status_migration_on_sqlite(sqlite_url: str) -> None:
    _check_abandoned(sqlite_url)


def test_abandoned_status_migration_on_postgres(pg_database_url: str) -> None:
    _check_abandoned(pg_database_url)


def test_abandoned_status_revision_follows_governance() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revision = script.get_revision("0005_release_abandoned")
    assert revision is not None and revision.down_revision == "0004_governance"
