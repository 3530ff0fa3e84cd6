"""Access rules on the query path: ``check_can_query`` raises with the reason, ``can_query`` answers.

Order of the checks (the first failing one is reported):

1. the account exists and is approved (``AccountInactive``);
2. the dataset exists in the catalogue (``UnknownDataset``);
3. for datasets whose tier needs a grant (conditional, restricted): the role is a
   data user's (researcher, bank, enterprise), else ``AccessDenied``;
4. the user is a member of the project (``NotProjectMember``);
5. for datasets whose tier needs a grant: the project holds a grant that is neither
   revoked nor expired (``NoGrant``). Open-tier datasets need no grant.

Messages name only the caller's own user, project and dataset (no private data).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from sandbox.access.registry import find_project, find_user, grants_for, membership
from sandbox.control.models import User, UserRole, UserStatus, utcnow
from sandbox.errors import (
    AccessDenied,
    AccountInactive,
    AuthenticationFailed,
    NoGrant,
    NotFound,
    NotProjectMember,
)

QUERY_ROLES = frozenset({UserRole.RESEARCHER.value, UserRole.BANK.value, UserRole.ENTERPRISE.value})


class CatalogLike(Protocol):
    """What the rules need of ``sandbox.policy.loader.Catalog``."""

    def dataset(self, dataset_id: str) -> Any: ...


def _needs_grant(catalog: CatalogLike, dataset: Any) -> bool:
    tier = dataset.tier
    platform = getattr(catalog, "platform", None)
    tiers = getattr(platform, "tiers", None)
    if tiers is not None and tier in tiers:
        return bool(tiers[tier].needs_grant)
    return str(getattr(tier, "value", tier)) != "open"


def check_account_active(user: User) -> None:
    if user.status != UserStatus.APPROVED:
        raise AccountInactive(f"Account {user.username!r} is {user.status}.")


def check_can_query(
    session: Session,
    user: User | str,
    project: str,
    dataset: str,
    catalog: CatalogLike,
    *,
    now: datetime | None = None,
) -> None:
    """Raise the reason ``user`` may not query ``dataset`` within ``project``; None if allowed."""
    account = find_user(session, user) if isinstance(user, str) else user
    if account is None:
        raise AuthenticationFailed(f"Unknown user {user!r}.")
    check_account_active(account)
    spec = catalog.dataset(dataset)  # raises UnknownDataset
    needs_grant = _needs_grant(catalog, spec)
    if needs_grant and account.role not in QUERY_ROLES:
        raise AccessDenied(
            f"Role {account.role!r} may not query {dataset!r}; only data users "
            "(researcher, bank, enterprise) query conditional and restricted datasets.",
            hint="Use a data-user account in the project.",
        )
    proj = find_project(session, project)
    if proj is None or membership(session, proj, account) is None:
        raise NotProjectMember(f"{account.username!r} is not a member of project {project!r}.")
    if not needs_grant:
        return
    grants = grants_for(session, proj, dataset)
    now = now or utcnow()
    if any(g.is_active(now) for g in grants):
        return
    if not grants:
        raise NoGrant(f"Project {project!r} has no grant for dataset {dataset!r}.")
    latest = grants[0]
    if latest.revoked_at is not None:
        raise NoGrant(
            f"The grant of {dataset!r} to project {project!r} was revoked on {latest.revoked_at:%Y-%m-%d}."
        )
    assert latest.expires_at is not None
    raise NoGrant(
        f"The grant of {dataset!r} to project {project!r} expired on {latest.expires_at:%Y-%m-%d}.",
        hint="Apply to renew the data-use agreement for this dataset.",
    )


def can_query(
    session: Session,
    user: User | str,
    project: str,
    dataset: str,
    catalog: CatalogLike,
    *,
    now: datetime | None = None,
) -> bool:
    """True when ``check_can_query`` would pass (unknown users or datasets: False)."""
    try:
        check_can_query(session, user, project, dataset, catalog, now=now)
    except (AccessDenied, AuthenticationFailed, NotFound):
        return False
    return True


__all__ = ["QUERY_ROLES", "CatalogLike", "can_query", "check_account_active", "check_can_query"]
