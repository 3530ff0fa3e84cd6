"""Users, projects, members and grants. Every change appends an audit event.

All functions take the caller's ``Session`` and work inside its transaction (use
``session_scope(engine, immediate=True)``: they append to the audit log).
``actor`` is the username of whoever makes the change (None for the system).
The audit log receives pseudonymous ids (usernames, project names, dataset ids),
never passwords, hashes or personal data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.access.errors import AlreadyExists, InvalidRequest
from sandbox.audit.store import append
from sandbox.control.models import (
    Grant,
    MemberRole,
    Project,
    ProjectMember,
    User,
    UserRole,
    UserStatus,
    utcnow,
)
from sandbox.errors import NotFound

USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{1,63}$")
USCC_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
_dummy_hash: str | None = None


class _DatasetLookup(Protocol):
    def dataset(self, dataset_id: str) -> object: ...


# --- passwords ---------------------------------------------------------------------------------


def set_password_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Replace the argon2 hasher (tests use cheap parameters); returns the previous one."""
    global _hasher, _dummy_hash
    previous, _hasher, _dummy_hash = _hasher, hasher, None
    return previous


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"Password too short (at least {MIN_PASSWORD_LENGTH} characters).",
            hint="Use a longer password, or omit it to have one generated.",
        )
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; False for a wrong password or a missing hash."""
    global _dummy_hash
    if password_hash is None:
        # Same work as a real check, so timing does not reveal unknown accounts.
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash("not-a-real-password")
        password_hash = _dummy_hash
        password = password + "\x00"
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# --- users -------------------------------------------------------------------------------------


def find_user(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).one_or_none()


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"No user {username!r}.", hint="`sandbox user list` shows the accounts.")
    return user


def list_users(session: Session, *, role: str | None = None, status: str | None = None) -> list[User]:
    query = select(User).order_by(User.username)
    if role is not None:
        query = query.where(User.role == role)
    if status is not None:
        query = query.where(User.status == status)
    return list(session.scalars(query))


def _actor_id(session: Session, actor: str | None) -> int | None:
    if actor is None:
        return None
    user = find_user(session, actor)
    return user.id if user is not None else None


def _check_user_fields(role: str, department: str | None, uscc: str | None) -> None:
    if role not in {r.value for r in UserRole}:
        raise InvalidRequest(
            f"Unknown role {role!r}.", hint=f"Use one of: {', '.join(r.value for r in UserRole)}."
        )
    if role == UserRole.STEWARD and not department:
        raise InvalidRequest(
            "A steward needs a provider department.",
            hint="Pass the department id from platform.yaml (e.g. --department tax_bureau).",
        )
    if role == UserRole.ENTERPRISE and not uscc:
        raise InvalidRequest(
            "An enterprise user needs the enterprise's unified social credit code.", hint="Pass --uscc."
        )
    if uscc is not None and not USCC_RE.match(uscc):
        raise InvalidRequest(
            "The unified social credit code must be 18 characters: digits and capital letters "
            "except I, O, S, V and Z.",
            hint="Check the code (GB 32100-2015).",
        )


def create_user(
    session: Session,
    username: str,
    role: str,
    *,
    password: str | None = None,
    organisation: str | None = None,
    department: str | None = None,
    uscc: str | None = None,
    status: str = UserStatus.APPROVED,
    actor: str | None = None,
) -> User:
    """Create an account (argon2id password hash when a password is given)."""
    if not USERNAME_RE.match(username):
        raise InvalidRequest(
            f"Invalid username {username!r}.",
            hint="Use 2-64 characters: lowercase letters, digits, '_', '.', '-', starting with a letter.",
        )
    _check_user_fields(role, department, uscc)
    if status not in {s.value for s in UserStatus}:
        raise InvalidRequest(f"Unknown status {status!r}.", hint="Use approved, suspended or revoked.")
    if find_user(session, username) is not None:
        raise AlreadyExists(f"User {username!r} already exists.")
    user = User(
        username=username,
        role=str(role),
        organisation=organisation,
        department=department,
        uscc=uscc,
        status=str(status),
        password_hash=hash_password(password) if password is not None else None,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    data: dict[str, object] = {"user": username, "role": str(role), "status": str(status)}
    if organisation:
        data["organisation"] = organisation
    if department:
        data["department"] = department
    append(session, "user.created", actor, data)
    return user


def set_password(session: Session, username: str, password: str, *, actor: str | None) -> None:
    user = get_user(session, username)
    user.password_hash = hash_password(password)
    append(session, "user.password_set", actor, {"user": username})


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user when the password matches and the account is approved; else None."""
    user = find_user(session, username)
    ok = verify_password(user.password_hash if user is not None else None, password)
    if user is None or not ok or user.status != UserStatus.APPROVED:
        return None
    return user


