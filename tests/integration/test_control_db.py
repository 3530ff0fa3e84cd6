"""Control DB: migrations on SQLite and PostgreSQL, engine settings, session scope."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, inspect, select, text
from support.schema import schema_diff

from sandbox.audit.chain import GENESIS
from sandbox.control.db import (
    current_revision,
    head_revision,
    make_engine,
    migrate,
    normalise_url,
    session_scope,
)
from sandbox.control.models import AuditHead, User

FOUNDATION_TABLES = {"users", "projects", "project_members", "grants", "audit_log", "audit_head"}


def test_schema_diff_sees_a_missing_index(sqlite_url: str) -> None:
    migrate(sqlite_url, "0001_foundation")
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP INDEX ix_audit_log_kind")
        assert schema_diff(engine, FOUNDATION_TABLES) != []
    finally:
        engine.dispose()


def _check_foundation(url: str) -> None:
    migrate(url, "0001_foundation")
    engine = make_engine(url)
    try:
        assert current_revision(engine) == "0001_foundation"
        assert set(inspect(engine).get_table_names()) >= FOUNDATION_TABLES
        assert schema_diff(engine, FOUNDATION_TABLES) == []
        with session_scope(engine) as session:
            head = session.get(AuditHead, 1)
            assert head is not None and (head.seq, head.hash) == (0, GENESIS)
    finally:
        engine.dispose()
    migrate(url, "0001_foundation")  # idempotent
    migrate(url)  # and every later migration applies on top
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(AuditHead)) == 1
    finally:
        engine.dispose()


def test_foundation_migration_on_sqlite(sqlite_url: str) -> None:
    _check_foundation(sqlite_url)


def test_foundation_migration_on_postgres(pg_database_url: str) -> None:
    _check_foundation(pg_database_url)


def test_foundation_revision_id_is_fixed() -> None:
    from alembic.script import ScriptDirectory

    from sandbox.control.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    base = script.get_revision("0001_foundation")
    assert base is not None and base.down_revision is None
    assert [r.revision for r in script.walk_revisions()][-1] == "0001_foundation"


def test_sqlite_engine_uses_wal_foreign_keys_and_busy_timeout(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    finally:
        engine.dispose()


def test_postgres_urls_use_psycopg3() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_session_scope_commits_or_rolls_back(control_engine: Engine) -> None:
    with session_scope(control_engine) as session:
        session.add(User(username="kept", role="researcher"))
    with pytest.raises(RuntimeError), session_scope(control_engine, immediate=True) as session:
        session.add(User(username="lost", role="researcher"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(control_engine) as session:
        names = session.scalars(select(User.username)).all()
    assert names == ["kept"]


def test_check_constraints_reject_unknown_role(control_engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), session_scope(control_engine) as session:
        session.add(User(username="x", role="superuser"))


def test_immediate_transactions_take_the_write_lock_at_begin(sqlite_url: str, tmp_path: Path) -> None:
    migrate(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with session_scope(engine, immediate=True) as session:
            session.execute(text("SELECT 1"))
            other = make_engine(sqlite_url, connect_args={"timeout": 0.05})
            with other.connect() as conn:
                conn.exec_driver_sql("PRAGMA busy_timeout=50")
                with pytest.raises(Exception, match="locked"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
            other.dispose()
    finally:
        engine.dispose()
