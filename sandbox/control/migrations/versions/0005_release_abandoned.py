"""Ledger: the terminal release status ``abandoned`` (a reservation whose process died).

Revision ID: 0005_release_abandoned
Revises: 0004_governance

Only the CHECK constraint on ``releases.status`` changes (``sandbox.ledger.models.Release``
and ``sandbox.ledger.values.ReleaseStatus``). On SQLite the table is copied (batch mode).
Downgrading turns ``abandoned`` rows into ``failed`` ones: both keep their charge, so
the budgets do not change.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_release_abandoned"
down_revision: str | Sequence[str] | None = "0004_governance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("reserved", "committed", "failed")
_NEW = (*_OLD, "abandoned")


def _in(values: Sequence[str]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def _set_statuses(values: Sequence[str]) -> None:
    with op.batch_alter_table("releases", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_releases_status"), type_="check")
        batch.create_check_constraint(op.f("ck_releases_status"), _in(values))


def upgrade() -> None:
    _set_statuses(_NEW)


def downgrade() -> None:
    op.execute("UPDATE releases SET status = 'failed' WHERE status = 'abandoned'")
    _set_statuses(_OLD)
