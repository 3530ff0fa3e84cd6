"""Governance tables on the control DB's declarative ``Base`` (migration ``0004_governance``).

* ``applications`` / ``application_datasets``: access applications (SR-12); a dataset is
  approved when a steward of every one of its provider departments approved it.
* ``agreements``: versioned data-use agreements (SR-13); ``document`` is the canonical JSON
  of the signed text and ``digest`` its SHA-256 (also in the audit entry).
* ``consents``: enterprise authorisations of a bank (SR-16); ``audit_hash`` is the hash of
  the chain entry that recorded the grant.
* ``violations``, ``disclosures``, ``budget_freezes``: sanctions (SR-31, SR-32).
* ``channel_requests`` (demand, correction and objection, SR-07 / SR-30) and ``usage_reports`` (SR-29).

Rows are never deleted; state changes are columns plus an audit entry. JSON columns hold
canonical JSON text (``sandbox.audit.chain.canonical_text``) so they read the same on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sandbox.audit.chain import canonical_text
from sandbox.control.models import Base, UTCDateTime, utcnow


class ApplicationStatus(StrEnum):
    SUBMITTED = "submitted"
    APPROVED = "approved"
    PARTIALLY_APPROVED = "partially_approved"
    REFUSED = "refused"


class ItemStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class AgreementStatus(StrEnum):
    ACTIVE = "active"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"


class ViolationCategory(StrEnum):
    ILLEGAL_ACQUISITION = "illegal_acquisition"
    BEYOND_SCENARIO = "beyond_scenario"
    INFRINGEMENT = "infringement"
    OTHER = "other"


class ViolationStatus(StrEnum):
    REPORTED = "reported"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    APPEALED = "appealed"
    UPHELD = "upheld"  # appeal refused: the sanction stands
    REINSTATED = "reinstated"  # appeal granted: access restored


class DisclosureStatus(StrEnum):
    PUBLISHED = "published"
    REINSTATED = "reinstated"  # kept on the list with the appeal outcome


class ChannelKind(StrEnum):
    DEMAND = "demand"
    CORRECTION = "correction"
    OBJECTION = "objection"  # 权益保护 (SR-30, migration 0007)


class DemandStatus(StrEnum):
    RECEIVED = "received"
    ANSWERED = "answered"
    OPENED = "opened"
    REFUSED = "refused"


class CorrectionStatus(StrEnum):
    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    CORRECTED = "corrected"
    REJECTED = "rejected"


class ObjectionStatus(StrEnum):
    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    UPHELD = "upheld"
    PARTLY_UPHELD = "partly_upheld"
    REJECTED = "rejected"


class ObjectionSubject(StrEnum):
    """What an objection is about besides its dataset (optional)."""

    LOOKUP = "lookup"  # a bank's record look-up: the seq of its audit entry
    CONSENT = "consent"  # an enterprise authorisation: its id
    RELEASE = "release"  # a DP release: its id


def _check(column: str, *enums: type[StrEnum]) -> str:
    values = sorted({member.value for enum in enums for member in enum})
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def dump(value: Any) -> str:
    return canonical_text(value)


def load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Application(Base):
    __tablename__ = "applications"
    __table_args__ = (CheckConstraint(_check("status", ApplicationStatus), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    applicant_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    organisation: Mapped[str | None] = mapped_column(String(200), default=None)
    organisation_uscc: Mapped[str | None] = mapped_column(String(18), default=None)
    scenario: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(Text)
    duration_days: Mapped[int] = mapped_column(Integer)
    security_measures: Mapped[str] = mapped_column(Text)
    members: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of usernames
    undertaking_signed: Mapped[bool] = mapped_column(Boolean, default=False)
    renews_agreement_id: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(24), default=ApplicationStatus.SUBMITTED.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ApplicationDataset(Base):
    __tablename__ = "application_datasets"
    __table_args__ = (
        CheckConstraint(_check("status", ItemStatus), name="status"),
        UniqueConstraint("application_id", "dataset", name="uq_application_datasets_application_dataset"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    dataset: Mapped[str] = mapped_column(String(64))
    columns: Mapped[str | None] = mapped_column(Text, default=None)  # JSON list, None = all
    departments: Mapped[str] = mapped_column(Text, default="[]")  # JSON list, providers at submission
    # JSON {department: {"steward", "approve", "reason", "at"}}: one decision per provider department.
    decisions: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.PENDING.value)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)


class Agreement(Base):
    __tablename__ = "agreements"
    __table_args__ = (
        CheckConstraint(_check("status", AgreementStatus), name="status"),
        UniqueConstraint("number", "version", name="uq_agreements_number_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("agreements.id"), default=None)
    scenario: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(Text)
    datasets: Mapped[str] = mapped_column(Text)  # JSON list
    document: Mapped[str] = mapped_column(Text)  # canonical JSON of the agreement text
    digest: Mapped[str] = mapped_column(String(64))
    term_start: Mapped[datetime] = mapped_column(UTCDateTime())
    term_end: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default=AgreementStatus.ACTIVE.value)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    withdrawn_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def ref(self) -> str:
        return f"{self.number} v{self.version}"

    def dataset_ids(self) -> list[str]:
        return [str(d) for d in load(self.datasets)]

    def is_in_force(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.status == AgreementStatus.ACTIVE and self.term_start <= now < self.term_end


class Consent(Base):
    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_uscc_bank", "uscc", "bank_org"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    uscc: Mapped[str] = mapped_column(String(18))
    bank_org: Mapped[str] = mapped_column(String(200))
    datasets: Mapped[str] = mapped_column(Text)  # JSON list
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_reason: Mapped[str | None] = mapped_column(Text, default=None)
    audit_hash: Mapped[str | None] = mapped_column(String(64), default=None)

    def dataset_ids(self) -> list[str]:
        return [str(d) for d in load(self.datasets)]

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.revoked_at is None and now < self.expires_at


class Violation(Base):
    __tablename__ = "violations"
    __table_args__ = (
        CheckConstraint(_check("status", ViolationStatus), name="status"),
        CheckConstraint(_check("category", ViolationCategory), name="category"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    dataset: Mapped[str | None] = mapped_column(String(64), default=None)
    project: Mapped[str | None] = mapped_column(String(64), default=None)
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ViolationStatus.REPORTED.value)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    decision_reason: Mapped[str | None] = mapped_column(Text, default=None)
    actions: Mapped[str | None] = mapped_column(Text, default=None)  # JSON: what confirmation did
    appeal_grounds: Mapped[str | None] = mapped_column(Text, default=None)
    appealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    appeal_decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    appeal_decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    appeal_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Disclosure(Base):
    """An entry of the public disclosure list (SR-32). Public: no personal data beyond the
    account's pseudonymous id and its organisation."""

    __tablename__ = "disclosures"
    __table_args__ = (CheckConstraint(_check("status", DisclosureStatus), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    violation_id: Mapped[int] = mapped_column(ForeignKey("violations.id"), unique=True)
    subject: Mapped[str] = mapped_column(String(64))
    organisation: Mapped[str | None] = mapped_column(String(200), default=None)
    category: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(Text)
    measures: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DisclosureStatus.PUBLISHED.value)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class BudgetFreeze(Base):
    """A user's privacy budget frozen by a confirmed violation (lifted on reinstatement)."""

    __tablename__ = "budget_freezes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    violation_id: Mapped[int] = mapped_column(ForeignKey("violations.id"))
    frozen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ChannelRequest(Base):
    """A demand request (开放需求, SR-07), a data-correction report (数据纠错, SR-30) or an
    objection (权益保护, SR-30, from migration ``0007_channel_sla``).

    ``due_at`` is set at filing from the kind's SLA (``channels.sla_days`` in platform.yaml);
    ``answered_at`` the first time the request reaches an answering status
    (``sandbox.governance.channel_rules.ANSWERS``); the clock is derived from the two.
    """

    __tablename__ = "channel_requests"
    __table_args__ = (
        CheckConstraint(_check("kind", ChannelKind), name="kind"),
        CheckConstraint(_check("status", DemandStatus, CorrectionStatus, ObjectionStatus), name="status"),
        CheckConstraint(_check("subject_kind", ObjectionSubject), name="subject_kind"),
        Index("ix_channel_requests_kind_department", "kind", "department"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    filed_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    dataset: Mapped[str | None] = mapped_column(String(64), default=None)
    title: Mapped[str] = mapped_column(String(200))
    columns: Mapped[str | None] = mapped_column(Text, default=None)  # JSON list
    scenario: Mapped[str | None] = mapped_column(Text, default=None)
    description: Mapped[str] = mapped_column(Text)
    department: Mapped[str | None] = mapped_column(String(64), default=None)  # None: the operator
    status: Mapped[str] = mapped_column(String(16), default="received")
    response: Mapped[str | None] = mapped_column(Text, default=None)
    responded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    subject_kind: Mapped[str | None] = mapped_column(String(16), default=None)  # objections
    subject_ref: Mapped[str | None] = mapped_column(String(64), default=None)


class UsageReport(Base):
    """A 数据利用情况报告 of a project (SR-29)."""

    __tablename__ = "usage_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    agreement_id: Mapped[int | None] = mapped_column(ForeignKey("agreements.id"), default=None)
    filed_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    papers: Mapped[int] = mapped_column(Integer, default=0)
    products: Mapped[int] = mapped_column(Integer, default=0)
    loans_supported: Mapped[int] = mapped_column(Integer, default=0)
    outputs: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of titles / citations
    benefits: Mapped[str] = mapped_column(Text, default="")
    incidents: Mapped[str] = mapped_column(Text, default="")
    cites_sources: Mapped[bool] = mapped_column(Boolean, default=True)
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


GOVERNANCE_TABLES = frozenset(
    {
        "applications",
        "application_datasets",
        "agreements",
        "consents",
        "violations",
        "disclosures",
        "budget_freezes",
        "channel_requests",
        "usage_reports",
    }
)

__all__ = [
    "GOVERNANCE_TABLES",
    "Agreement",
    "AgreementStatus",
    "Application",
    "ApplicationDataset",
    "ApplicationStatus",
    "BudgetFreeze",
    "ChannelKind",
    "ChannelRequest",
    "Consent",
    "CorrectionStatus",
    "DemandStatus",
    "Disclosure",
    "DisclosureStatus",
    "ItemStatus",
    "ObjectionStatus",
    "ObjectionSubject",
    "UsageReport",
    "Violation",
    "ViolationCategory",
    "ViolationStatus",
    "dump",
    "load",
]
