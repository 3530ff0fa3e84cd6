"""Channels: objections (权益保护, SR-30) and SLA clocks on ``channel_requests``.

Revision ID: 0007_channel_sla
Revises: 0006_committee

Model: ``sandbox.governance.models.ChannelRequest``; keep them in step
(``tests/integration/test_channel_migration.py`` compares them).

* ``kind`` gets ``objection``; ``status`` gets ``upheld`` and ``partly_upheld`` (CHECK constraints);
* new columns ``due_at`` (NOT NULL), ``answered_at``, ``subject_kind`` (CHECK: lookup, consent,
  release) and ``subject_ref``.

Existing rows get ``due_at = created_at + the default SLA of their kind`` (demand 15 days,
correction 10: the policy's defaults; a deployment that set other values in platform.yaml keeps
these for old rows) and, when already answered, ``answered_at = responded_at``.

On PostgreSQL the columns are added and the constraints replaced. On SQLite a CHECK cannot be
altered: as in ``0006_committee``, the rows are kept aside, the table is dropped and created again
under its own name, and the rows go back (no table refers to ``channel_requests``; foreign keys
are deferred to the commit all the same).

Downgrading turns objections into corrections (``upheld`` / ``partly_upheld`` → ``corrected``,
the title prefixed ``[objection]``), since the old CHECKs have no place for them, and drops the
new columns: rows are never deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007_channel_sla"
down_revision: str | Sequence[str] | None = "0006_committee"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_KINDS = ("correction", "demand")
_NEW_KINDS = ("correction", "demand", "objection")
_OLD_STATUSES = ("acknowledged", "answered", "corrected", "opened", "received", "refused", "rejected")
_NEW_STATUSES = (*_OLD_STATUSES, "partly_upheld", "upheld")
_SUBJECTS = ("consent", "lookup", "release")
_SLA_DAYS = {"demand": 15, "correction": 10, "objection": 15}  # the policy defaults
_ANSWERS = {
    "demand": ("answered", "opened", "refused"),
    "correction": ("corrected", "rejected"),
    "objection": ("upheld", "partly_upheld", "rejected"),
}
_OLD_COLUMNS = (
    "id, kind, filed_by, dataset, title, columns, scenario, description, department, status, "
    "response, responded_by, responded_at, created_at"
)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in sorted(values))})"


def _table(*, new: bool) -> None:
    """``channel_requests`` as in 0004 (old) or with this revision's columns and CHECKs (new)."""
    columns: list[Any] = [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("filed_by", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("columns", sa.Text(), nullable=True),
        sa.Column("scenario", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("department", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("responded_by", sa.Integer(), nullable=True),
        sa.Column("responded_at", _ts(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
    ]
    if new:
        columns += [
            sa.Column("due_at", _ts(), nullable=False),
            sa.Column("answered_at", _ts(), nullable=True),
            sa.Column("subject_kind", sa.String(16), nullable=True),
            sa.Column("subject_ref", sa.String(64), nullable=True),
            sa.CheckConstraint(_in("subject_kind", _SUBJECTS), name=op.f("ck_channel_requests_subject_kind")),
        ]
    op.create_table(
        "channel_requests",
        *columns,
        sa.CheckConstraint(
            _in("kind", _NEW_KINDS if new else _OLD_KINDS), name=op.f("ck_channel_requests_kind")
        ),
        sa.CheckConstraint(
            _in("status", _NEW_STATUSES if new else _OLD_STATUSES), name=op.f("ck_channel_requests_status")
        ),
        sa.ForeignKeyConstraint(["filed_by"], ["users.id"], name=op.f("fk_channel_requests_filed_by_users")),
        sa.ForeignKeyConstraint(
            ["responded_by"], ["users.id"], name=op.f("fk_channel_requests_responded_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_requests")),
    )
    op.create_index("ix_channel_requests_kind_department", "channel_requests", ["kind", "department"])


def _keep_aside() -> None:
    op.execute("PRAGMA defer_foreign_keys = ON")  # until the commit; reset by SQLite after it
    op.execute(f"CREATE TABLE _channel_requests_kept AS SELECT {_OLD_COLUMNS} FROM channel_requests")  # noqa: S608
    op.drop_index("ix_channel_requests_kind_department", table_name="channel_requests")
    op.drop_table("channel_requests")


def _clock(kind: str, status: str, created_at: datetime, responded_at: datetime | None) -> dict[str, Any]:
    """``due_at`` from the default SLA of the kind; ``answered_at`` of an answered row."""
    answered = responded_at if status in _ANSWERS[kind] else None
    return {"due_at": created_at + timedelta(days=_SLA_DAYS[kind]), "answered_at": answered}


def _rows(name: str, *extra: str) -> sa.TableClause:
    dates = {"created_at", "responded_at", "due_at", "answered_at"}
    names = [c.strip() for c in _OLD_COLUMNS.split(",")] + list(extra)
    return sa.table(name, *(sa.column(n, _ts() if n in dates else sa.String()) for n in names))


def upgrade() -> None:
    bind = op.get_bind()
    target = _rows("channel_requests", "due_at", "answered_at")
    if bind.dialect.name == "sqlite":
        _keep_aside()
        _table(new=True)
        kept = _rows("_channel_requests_kept")
        for row in bind.execute(sa.select(kept)).mappings().all():
            values = dict(row)
            values.update(_clock(row["kind"], row["status"], row["created_at"], row["responded_at"]))
            bind.execute(target.insert().values(**values))
        op.drop_table("_channel_requests_kept")
        return
    op.add_column("channel_requests", sa.Column("due_at", _ts(), nullable=True))
    op.add_column("channel_requests", sa.Column("answered_at", _ts(), nullable=True))
    op.add_column("channel_requests", sa.Column("subject_kind", sa.String(16), nullable=True))
    op.add_column("channel_requests", sa.Column("subject_ref", sa.String(64), nullable=True))
    for row in bind.execute(sa.select(target)).mappings().all():
        values = _clock(row["kind"], row["status"], row["created_at"], row["responded_at"])
        bind.execute(target.update().where(target.c.id == row["id"]).values(**values))
    op.alter_column("channel_requests", "due_at", nullable=False)
    op.drop_constraint(op.f("ck_channel_requests_kind"), "channel_requests", type_="check")
    op.create_check_constraint(op.f("ck_channel_requests_kind"), "channel_requests", _in("kind", _NEW_KINDS))
    op.drop_constraint(op.f("ck_channel_requests_status"), "channel_requests", type_="check")
    op.create_check_constraint(
        op.f("ck_channel_requests_status"), "channel_requests", _in("status", _NEW_STATUSES)
    )
    op.create_check_constraint(
        op.f("ck_channel_requests_subject_kind"), "channel_requests", _in("subject_kind", _SUBJECTS)
    )


def downgrade() -> None:
    op.execute(
        "UPDATE channel_requests SET status = 'corrected' "
        "WHERE kind = 'objection' AND status IN ('upheld', 'partly_upheld')"
    )
    op.execute(
        "UPDATE channel_requests SET kind = 'correction', "
        "title = substr('[objection] ' || title, 1, 200) WHERE kind = 'objection'"
    )
    if op.get_bind().dialect.name == "sqlite":
        _keep_aside()
        _table(new=False)
        op.execute(
            f"INSERT INTO channel_requests ({_OLD_COLUMNS}) SELECT {_OLD_COLUMNS} FROM _channel_requests_kept"  # noqa: S608
        )
        op.drop_table("_channel_requests_kept")
        return
    op.drop_constraint(op.f("ck_channel_requests_subject_kind"), "channel_requests", type_="check")
    op.drop_constraint(op.f("ck_channel_requests_status"), "channel_requests", type_="check")
    op.create_check_constraint(
        op.f("ck_channel_requests_status"), "channel_requests", _in("status", _OLD_STATUSES)
    )
    op.drop_constraint(op.f("ck_channel_requests_kind"), "channel_requests", type_="check")
    op.create_check_constraint(op.f("ck_channel_requests_kind"), "channel_requests", _in("kind", _OLD_KINDS))
    for column in ("subject_ref", "subject_kind", "answered_at", "due_at"):
        op.drop_column("channel_requests", column)
