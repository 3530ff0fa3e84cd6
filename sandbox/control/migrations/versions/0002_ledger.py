"""Ledger: releases and per-scope budget spend.

Revision ID: 0002_ledger
Revises: 0001_foundation
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ledger"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("epsilon_requested", sa.String(64), nullable=False),
        sa.Column("epsilon_charged", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.CheckConstraint("status IN ('reserved', 'committed', 'failed')", name=op.f("ck_releases_status")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_releases_project_id_projects")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_releases_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_releases")),
        sa.UniqueConstraint("request_id", name=op.f("uq_releases_request_id")),
    )
    op.create_index(
        "ix_releases_cache", "releases", ["project_id", "dataset", "fingerprint", "epsilon_requested"]
    )
    op.create_index("ix_releases_scope", "releases", ["dataset", "project_id", "user_id"])

    op.create_table(
        "budget_spend",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("spent", sa.String(64), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.CheckConstraint("scope IN ('dataset', 'project', 'user')", name=op.f("ck_budget_spend_scope")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_spend")),
        sa.UniqueConstraint("dataset", "scope", "subject", name=op.f("uq_budget_spend_scope")),
    )


def downgrade() -> None:
    op.drop_table("budget_spend")
    op.drop_index("ix_releases_scope", table_name="releases")
    op.drop_index("ix_releases_cache", table_name="releases")
    op.drop_table("releases")
