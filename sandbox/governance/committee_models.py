"""Expert-committee tables (SR-37) on the control DB's declarative ``Base`` (migration ``0006_committee``).

* ``committee_items``: one matter put to the committee: its *kind* (the four queues), its
  subject (a dataset, an application, or both), who raised it and why, and its status
  (``open`` → ``opinion_recorded`` / ``withdrawn``). ``departments`` holds the provider
  departments concerned at the time it was raised (JSON list), for who-may-see.
* ``committee_opinions``: the committee's opinion on an item (at most one): the opinion, its
  conditions, the reason, the date of the deliberation, who recorded it and when.
* ``committee_opinion_members``: the members (``expert`` accounts) who took part in it.

Rows are never deleted; state changes are columns plus an audit entry, in one transaction.
The states, kinds and opinions and their rules are in ``sandbox.governance.committee_rules``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

import sandbox.governance.models  # noqa: F401  (registers ``applications``, referred to below)
from sandbox.control.models import Base, UTCDateTime, utcnow
from sandbox.governance.committee_rules import ItemKind, ItemStatus, Opinion


def _check(column: str, values: type[ItemKind] | type[ItemStatus] | type[Opinion]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in sorted(values, key=lambda m: m.value))})"


class CommitteeItem(Base):
    __tablename__ = "committee_items"
    __table_args__ = (
        CheckConstraint(_check("kind", ItemKind), name="kind"),
        CheckConstraint(_check("status", ItemStatus), name="status"),
        CheckConstraint("dataset IS NOT NULL OR application_id IS NOT NULL", name="subject"),
        Index("ix_committee_items_status_kind", "status", "kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(24), default=ItemStatus.OPEN.value)
    dataset: Mapped[str | None] = mapped_column(String(64), default=None)
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id"), default=None, index=True
    )
    departments: Mapped[str] = mapped_column(Text, default="[]")  # JSON list, providers concerned
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    raised_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)  # opened by a flow, not by hand
    withdrawn_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text, default=None)


class CommitteeOpinion(Base):
    __tablename__ = "committee_opinions"
    __table_args__ = (CheckConstraint(_check("opinion", Opinion), name="opinion"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("committee_items.id"), unique=True)
    opinion: Mapped[str] = mapped_column(String(32))
    conditions: Mapped[str | None] = mapped_column(Text, default=None)
    reason: Mapped[str] = mapped_column(Text)
    decided_on: Mapped[date] = mapped_column(Date)  # the date the committee deliberated
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CommitteeOpinionMember(Base):
    __tablename__ = "committee_opinion_members"

    opinion_id: Mapped[int] = mapped_column(ForeignKey("committee_opinions.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)


COMMITTEE_TABLES = frozenset({"committee_items", "committee_opinions", "committee_opinion_members"})

__all__ = ["COMMITTEE_TABLES", "CommitteeItem", "CommitteeOpinion", "CommitteeOpinionMember"]