def set_status(
    session: Session, username: str, status: str, *, actor: str | None, reason: str | None = None
) -> bool:
    """Approve, suspend, revoke or reinstate an account. False (and no event) if unchanged."""
    if status not in {s.value for s in UserStatus}:
        raise InvalidRequest(f"Unknown status {status!r}.", hint="Use approved, suspended or revoked.")
    user = get_user(session, username)
    if user.status == status:
        return False
    previous = user.status
    user.status = str(status)
    data: dict[str, object] = {"user": username, "status": str(status), "previous": previous}
    if reason:
        data["reason"] = reason
    append(session, "user.status_changed", actor, data)
    return True


# --- projects ----------------------------------------------------------------------------------


def find_project(session: Session, name: str) -> Project | None:
    return session.scalars(select(Project).where(Project.name == name)).one_or_none()


def get_project(session: Session, name: str) -> Project:
    project = find_project(session, name)
    if project is None:
        raise NotFound(f"No project {name!r}.", hint="`sandbox project list` shows the projects.")
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.name)))


def create_project(session: Session, name: str, *, title: str, lead: str, actor: str | None) -> Project:
    """Create a project; its lead becomes a member with role ``lead``."""
    if not PROJECT_RE.match(name):
        raise InvalidRequest(
            f"Invalid project name {name!r}.",
            hint="Use 2-64 characters: lowercase letters, digits and '-', starting with a letter "
            "(e.g. fin-lab).",
        )
    if find_project(session, name) is not None:
        raise AlreadyExists(f"Project {name!r} already exists.")
    lead_user = get_user(session, lead)
    project = Project(name=name, title=title, lead_id=lead_user.id, created_at=utcnow())
    session.add(project)
    session.flush()
    session.add(ProjectMember(project_id=project.id, user_id=lead_user.id, role=MemberRole.LEAD.value))
    session.flush()
    append(session, "project.created", actor, {"project": name, "lead": lead})
    return project


def membership(session: Session, project: Project, user: User) -> ProjectMember | None:
    return session.get(ProjectMember, (project.id, user.id))


def is_member(session: Session, project: str, username: str) -> bool:
    p, u = find_project(session, project), find_user(session, username)
    return p is not None and u is not None and membership(session, p, u) is not None


def members(session: Session, project: str) -> list[tuple[User, str]]:
    """(user, member role) pairs of a project, by username."""
    p = get_project(session, project)
    rows = session.execute(
        select(User, ProjectMember.role)
        .join(ProjectMember, ProjectMember.user_id == User.id)
        .where(ProjectMember.project_id == p.id)
        .order_by(User.username)
    ).all()
    return [(user, role) for user, role in rows]


def add_member(
    session: Session, project: str, username: str, *, actor: str | None, role: str = MemberRole.MEMBER
) -> bool:
    """Add ``username`` to ``project``. False (and no event) if already a member."""
    if role not in {r.value for r in MemberRole}:
        raise InvalidRequest(f"Unknown member role {role!r}.", hint="Use lead or member.")
    p, u = get_project(session, project), get_user(session, username)
    if membership(session, p, u) is not None:
        return False
    session.add(ProjectMember(project_id=p.id, user_id=u.id, role=str(role), added_at=utcnow()))
    session.flush()
    append(session, "project.member_added", actor, {"project": project, "user": username, "role": str(role)})
    return True


