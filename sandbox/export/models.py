"""Export-gate tables (SQLAlchemy 2, typed) on the control DB's declarative ``Base``.

Created by the Alembic migration ``0003_export``; keep the two in step.

* ``export_requests``: one row per submitted file. The file itself lives in the
  content-addressed quarantine (``sha256``); JSON columns hold the lineage
  (``datasets``, ``departments``), the check results and the traced release ids.
  ``status`` follows :data:`sandbox.export.states.TRANSITIONS`. Rows are never deleted.
* ``export_reviews``: one steward decision per reviewer and request.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sandbox.control.models import Base, Project, User, UTCDateTime, utcnow
from sandbox.export.states import ExportStatus
from sandbox.policy.models import Tier


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ExportRequest(Base):
    __tablename__ = "export_requests"
    __table_args__ = (
        CheckConstraint(_in("status", [s.value for s in ExportStatus]), name="status"),
        CheckConstraint(_in("tier", [t.value for t in Tier]), name="tier"),
        Index("ix_export_requests_project_status", "project_id", "status"),
        Index("ix_export_requests_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=ExportStatus.SUBMITTED.value)
    # Strictest tier of the source datasets (highest wins, SR-03).
    tier: Mapped[str] = mapped_column(String(16))
    datasets: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of dataset ids
    departments: Mapped[str] = mapped_column(Text, default="[]")  # JSON list: whose stewards review
    reviewers_required: Mapped[int] = mapped_column(Integer, default=0)
    checks: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of {name, verdict, reason}
    release_ids: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of traced DP releases
    decision_reason: Mapped[str | None] = mapped_column(Text, default=None)
    manifest: Mapped[str | None] = mapped_column(Text, default=None)  # JSON, once released
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    project: Mapped[Project] = relationship(foreign_keys=[project_id])
    requester: Mapped[User] = relationship(foreign_keys=[requester_id])
    reviews: Mapped[list[ExportReview]] = relationship(back_populates="request", order_by="ExportReview.id")

    def json_list(self, field: str) -> list[Any]:
        value = json.loads(getattr(self, field))
        assert isinstance(value, list)
        return value

    def __repr__(self) -> str:
        return f"ExportRequest({self.id}, status={self.status!r}, sha256={self.sha256[:12]}…)"


class ExportReview(Base):
    __tablename__ = "export_reviews"
    __table_args__ = (
        CheckConstraint("decision IN ('approve', 'reject')", name="decision"),
        UniqueConstraint("request_id", "reviewer_id", name="uq_export_reviews_request_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("export_requests.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    department: Mapped[str | None] = mapped_column(String(64), default=None)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    request: Mapped[ExportRequest] = relationship(back_populates="reviews")
    reviewer: Mapped[User] = relationship(foreign_keys=[reviewer_id])


__all__ = ["ExportRequest", "ExportReview"]
