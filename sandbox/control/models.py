"""Control-DB tables (SQLAlchemy 2, typed): users, projects, members, grants, audit log.

The schema is created by the Alembic migration ``0001_foundation`` (the ``expert`` role
of ``users.role`` by ``0006_committee``); keep the two in step
(``tests/integration/test_control_migrations.py`` compares them).

Times are stored in UTC and always come back timezone-aware (``UTCDateTime``), so
SQLite and PostgreSQL behave the same. The audit timestamp ``ts`` is text: it is
part of the hashed body and must round-trip byte for byte.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UserRole(StrEnum):
    """Roles of DESIGN §1 (``sandbox.policy.models.Role``), plus ``expert`` (REQUIREMENTS §4)."""

    RESEARCHER = "researcher"
    BANK = "bank"
    ENTERPRISE = "enterprise"
    STEWARD = "steward"
    ADMIN = "admin"
    AUDITOR = "auditor"
    EXPERT = "expert"  # member of the expert committee (专家委员会, SR-37)


class UserStatus(StrEnum):
    APPROVED = "approved"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class MemberRole(StrEnum):
    LEAD = "lead"
    MEMBER = "member"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass a timezone-aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum_check(column: str, enum: type[StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """An account. ``username`` is the pseudonymous id used in the audit log."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_enum_check("role", UserRole), name="role"),
        CheckConstraint(_enum_check("status", UserStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    organisation: Mapped[str | None] = mapped_column(String(200), default=None)
    # Provider department id from platform.yaml (stewards).
    department: Mapped[str | None] = mapped_column(String(64), default=None)
    # Unified social credit code of the enterprise (enterprise users).
    uscc: Mapped[str | None] = mapped_column(String(18), default=None)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.APPROVED.value)
    # argon2id encoded hash; None for accounts that only sign in through the hub.
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    memberships: Mapped[list[ProjectMember]] = relationship(back_populates="user")

    @property
    def is_active(self) -> bool:
        return self.status == UserStatus.APPROVED.value

    def __repr__(self) -> str:
        return f"User({self.username!r}, role={self.role!r}, status={self.status!r})"


class Project(Base):
    """A joint-lab project (e.g. ``fin-lab``); grants and budgets attach to it."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    lead_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    lead: Mapped[User] = relationship(foreign_keys=[lead_id])
    members: Mapped[list[ProjectMember]] = relationship(
        back_populates="project", cascade="all, delete-orphan"
    )
    grants: Mapped[list[Grant]] = relationship(back_populates="project")

    def __repr__(self) -> str:
        return f"Project({self.name!r})"


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (CheckConstraint(_enum_check("role", MemberRole), name="role"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default=MemberRole.MEMBER.value)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    project: Mapped[Project] = relationship(back_populates="members")
    user: Mapped[User] = relationship(back_populates="memberships")


class Grant(Base):
    """A dataset granted to a project (result of an approved application).

    Active when ``revoked_at`` is NULL and ``expires_at`` is NULL or in the future.
    Rows are never deleted; revocation sets ``revoked_at``.
    """

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_project_dataset", "project_id", "dataset"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    dataset: Mapped[str] = mapped_column(String(64))
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Where the grant comes from: "demo seed", "application 12", "cli", ...
    source: Mapped[str] = mapped_column(Text, default="")

    project: Mapped[Project] = relationship(back_populates="grants")
    granter: Mapped[User | None] = relationship(foreign_keys=[granted_by])

    def is_active(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    def __repr__(self) -> str:
        return f"Grant({self.id}, project_id={self.project_id}, dataset={self.dataset!r})"


class AuditEntry(Base):
    """One link of the hash chain. Written only by ``sandbox.audit.store.append``.

    ``data`` holds the canonical JSON of the event payload (``sandbox.audit.chain``);
    ``hash = sha256(prev_hash || canonical_json({seq, ts, kind, actor, data}))``.
    ``prev_hash`` is unique, so two writers can never fork the chain.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    def payload(self) -> dict[str, Any]:
        """The event payload as a dict (``data`` parsed)."""
        value = json.loads(self.data)
        assert isinstance(value, dict)
        return value

    def __repr__(self) -> str:
        return f"AuditEntry(seq={self.seq}, kind={self.kind!r}, actor={self.actor!r})"


class AuditHead(Base):
    """The chain head (one row, id 1): last ``seq`` and its ``hash``.

    Updated in the same transaction as every append. Appenders lock this row
    (``SELECT ... FOR UPDATE`` on PostgreSQL), and ``verify`` compares it with the
    end of the log, so deleting the newest entries is detected too.
    """

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


__all__ = [
    "AuditEntry",
    "AuditHead",
    "Base",
    "Grant",
    "MemberRole",
    "Project",
    "ProjectMember",
    "UTCDateTime",
    "User",
    "UserRole",
    "UserStatus",
    "utcnow",
]
