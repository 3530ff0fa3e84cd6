"""Helpers shared by the governance services: the context, accounts, datasets, text checks.

Every service function takes a context (``GovContext``: ``sandbox.services.queries.ServiceContext``
fits) and the acting username, opens its own transaction with
``session_scope(engine, immediate=True)`` (it appends to the audit log), and returns plain
dataclasses. Domain errors pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

import sandbox.governance.events  # noqa: F401  (registers the audit kinds)
from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.control.db import session_scope
from sandbox.control.models import User, UserStatus, utcnow
from sandbox.errors import AccountInactive, AuthenticationFailed
from sandbox.governance.permissions import Resource
from sandbox.policy.loader import Catalog


class GovContext(Protocol):
    """What the governance services need (``ServiceContext`` has it all)."""

    @property
    def catalog(self) -> Catalog: ...
    @property
    def control_engine(self) -> Engine: ...


@contextmanager
def writing(ctx: GovContext) -> Iterator[Session]:
    """A transaction that may append to the audit log (SQLite write lock taken at BEGIN)."""
    with session_scope(ctx.control_engine, immediate=True) as session:
        yield session


@contextmanager
def reading(ctx: GovContext) -> Iterator[Session]:
    with session_scope(ctx.control_engine) as session:
        yield session


def now_or(now: datetime | None) -> datetime:
    return now if now is not None else utcnow()


def account(session: Session, username: str, *, active: bool = True) -> User:
    """The account of ``username``; ``AccountInactive`` when ``active`` and it is not approved."""
    user = registry.find_user(session, username)
    if user is None:
        raise AuthenticationFailed(
            f"Unknown user {username!r}.", hint="`sandbox user list` shows the accounts."
        )
    if active and user.status != UserStatus.APPROVED:
        raise AccountInactive(f"Account {user.username!r} is {user.status}.")
    return user


def departments_of(catalog: Catalog, datasets: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for ds in datasets:
        out.update(catalog.dataset(ds).provider)
    return frozenset(out)


def dataset_resource(catalog: Catalog, dataset: str | None, **kwargs: Any) -> Resource:
    departments = departments_of(catalog, [dataset]) if dataset else frozenset()
    kwargs.setdefault("label", dataset or "")
    return Resource.of(departments=departments, **kwargs)


def text(value: str | None, field: str, *, minimum: int = 1, maximum: int = 10_000) -> str:
    """Stripped, non-empty text of bounded length, else ``InvalidRequest`` naming ``field``."""
    cleaned = (value or "").strip()
    if len(cleaned) < minimum:
        need = "is required" if minimum <= 1 else f"needs at least {minimum} characters"
        raise InvalidRequest(f"{field} {need}.", hint=f"Give the {field}.")
    if len(cleaned) > maximum:
        raise InvalidRequest(f"{field} is longer than {maximum} characters.", hint="Shorten it.")
    return cleaned


E = TypeVar("E", bound=StrEnum)


def choice(enum: type[E], value: str | E, what: str) -> E:
    """``value`` as a member of ``enum``, else ``InvalidRequest`` naming ``what`` and the choices."""
    try:
        return enum(value)
    except ValueError:
        raise InvalidRequest(
            f"Unknown {what} {value!r}.", hint=f"Use one of: {', '.join(m.value for m in enum)}."
        ) from None


def split_list(value: str | Iterable[str] | None) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` → ``["a", "b"]`` (order kept, duplicates and blanks dropped)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        cleaned = str(item).strip()
        if cleaned and cleaned not in out:
            out.append(cleaned)
    return out


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


__all__ = [
    "GovContext",
    "account",
    "dataset_resource",
    "departments_of",
    "iso",
    "now_or",
    "reading",
    "split_list",
    "text",
    "writing",
]
