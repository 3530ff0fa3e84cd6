"""Migration 0007_channel_sla: matches sandbox.governance.models.ChannelRequest, gives existing rows
their clocks, admits objections, and downgrades without losing a row (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from support.schema import schema_diff

from sandbox.control.db import alembic_config, current_revision, head_revision, make_engine, migrate
from sandbox.governance.models import ChannelRequest

FILED = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def _add_user(engine: Engine, name: str) -> int:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (username, role, status, created_at) "
                "VALUES (:name, 'researcher', 'approved', CURRENT_TIMESTAMP)"
            ),
            {"name": name},
        )
        return int(conn.execute(text("SELECT id FROM users WHERE username = :n"), {"n": name}).scalar_one())


def _add_request(
    engine: Engine, user: int, kind: str, status: str, responded: datetime | None = None
) -> None:
    # Through the ORM's column types, so the times are stored as the application stores them.
    table = ChannelRequest.__table__
    old = {c.name for c in table.columns} - {"due_at", "answered_at", "subject_kind", "subject_ref", "id"}
    values = {
        "kind": kind,
        "filed_by": user,
        "title": f"{kind} {status}",
        "description": "Some description.",
        "status": status,
        "created_at": FILED,
        "responded_at": responded,
        "responded_by": user if responded else None,
    }
    with engine.begin() as conn:
        conn.execute(table.insert().values(**{k: v for k, v in values.items() if k in old}))  # type: ignore[attr-defined]


INSERT = "INSERT INTO channel_requests (kind, filed_by, title, description, status, created_at"


def _raw(engine: Engine, sql: str, user: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), {"u": user})


def _clocks(engine: Engine) -> dict[str, tuple[datetime, datetime | None]]:
    table = ChannelRequest.__table__
    with engine.connect() as conn:
        rows = conn.execute(table.select()).mappings().all()  # type: ignore[attr-defined]
    return {r["title"]: (r["due_at"], r["answered_at"]) for r in rows}


def _check(url: str) -> None:
    migrate(url, "0006_committee")
    engine = make_engine(url)
    try:
        alice = _add_user(engine, "alice")
        answered = FILED + timedelta(days=3)
        _add_request(engine, alice, "demand", "received")
        _add_request(engine, alice, "demand", "refused", answered)
        _add_request(engine, alice, "correction", "acknowledged", answered)
        with pytest.raises(IntegrityError):  # not a kind before 0007
            _raw(
                engine, f"{INSERT}) VALUES ('objection', :u, 't', 'd', 'received', CURRENT_TIMESTAMP)", alice
            )

        migrate(engine, "0007_channel_sla")
        assert current_revision(engine) == "0007_channel_sla"
        assert schema_diff(engine, {"channel_requests"}) == []
        clocks = _clocks(engine)
        assert clocks["demand received"] == (FILED + timedelta(days=15), None)
        assert clocks["demand refused"] == (FILED + timedelta(days=15), answered)
        # an acknowledgement does not stop the clock
        assert clocks["correction acknowledged"] == (FILED + timedelta(days=10), None)

        _raw(
            engine,
            f"{INSERT}, due_at, subject_kind, subject_ref) VALUES ('objection', :u, 'obj', 'grounds here', "
            "'partly_upheld', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'consent', '7')",
            alice,
        )
        with pytest.raises(IntegrityError):  # the subject CHECK
            _raw(
                engine,
                f"{INSERT}, due_at, subject_kind) VALUES ('objection', :u, 't', 'd', 'received', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'rumour')",
                alice,
            )
        with pytest.raises(IntegrityError):  # due_at is required
            _raw(engine, f"{INSERT}) VALUES ('demand', :u, 't', 'd', 'received', CURRENT_TIMESTAMP)", alice)
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
                assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1

        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0006_committee")
        assert current_revision(engine) == "0006_committee"
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT title, kind, status FROM channel_requests ORDER BY id")).all()
            columns = set(conn.execute(text("SELECT * FROM channel_requests")).keys())
        assert [tuple(r) for r in rows] == [
            ("demand received", "demand", "received"),
            ("demand refused", "demand", "refused"),
            ("correction acknowledged", "correction", "acknowledged"),
            ("[objection] obj", "correction", "corrected"),
        ]
        assert "status" in columns and not columns & {"due_at", "answered_at", "subject_kind", "subject_ref"}
        migrate(engine)
        assert current_revision(engine) == head_revision()
        assert len(_clocks(engine)) == 4
    finally:
        engine.dispose()


def test_channel_migration_on_sqlite(sqlite_url: str) -> None:
    _check(sqlite_url)


def test_channel_migration_on_postgres(pg_database_url: str) -> None:
    _check(pg_database_url)


def test_channel_revision_follows_committee() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()
    revision = script.get_revision("0007_channel_sla")
    assert revision is not None and revision.down_revision == "0006_committee"