def remove_member(session: Session, project: str, username: str, *, actor: str | None) -> bool:
    """Remove ``username`` from ``project``. False if not a member; the lead cannot be removed."""
    p, u = get_project(session, project), get_user(session, username)
    row = membership(session, p, u)
    if row is None:
        return False
    if p.lead_id == u.id:
        raise InvalidRequest(f"{username!r} leads {project!r} and cannot be removed.")
    session.delete(row)
    session.flush()
    append(session, "project.member_removed", actor, {"project": project, "user": username})
    return True


def user_projects(session: Session, username: str) -> list[Project]:
    u = get_user(session, username)
    return list(
        session.scalars(
            select(Project)
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(ProjectMember.user_id == u.id)
            .order_by(Project.name)
        )
    )


# --- grants ------------------------------------------------------------------------------------


def grants_for(session: Session, project: Project, dataset: str) -> Sequence[Grant]:
    """Every grant (active or not) of ``dataset`` to ``project``, newest first."""
    return session.scalars(
        select(Grant)
        .where(Grant.project_id == project.id, Grant.dataset == dataset)
        .order_by(Grant.granted_at.desc(), Grant.id.desc())
    ).all()


def active_grant(
    session: Session, project: str, dataset: str, *, now: datetime | None = None
) -> Grant | None:
    p = find_project(session, project)
    if p is None:
        return None
    now = now or utcnow()
    return next((g for g in grants_for(session, p, dataset) if g.is_active(now)), None)


def list_grants(
    session: Session, *, project: str | None = None, active_only: bool = False, now: datetime | None = None
) -> list[Grant]:
    query = select(Grant).order_by(Grant.id)
    if project is not None:
        query = query.where(Grant.project_id == get_project(session, project).id)
    grants = list(session.scalars(query))
    if active_only:
        now = now or utcnow()
        grants = [g for g in grants if g.is_active(now)]
    return grants


def grant_dataset(
    session: Session,
    project: str,
    dataset: str,
    *,
    actor: str | None,
    expires_at: datetime | None = None,
    source: str = "",
    catalog: _DatasetLookup | None = None,
) -> Grant:
    """Grant ``dataset`` to ``project`` (checked against ``catalog`` when given).

    Raises ``AlreadyExists`` while an active grant of that dataset exists.
    """
    p = get_project(session, project)
    if catalog is not None:
        catalog.dataset(dataset)  # raises UnknownDataset
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("The expiry date is in the past.", hint="Give a future date, or none.")
    if any(g.is_active(now) for g in grants_for(session, p, dataset)):
        raise AlreadyExists(
            f"Project {project!r} already has an active grant for {dataset!r}.",
            hint="Revoke it first to change its expiry.",
        )
    grant = Grant(
        project_id=p.id,
        dataset=dataset,
        granted_by=_actor_id(session, actor),
        granted_at=now,
        expires_at=expires_at,
        source=source,
    )
    session.add(grant)
    session.flush()
    data: dict[str, object] = {
        "grant_id": grant.id,
        "project": project,
        "dataset": dataset,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
    if source:
        data["source"] = source
    append(session, "grant.added", actor, data)
    return grant


def revoke_grant(
    session: Session, project: str, dataset: str, *, actor: str | None, reason: str | None = None
) -> list[Grant]:
    """Revoke every active grant of ``dataset`` to ``project``; raises NotFound if none."""
    p = get_project(session, project)
    now = utcnow()
    active = [g for g in grants_for(session, p, dataset) if g.is_active(now)]
    if not active:
        raise NotFound(f"Project {project!r} has no active grant for {dataset!r}.")
    for grant in active:
        grant.revoked_at = now
        session.flush()
        data: dict[str, object] = {"grant_id": grant.id, "project": project, "dataset": dataset}
        if reason:
            data["reason"] = reason
        append(session, "grant.revoked", actor, data)
    return active


__all__ = [
    "active_grant",
    "add_member",
    "authenticate",
    "create_project",
    "create_user",
    "find_project",
    "find_user",
    "get_project",
    "get_user",
    "grant_dataset",
    "grants_for",
    "hash_password",
    "is_member",
    "list_grants",
    "list_projects",
    "list_users",
    "members",
    "membership",
    "remove_member",
    "revoke_grant",
    "set_password",
    "set_password_hasher",
    "set_status",
    "user_projects",
    "verify_password",
]
