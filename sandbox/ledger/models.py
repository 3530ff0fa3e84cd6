"""Ledger tables (SQLAlchemy 2, typed) on the control DB's declarative ``Base``.

Created by the Alembic migration ``0002_ledger`` (``0005_release_abandoned`` adds the
``abandoned`` status); keep the two in step.

* ``releases``: one row per charged query (reserved, then committed, failed or
  abandoned) with the released result once committed. Rows are never deleted.
* ``budget_spend``: one row per budget scope of a dataset, the running total of
  every charge drawn from it: ``(dataset, "*")`` the global cap,
  ``(project, <project id>)`` and ``(user, <user id>)``. Reservations lock these
  rows (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
  serialises writers), so two queries can never both spend the last epsilon.

Amounts are exact decimal strings (``sandbox.ledger.values.format_amount``):
SQLite has no exact numeric type, and sums are done in Python with Fractions.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sandbox.control.models import Base, UTCDateTime, utcnow
from sandbox.ledger.values import ReleaseStatus, Scope

AMOUNT_LENGTH = 64


def _enum_check(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Release(Base):
    """A DP release and its charge. ``status`` moves reserved → committed | failed | abandoned, never back."""

    __tablename__ = "releases"
    __table_args__ = (
        CheckConstraint(_enum_check("status", [s.value for s in ReleaseStatus]), name="status"),
        Index("ix_releases_cache", "project_id", "dataset", "fingerprint", "epsilon_requested"),
        Index("ix_releases_scope", "dataset", "project_id", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    dataset: Mapped[str] = mapped_column(String(64))
    # sha256 of the normalised query spec (sandbox.ledger.values.fingerprint).
    fingerprint: Mapped[str] = mapped_column(String(64))
    epsilon_requested: Mapped[str] = mapped_column(String(AMOUNT_LENGTH))
    # What the compiled measurement's privacy map says; spent from the moment of reservation.
    epsilon_charged: Mapped[str] = mapped_column(String(AMOUNT_LENGTH))
    status: Mapped[str] = mapped_column(String(16), default=ReleaseStatus.RESERVED.value)
    # Canonical JSON of the released cells (columns, rows, ci95, ...); NULL until committed.
    result: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    def result_data(self) -> dict[str, Any] | None:
        if self.result is None:
            return None
        value = json.loads(self.result)
        assert isinstance(value, dict)
        return value

    def __repr__(self) -> str:
        return f"Release({self.id!r}, dataset={self.dataset!r}, status={self.status!r})"


class BudgetSpend(Base):
    """Running total charged to one scope of one dataset (reserved + committed + failed + abandoned)."""

    __tablename__ = "budget_spend"
    __table_args__ = (
        CheckConstraint(_enum_check("scope", [s.value for s in Scope]), name="scope"),
        UniqueConstraint("dataset", "scope", "subject", name="uq_budget_spend_scope"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    # "*" for the dataset's global cap, else the project's or user's integer id as text.
    subject: Mapped[str] = mapped_column(String(64))
    spent: Mapped[str] = mapped_column(String(AMOUNT_LENGTH), default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __repr__(self) -> str:
        return f"BudgetSpend({self.dataset!r}, {self.scope}:{self.subject}, spent={self.spent})"


__all__ = ["AMOUNT_LENGTH", "BudgetSpend", "Release"]
