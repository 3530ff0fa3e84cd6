"""Export gate: export requests and steward reviews.

Revision ID: 0003_export
Revises: 0002_ledger
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_export"
down_revision: str | Sequence[str] | None = "0002_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "'submitted', 'checked', 'under_review', 'approved', 'rejected', 'released', 'withdrawn'"
_TIERS = "'open', 'conditional', 'restricted'"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "export_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("datasets", sa.Text(), nullable=False),
        sa.Column("departments", sa.Text(), nullable=False),
        sa.Column("reviewers_required", sa.Integer(), nullable=False),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.Column("release_ids", sa.Text(), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("decided_at", _ts(), nullable=True),
        sa.Column("released_at", _ts(), nullable=True),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_export_requests_status")),
        sa.CheckConstraint(f"tier IN ({_TIERS})", name=op.f("ck_export_requests_tier")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_export_requests_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"], ["users.id"], name=op.f("fk_export_requests_requester_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_requests")),
    )
    op.create_index("ix_export_requests_project_status", "export_requests", ["project_id", "status"])
    op.create_index("ix_export_requests_sha256", "export_requests", ["sha256"])
    op.create_table(
        "export_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("department", sa.String(64), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint("decision IN ('approve', 'reject')", name=op.f("ck_export_reviews_decision")),
        sa.ForeignKeyConstraint(
            ["request_id"], ["export_requests.id"], name=op.f("fk_export_reviews_request_id_export_requests")
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_export_reviews_reviewer_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_reviews")),
        sa.UniqueConstraint("request_id", "reviewer_id", name=op.f("uq_export_reviews_request_id")),
    )


def downgrade() -> None:
    op.drop_table("export_reviews")
    op.drop_index("ix_export_requests_sha256", table_name="export_requests")
    op.drop_index("ix_export_requests_project_status", table_name="export_requests")
    op.drop_table("export_requests")
