"""Governance: applications, agreements, consents, violations, disclosures, channels, usage reports.

Revision ID: 0004_governance
Revises: 0003_export

Models: ``sandbox.governance.models`` (same declarative ``Base``); keep the two in step
(``tests/integration/test_governance_migration.py`` compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_governance"
down_revision: str | Sequence[str] | None = "0003_export"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in sorted(values))})"


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("applicant_id", sa.Integer(), nullable=False),
        sa.Column("organisation", sa.String(200), nullable=True),
        sa.Column("organisation_uscc", sa.String(18), nullable=True),
        sa.Column("scenario", sa.String(200), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("duration_days", sa.Integer(), nullable=False),
        sa.Column("security_measures", sa.Text(), nullable=False),
        sa.Column("members", sa.Text(), nullable=False),
        sa.Column("undertaking_signed", sa.Boolean(), nullable=False),
        sa.Column("renews_agreement_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("decided_at", _ts(), nullable=True),
        sa.CheckConstraint(
            _in("status", "approved", "partially_approved", "refused", "submitted"),
            name=op.f("ck_applications_status"),
        ),
        _fk("applications", "applicant_id", "users"),
        _fk("applications", "project_id", "projects"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applications")),
    )
    op.create_index(op.f("ix_applications_project_id"), "applications", ["project_id"])

    op.create_table(
        "application_datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("columns", sa.Text(), nullable=True),
        sa.Column("departments", sa.Text(), nullable=False),
        sa.Column("decisions", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", _ts(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            _in("status", "approved", "pending", "refused"), name=op.f("ck_application_datasets_status")
        ),
        _fk("application_datasets", "application_id", "applications"),
        _fk("application_datasets", "decided_by", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_application_datasets")),
        sa.UniqueConstraint("application_id", "dataset", name="uq_application_datasets_application_dataset"),
    )

    op.create_table(
        "agreements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("scenario", sa.String(200), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("datasets", sa.Text(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("term_start", _ts(), nullable=False),
        sa.Column("term_end", _ts(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("withdrawn_at", _ts(), nullable=True),
        sa.Column("withdrawn_by", sa.Integer(), nullable=True),
        sa.Column("withdrawn_reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint(
            _in("status", "active", "superseded", "withdrawn"), name=op.f("ck_agreements_status")
        ),
        _fk("agreements", "application_id", "applications"),
        _fk("agreements", "project_id", "projects"),
        _fk("agreements", "supersedes_id", "agreements"),
        _fk("agreements", "withdrawn_by", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreements")),
        sa.UniqueConstraint("number", "version", name="uq_agreements_number_version"),
    )
    op.create_index(op.f("ix_agreements_project_id"), "agreements", ["project_id"])

    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enterprise_id", sa.Integer(), nullable=False),
        sa.Column("uscc", sa.String(18), nullable=False),
        sa.Column("bank_org", sa.String(200), nullable=False),
        sa.Column("datasets", sa.Text(), nullable=False),
        sa.Column("granted_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.Column("audit_hash", sa.String(64), nullable=True),
        _fk("consents", "enterprise_id", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_index("ix_consents_uscc_bank", "consents", ["uscc", "bank_org"])

    op.create_table(
        "violations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=True),
        sa.Column("project", sa.String(64), nullable=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", _ts(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("actions", sa.Text(), nullable=True),
        sa.Column("appeal_grounds", sa.Text(), nullable=True),
        sa.Column("appealed_at", _ts(), nullable=True),
        sa.Column("appeal_decided_by", sa.Integer(), nullable=True),
        sa.Column("appeal_decided_at", _ts(), nullable=True),
        sa.Column("appeal_reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.CheckConstraint(
            _in("category", "beyond_scenario", "illegal_acquisition", "infringement", "other"),
            name=op.f("ck_violations_category"),
        ),
        sa.CheckConstraint(
            _in("status", "appealed", "confirmed", "dismissed", "reinstated", "reported", "upheld"),
            name=op.f("ck_violations_status"),
        ),
        _fk("violations", "appeal_decided_by", "users"),
        _fk("violations", "decided_by", "users"),
        _fk("violations", "reporter_id", "users"),
        _fk("violations", "subject_id", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_violations")),
    )
    op.create_index(op.f("ix_violations_subject_id"), "violations", ["subject_id"])

    op.create_table(
        "disclosures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("violation_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("organisation", sa.String(200), nullable=True),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("measures", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("published_at", _ts(), nullable=False),
        sa.Column("published_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", _ts(), nullable=True),
        sa.CheckConstraint(_in("status", "published", "reinstated"), name=op.f("ck_disclosures_status")),
        _fk("disclosures", "published_by", "users"),
        _fk("disclosures", "violation_id", "violations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosures")),
        sa.UniqueConstraint("violation_id", name=op.f("uq_disclosures_violation_id")),
    )

    op.create_table(
        "budget_freezes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("violation_id", sa.Integer(), nullable=False),
        sa.Column("frozen_at", _ts(), nullable=False),
        sa.Column("lifted_at", _ts(), nullable=True),
        _fk("budget_freezes", "user_id", "users"),
        _fk("budget_freezes", "violation_id", "violations"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_freezes")),
    )
    op.create_index(op.f("ix_budget_freezes_user_id"), "budget_freezes", ["user_id"])

    op.create_table(
        "channel_requests",
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
        sa.CheckConstraint(_in("kind", "correction", "demand"), name=op.f("ck_channel_requests_kind")),
        sa.CheckConstraint(
            _in(
                "status", "acknowledged", "answered", "corrected", "opened", "received", "refused", "rejected"
            ),
            name=op.f("ck_channel_requests_status"),
        ),
        _fk("channel_requests", "filed_by", "users"),
        _fk("channel_requests", "responded_by", "users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_requests")),
    )
    op.create_index("ix_channel_requests_kind_department", "channel_requests", ["kind", "department"])

    op.create_table(
        "usage_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("agreement_id", sa.Integer(), nullable=True),
        sa.Column("filed_by", sa.Integer(), nullable=False),
        sa.Column("papers", sa.Integer(), nullable=False),
        sa.Column("products", sa.Integer(), nullable=False),
        sa.Column("loans_supported", sa.Integer(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("benefits", sa.Text(), nullable=False),
        sa.Column("incidents", sa.Text(), nullable=False),
        sa.Column("cites_sources", sa.Boolean(), nullable=False),
        sa.Column("filed_at", _ts(), nullable=False),
        _fk("usage_reports", "agreement_id", "agreements"),
        _fk("usage_reports", "filed_by", "users"),
        _fk("usage_reports", "project_id", "projects"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_reports")),
    )
    op.create_index(op.f("ix_usage_reports_project_id"), "usage_reports", ["project_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_reports_project_id"), table_name="usage_reports")
    op.drop_table("usage_reports")
    op.drop_index("ix_channel_requests_kind_department", table_name="channel_requests")
    op.drop_table("channel_requests")
    op.drop_index(op.f("ix_budget_freezes_user_id"), table_name="budget_freezes")
    op.drop_table("budget_freezes")
    op.drop_table("disclosures")
    op.drop_index(op.f("ix_violations_subject_id"), table_name="violations")
    op.drop_table("violations")
    op.drop_index("ix_consents_uscc_bank", table_name="consents")
    op.drop_table("consents")
    op.drop_index(op.f("ix_agreements_project_id"), table_name="agreements")
    op.drop_table("agreements")
    op.drop_table("application_datasets")
    op.drop_index(op.f("ix_applications_project_id"), table_name="applications")
    op.drop_table("applications")
