"""Expert committee (SR-37): the account role ``expert`` and the committee's items and opinions.

Revision ID: 0006_committee
Revises: 0005_release_abandoned

Models: ``sandbox.governance.committee_models`` and ``sandbox.control.models.UserRole``; keep them
in step (``tests/integration/test_committee_migration.py`` compares them).

``users.role`` gets ``expert`` in its CHECK constraint. On PostgreSQL the constraint is
replaced. On SQLite a CHECK cannot be altered and ``users`` is referenced by most tables, so
Alembic's batch copy (create, copy, drop, rename) would break the foreign keys of every row
that refers to a user: instead, with foreign keys deferred to the commit, the rows are kept
aside, ``users`` is dropped and created again under its own name, and the rows go back; the
referring rows find their users again before the commit checks them.

Downgrading drops the committee tables and turns ``expert`` accounts into *suspended*
``researcher`` accounts (no project, no access; the old schema has no such role).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_committee"
down_revision: str | Sequence[str] | None = "0005_release_abandoned"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_ROLES = ("researcher", "bank", "enterprise", "steward", "admin", "auditor")
_NEW_ROLES = (*_OLD_ROLES, "expert")
_USER_COLUMNS = "id, username, role, organisation, department, uscc, status, password_hash, created_at"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def _set_roles(roles: Sequence[str]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_users_role"), "users", type_="check")
        op.create_check_constraint(op.f("ck_users_role"), "users", _in("role", roles))
        return
    op.execute("PRAGMA defer_foreign_keys = ON")  # until the commit; reset by SQLite after it
    op.execute(f"CREATE TABLE _users_kept AS SELECT {_USER_COLUMNS} FROM users")  # noqa: S608
    op.drop_table("users")
    op.create_table(  # as 0001_foundation, with the new roles
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("organisation", sa.String(200), nullable=True),
        sa.Column("department", sa.String(64), nullable=True),
        sa.Column("uscc", sa.String(18), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint(_in("role", roles), name=op.f("ck_users_role")),
        sa.CheckConstraint("status IN ('approved', 'suspended', 'revoked')", name=op.f("ck_users_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.execute(f"INSERT INTO users ({_USER_COLUMNS}) SELECT {_USER_COLUMNS} FROM _users_kept")  # noqa: S608
    op.drop_table("_users_kept")


def upgrade() -> None:
    _set_roles(_NEW_ROLES)
    op.create_table(
        "committee_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=True),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("departments", sa.Text(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("raised_by", sa.Integer(), nullable=False),
        sa.Column("raised_at", _ts(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("withdrawn_by", sa.Integer(), nullable=True),
        sa.Column("withdrawn_at", _ts(), nullable=True),
        sa.Column("withdrawn_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            _in(
                "kind",
                (
                    "classification_dispute",
                    "declassification_proposal",
                    "high_risk_application",
                    "scenario_evaluation",
                ),
            ),
            name=op.f("ck_committee_items_kind"),
        ),
        sa.CheckConstraint(
            _in("status", ("open", "opinion_recorded", "withdrawn")), name=op.f("ck_committee_items_status")
        ),
        sa.CheckConstraint(
            "dataset IS NOT NULL OR application_id IS NOT NULL", name=op.f("ck_committee_items_subject")
        ),
        _fk("committee_items", "application_id", "applications"),
        _fk("committee_items", "raised_by", "users"),
        _fk("committee_items", "withdrawn_by", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_committee_items")),
    )
    op.create_index(op.f("ix_committee_items_application_id"), "committee_items", ["application_id"])
    op.create_index("ix_committee_items_status_kind", "committee_items", ["status", "kind"])

    op.create_table(
        "committee_opinions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("opinion", sa.String(32), nullable=False),
        sa.Column("conditions", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.CheckConstraint(
            _in("opinion", ("approve", "approve_with_conditions", "needs_more_info", "reject")),
            name=op.f("ck_committee_opinions_opinion"),
        ),
        _fk("committee_opinions", "item_id", "committee_items"),
        _fk("committee_opinions", "recorded_by", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_committee_opinions")),
        sa.UniqueConstraint("item_id", name=op.f("uq_committee_opinions_item_id")),
    )

    op.create_table(
        "committee_opinion_members",
        sa.Column("opinion_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        _fk("committee_opinion_members", "opinion_id", "committee_opinions"),
        _fk("committee_opinion_members", "user_id", "users"),
        sa.PrimaryKeyConstraint("opinion_id", "user_id", name=op.f("pk_committee_opinion_members")),
    )


def downgrade() -> None:
    op.drop_table("committee_opinion_members")
    op.drop_table("committee_opinions")
    op.drop_index("ix_committee_items_status_kind", table_name="committee_items")
    op.drop_index(op.f("ix_committee_items_application_id"), table_name="committee_items")
    op.drop_table("committee_items")
    op.execute("UPDATE users SET role = 'researcher', status = 'suspended' WHERE role = 'expert'")
    _set_roles(_OLD_ROLES)
