"""The ledger store: reserve → commit | fail, atomic and safe under concurrency.

Protocol (one query):

1. :func:`reserve`, in its own transaction, **committed before the warehouse
   runs**: lock the dataset's three scope rows, check the caps exactly, add the
   charge to each, insert the release as ``reserved`` and append the audit event
   ``budget.reserved``. From this moment the charge is spent.
2. The caller executes the query and adds noise.
3. :func:`commit`, in one transaction: the release becomes ``committed`` with its
   result, and the audit event ``query.released`` is appended. The caller returns
   the release only after this commit. Or :func:`fail`: ``failed`` plus
   ``query.failed``; the charge is kept either way.

A crash between 1 and 3 leaves a ``reserved`` row that still counts as spent:
there is never a release without its charge, and at worst a charge without a
release (the safe side). :func:`sweep_reservations` later marks such rows
``abandoned`` (``budget.abandoned``), keeping the charge.

Concurrency: on SQLite every transaction here starts with ``BEGIN IMMEDIATE``
(writers queue on the busy timeout); on PostgreSQL the dataset's global scope row
is locked first with ``SELECT ... FOR UPDATE``, then the project and user rows,
so reservations on one dataset are serialised and never deadlock. Lock and
serialisation failures are retried with a jittered back-off.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from sandbox.audit.store import append as audit_append
from sandbox.audit.store import format_ts
from sandbox.control.db import session_scope
from sandbox.control.models import Project, User, utcnow
from sandbox.errors import InternalError
from sandbox.ledger.models import BudgetSpend, Release
from sandbox.ledger.values import (
    ZERO,
    BudgetStatus,
    ReleaseStatus,
    Scope,
    check_admits,
    check_epsilon_allowed,
    exact_sum,
    format_amount,
    to_decimal,
)
from sandbox.policy.models import Budgets

T = TypeVar("T")

GLOBAL_SUBJECT = "*"
MAX_ATTEMPTS = 12
_PG_RETRY_CODES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock not available
_SQLITE_RETRY_WORDS = ("database is locked", "database is busy", "locked")


@dataclass(frozen=True)
class Party:
    """Who asks: the user and the project the query is charged to."""

    user_id: int
    username: str
    project_id: int
    project: str

    def subjects(self) -> dict[Scope, str]:
        return {
            Scope.DATASET: GLOBAL_SUBJECT,
            Scope.PROJECT: str(self.project_id),
            Scope.USER: str(self.user_id),
        }


@dataclass(frozen=True)
class Reservation:
    """A charge made durable before the query runs."""

    release_id: str
    request_id: str
    party: Party
    dataset: str
    fingerprint: str
    epsilon_requested: Decimal
    charge: Decimal


@dataclass(frozen=True)
class StoredRelease:
    """A row of ``releases`` detached from its session."""

    release_id: str
    request_id: str
    project_id: int
    user_id: int
    dataset: str
    fingerprint: str
    epsilon_requested: Decimal
    epsilon_charged: Decimal
    status: ReleaseStatus
    result: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None = field(default=None)

    @classmethod
    def of(cls, row: Release) -> StoredRelease:
        return cls(
            release_id=row.id,
            request_id=row.request_id,
            project_id=row.project_id,
            user_id=row.user_id,
            dataset=row.dataset,
            fingerprint=row.fingerprint,
            epsilon_requested=to_decimal(row.epsilon_requested),
            epsilon_charged=to_decimal(row.epsilon_charged),
            status=ReleaseStatus(row.status),
            result=row.result_data(),
            created_at=row.created_at,
            finished_at=row.finished_at,
        )


def new_id() -> str:
    return str(uuid.uuid4())


# --- transactions with retries ------------------------------------------------------------------


def _retryable(err: DBAPIError) -> bool:
    orig = err.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in _PG_RETRY_CODES:
        return True
    text = str(orig).lower()
    return any(word in text for word in _SQLITE_RETRY_WORDS)


def in_transaction(engine: Engine, work: Callable[[Session], T], *, attempts: int = MAX_ATTEMPTS) -> T:
    """Run ``work`` in one write transaction (``BEGIN IMMEDIATE`` on SQLite), retrying lock failures.

    Each attempt is a fresh transaction that is rolled back on failure, so retrying is safe.
    """
    delay = 0.01
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(engine, immediate=True) as session:
                return work(session)
        except DBAPIError as err:
            if attempt == attempts or not _retryable(err):
                raise
        time.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not security
        delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")  # pragma: no cover


# --- scope rows ---------------------------------------------------------------------------------


def _ensure_rows(session: Session, dataset: str, pairs: Iterable[tuple[Scope, str]]) -> None:
    rows = [
        {"dataset": dataset, "scope": scope.value, "subject": subject, "spent": "0", "updated_at": utcnow()}
        for scope, subject in pairs
    ]
    if not rows:
        return
    name = session.get_bind().dialect.name
    if name == "postgresql":
        session.execute(postgresql.insert(BudgetSpend).values(rows).on_conflict_do_nothing())
    elif name == "sqlite":
        session.execute(sqlite.insert(BudgetSpend).values(rows).on_conflict_do_nothing())
    else:  # pragma: no cover - other control DBs are not supported
        for row in rows:
            try:
                with session.begin_nested():
                    session.execute(insert(BudgetSpend).values(row))
            except IntegrityError:
                pass


def _lock_scopes(session: Session, dataset: str, party: Party) -> dict[Scope, BudgetSpend]:
    """Lock the dataset's global row first, then the project and user rows (fixed order)."""
    subjects = party.subjects()
    out: dict[Scope, BudgetSpend] = {}
    for group in ((Scope.DATASET,), (Scope.PROJECT, Scope.USER)):
        pairs = [(scope, subjects[scope]) for scope in group]
        _ensure_rows(session, dataset, pairs)
        stmt = (
            select(BudgetSpend)
            .where(
                BudgetSpend.dataset == dataset,
                tuple_(BudgetSpend.scope, BudgetSpend.subject).in_([(s.value, sub) for s, sub in pairs]),
            )
            .order_by(BudgetSpend.scope)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        for row in session.scalars(stmt):
            out[Scope(row.scope)] = row
    if set(out) != set(Scope):  # pragma: no cover - rows were just ensured
        raise InternalError("ledger scope rows missing after insert")
    return out


def spent(session: Session, dataset: str, party: Party) -> dict[Scope, Decimal]:
    """What has been charged to each of the party's scopes on ``dataset`` (no locks)."""
    subjects = party.subjects()
    rows = session.scalars(
        select(BudgetSpend).where(
            BudgetSpend.dataset == dataset,
            tuple_(BudgetSpend.scope, BudgetSpend.subject).in_(
                [(s.value, sub) for s, sub in subjects.items()]
            ),
        )
    )
    out = dict.fromkeys(Scope, ZERO)
    for row in rows:
        out[Scope(row.scope)] = to_decimal(row.spent)
    return out


def status(session: Session, dataset: str, budgets: Budgets, party: Party) -> BudgetStatus:
    """Remaining budgets: policy caps minus everything reserved, committed, failed or abandoned."""
    return BudgetStatus.from_spent(budgets, spent(session, dataset, party))


# --- the protocol -------------------------------------------------------------------------------


def find_cached(
    session: Session, *, project_id: int, dataset: str, fingerprint: str, epsilon: Decimal
) -> StoredRelease | None:
    """The first committed release of the same normalised query at the same epsilon in this project."""
    row = session.scalars(
        select(Release)
        .where(
            Release.project_id == project_id,
            Release.dataset == dataset,
            Release.fingerprint == fingerprint,
            Release.epsilon_requested == format_amount(epsilon),
            Release.status == ReleaseStatus.COMMITTED.value,
        )
        .order_by(Release.created_at, Release.id)
        .limit(1)
    ).first()
    return StoredRelease.of(row) if row is not None else None


def reserve(
    engine: Engine,
    party: Party,
    *,
    dataset: str,
    budgets: Budgets,
    fingerprint: str,
    epsilon: Decimal,
    charge: Decimal,
    request_id: str | None = None,
    audit_data: Mapping[str, Any] | None = None,
) -> Reservation:
    """Draw ``charge`` from the three scopes and record a ``reserved`` release; committed on return.

    Raises EpsilonTooLarge (request or charge above ``per_query_max``) or
    BudgetExceeded (a scope would go over its cap); nothing is written then.
    """
    epsilon = check_epsilon_allowed(epsilon, budgets, dataset=dataset)
    charge = check_epsilon_allowed(charge, budgets, dataset=dataset)
    reservation = Reservation(
        release_id=new_id(),
        request_id=request_id or new_id(),
        party=party,
        dataset=dataset,
        fingerprint=fingerprint,
        epsilon_requested=epsilon,
        charge=charge,
    )

    def work(session: Session) -> Reservation:
        rows = _lock_scopes(session, dataset, party)
        used = {scope: to_decimal(row.spent) for scope, row in rows.items()}
        check_admits(charge, used, budgets, dataset=dataset, project=party.project)
        now = utcnow()
        for scope, row in rows.items():
            row.spent = format_amount(exact_sum([used[scope], charge]))
            row.updated_at = now
        session.add(
            Release(
                id=reservation.release_id,
                request_id=reservation.request_id,
                project_id=party.project_id,
                user_id=party.user_id,
                dataset=dataset,
                fingerprint=fingerprint,
                epsilon_requested=format_amount(epsilon),
                epsilon_charged=format_amount(charge),
                status=ReleaseStatus.RESERVED.value,
                created_at=now,
            )
        )
        session.flush()
        audit_append(
            session,
            "budget.reserved",
            party.username,
            {
                **(audit_data or {}),
                "request_id": reservation.request_id,
                "release_id": reservation.release_id,
                "project": party.project,
                "dataset": dataset,
                "fingerprint": fingerprint,
                "epsilon_requested": format_amount(epsilon),
                "charge": format_amount(charge),
            },
        )
        return reservation

    return in_transaction(engine, work)


def _finish(
    session: Session, reservation: Reservation, status_: ReleaseStatus, result: Mapping[str, Any] | None
) -> Release:
    row = session.scalars(
        select(Release)
        .where(Release.id == reservation.release_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None or row.status != ReleaseStatus.RESERVED.value:
        found = None if row is None else row.status
        raise InternalError(f"release {reservation.release_id} is not reserved (status {found})")
    row.status = status_.value
    row.finished_at = utcnow()
    if result is not None:
        row.result = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    session.flush()
    return row


def commit(
    engine: Engine,
    reservation: Reservation,
    result: Mapping[str, Any],
    *,
    audit_data: Mapping[str, Any] | None = None,
) -> StoredRelease:
    """Mark the release committed with its result and append ``query.released``, in one transaction."""

    def work(session: Session) -> StoredRelease:
        row = _finish(session, reservation, ReleaseStatus.COMMITTED, result)
        audit_append(
            session,
            "query.released",
            reservation.party.username,
            {
                **(audit_data or {}),
                "request_id": reservation.request_id,
                "release_id": reservation.release_id,
                "project": reservation.party.project,
                "dataset": reservation.dataset,
                "fingerprint": reservation.fingerprint,
                "epsilon_requested": format_amount(reservation.epsilon_requested),
                "charge": format_amount(reservation.charge),
            },
        )
        return StoredRelease.of(row)

    return in_transaction(engine, work)


def fail(engine: Engine, reservation: Reservation, *, error: Mapping[str, Any]) -> None:
    """Mark the release failed (charge kept) and log the error details in the audit log only."""

    def work(session: Session) -> None:
        _finish(session, reservation, ReleaseStatus.FAILED, None)
        audit_append(
            session,
            "query.failed",
            reservation.party.username,
            {
                "request_id": reservation.request_id,
                "release_id": reservation.release_id,
                "project": reservation.party.project,
                "dataset": reservation.dataset,
                "charge_kept": format_amount(reservation.charge),
                "error": dict(error),
            },
        )

    in_transaction(engine, work)


def record_cache_hit(engine: Engine, party: Party, release: StoredRelease, *, request_id: str) -> None:
    """Audit a repeated query answered from the stored release at zero cost."""

    def work(session: Session) -> None:
        audit_append(
            session,
            "query.cache_hit",
            party.username,
            {
                "request_id": request_id,
                "release_id": release.release_id,
                "project": party.project,
                "dataset": release.dataset,
                "fingerprint": release.fingerprint,
                "epsilon_requested": format_amount(release.epsilon_requested),
                "charge": "0",
            },
        )

    in_transaction(engine, work)


def get_release(session: Session, release_id: str) -> StoredRelease | None:
    row = session.get(Release, release_id)
    return StoredRelease.of(row) if row is not None else None


# --- reservations left in flight ---------------------------------------------------------------

#: How old a ``reserved`` release must be before :func:`sweep_reservations` takes it for abandoned.
#: A query's reservation normally lives for the seconds its warehouse statement takes, and the
#: statement is stopped after ``SANDBOX_QUERY_TIMEOUT`` (default 300 s, at most 600 s:
#: ``sandbox.catalog.deadline``). 15 minutes is well past the longest a live query can hold one.
ABANDON_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class InFlight:
    """A ``reserved`` release, with the names an operator needs (pseudonymous ids only)."""

    release_id: str
    request_id: str
    user: str
    project: str
    dataset: str
    charge: Decimal
    reserved_at: datetime

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.release_id,
            "request_id": self.request_id,
            "user": self.user,
            "project": self.project,
            "dataset": self.dataset,
            "charge": format_amount(self.charge),
            "reserved_at": self.reserved_at.isoformat(),
        }


def _in_flight_query(cutoff: datetime | None) -> Select[Release, str, str]:
    stmt = (
        select(Release, User.username, Project.name)
        .join(User, User.id == Release.user_id)
        .join(Project, Project.id == Release.project_id)
        .where(Release.status == ReleaseStatus.RESERVED.value)
        .order_by(Release.created_at, Release.id)
    )
    return stmt if cutoff is None else stmt.where(Release.created_at < cutoff)


def _in_flight(row: Release, username: str, project: str) -> InFlight:
    return InFlight(
        release_id=row.id,
        request_id=row.request_id,
        user=username,
        project=project,
        dataset=row.dataset,
        charge=to_decimal(row.epsilon_charged),
        reserved_at=row.created_at,
    )


def _cutoff(older_than: timedelta, now: datetime | None) -> datetime:
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    return (now or utcnow()) - older_than


def in_flight(
    session: Session, *, older_than: timedelta = timedelta(0), now: datetime | None = None
) -> list[InFlight]:
    """Releases still ``reserved`` more than ``older_than`` after reserving (no locks), oldest first."""
    cutoff = _cutoff(older_than, now) if older_than > timedelta(0) else None
    return [_in_flight(*found) for found in session.execute(_in_flight_query(cutoff))]


def sweep_reservations(
    engine: Engine,
    *,
    older_than: timedelta = ABANDON_AFTER,
    actor: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[InFlight]:
    """Mark reservations still in flight after ``older_than`` as ``abandoned``; returns them, oldest first.

    Such a reservation belongs to a process that died between :func:`reserve` and
    :func:`commit` / :func:`fail` (SIGKILL, power loss). **The charge is kept, never
    refunded**: the warehouse may have run the query, so the privacy loss may have
    happened; ``budget_spend`` is not touched, and remaining budgets do not change.
    Each row becomes ``abandoned`` (terminal, ``finished_at`` set) with one
    ``budget.abandoned`` audit event (``actor``: who swept, None for the system), all
    in one transaction.

    Safe under concurrency: the rows are locked as :func:`commit` and :func:`fail` lock
    them (``SELECT ... FOR UPDATE``, re-checked after any wait, on PostgreSQL;
    ``BEGIN IMMEDIATE`` on SQLite), so a release that is committed at the same moment
    ends either ``committed`` (the sweep skips it) or ``abandoned`` (the commit is
    refused with InternalError and the caller gets no release): never both. A query
    still running past ``older_than`` therefore loses its result, not its charge; keep
    ``older_than`` above the longest query (default :data:`ABANDON_AFTER`).

    ``dry_run`` returns what would be abandoned and writes nothing.
    """
    cutoff = _cutoff(older_than, now)
    if dry_run:
        with session_scope(engine) as session:
            return [_in_flight(*found) for found in session.execute(_in_flight_query(cutoff))]

    def work(session: Session) -> list[InFlight]:
        found = session.execute(
            _in_flight_query(cutoff).with_for_update(of=Release).execution_options(populate_existing=True)
        ).all()
        swept: list[InFlight] = []
        finished = utcnow()
        for row, username, project in found:
            if row.status != ReleaseStatus.RESERVED.value:  # pragma: no cover - the lock re-checks
                continue
            row.status = ReleaseStatus.ABANDONED.value
            row.finished_at = finished
            item = _in_flight(row, username, project)
            swept.append(item)
            session.flush()
            audit_append(
                session,
                "budget.abandoned",
                actor,
                {
                    "request_id": row.request_id,
                    "release_id": row.id,
                    "user": username,
                    "project": project,
                    "dataset": row.dataset,
                    "charge_kept": row.epsilon_charged,
                    "reserved_at": format_ts(row.created_at),
                    "older_than_seconds": int(older_than.total_seconds()),
                },
            )
        return swept

    return in_transaction(engine, work)


def verify(session: Session) -> list[str]:
    """Problems in the ledger: every scope total must equal the sum of its releases' charges."""
    problems: list[str] = []
    releases = session.execute(
        select(Release.dataset, Release.project_id, Release.user_id, Release.epsilon_charged, Release.status)
    ).all()
    expected: dict[tuple[str, str, str], list[str]] = {}
    for dataset, project_id, user_id, charged, status_ in releases:
        ReleaseStatus(status_)
        for scope, subject in (
            (Scope.DATASET, GLOBAL_SUBJECT),
            (Scope.PROJECT, str(project_id)),
            (Scope.USER, str(user_id)),
        ):
            expected.setdefault((dataset, scope.value, subject), []).append(charged)
    found = {
        (row.dataset, row.scope, row.subject): to_decimal(row.spent)
        for row in session.scalars(select(BudgetSpend))
    }
    for key in sorted(set(expected) | set(found)):
        want = exact_sum(expected.get(key, []))
        have = found.get(key, ZERO)
        if want != have:
            problems.append(f"{key[0]} {key[1]}:{key[2]}: spent {have} but releases charge {want}")
    missing = session.scalar(
        select(func.count())
        .select_from(Release)
        .where(Release.status == ReleaseStatus.COMMITTED.value, Release.result.is_(None))
    )
    if missing:
        problems.append(f"{missing} committed release(s) without a result")
    return problems


__all__ = [
    "ABANDON_AFTER",
    "GLOBAL_SUBJECT",
    "InFlight",
    "Party",
    "Reservation",
    "StoredRelease",
    "commit",
    "fail",
    "find_cached",
    "get_release",
    "in_flight",
    "in_transaction",
    "new_id",
    "record_cache_hit",
    "reserve",
    "spent",
    "status",
    "sweep_reservations",
    "verify",
]
