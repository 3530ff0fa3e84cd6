"""Enterprise authorisations of banks and the record look-up they allow (SR-16, 普惠金融).

* An enterprise (an account of role ``enterprise`` carrying its USCC) authorises a named bank
  organisation for named datasets for N days (:func:`grant`), and may revoke it
  (:func:`revoke`). Each grant and revocation is a link of the audit hash chain
  (``consent.granted`` / ``consent.revoked``); the row keeps the hash of its grant entry.
  Only the enterprise itself does this (REQUIREMENTS §4: "Grant or revoke per-enterprise
  authorisation" — ✔ own record for the enterprise as data subject; ✖ for everyone else).
* :func:`lookup` lets an analyst of that bank (role ``bank``, ``organisation`` equal to the
  authorised bank) read the enterprise's rows of an authorised dataset: one SQLAlchemy Core
  ``SELECT`` with the USCC as a bound parameter, the ``_rank`` column dropped. Rows of other
  enterprises are never read. No authorisation, an expired or revoked one, another bank, or a
  dataset not named: ``ConsentRequired``. Every look-up, allowed or refused, is an audit entry
  naming the enterprise's account, which :func:`consent_log` shows to the enterprise.
* Population-level questions still go through DP and need no authorisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import MetaData, bindparam, select
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.access.registry import USCC_RE
from sandbox.audit.store import append
from sandbox.catalog.warehouse import RANK_COLUMN, dataset_table
from sandbox.control.models import AuditEntry, User, UserRole
from sandbox.errors import (
    AccessDenied,
    ConfigError,
    ConsentRequired,
    InvalidTransition,
    NotFound,
    SandboxError,
)
from sandbox.governance.agreements import username_of
from sandbox.governance.common import GovContext, account, iso, now_or, reading, split_list, writing
from sandbox.governance.models import Consent, dump
from sandbox.governance.permissions import Action, Condition, Resource, Scope, check_can, check_scopes

ENTERPRISE_KEY = "uscc"  # the column that names the enterprise in F1-F4
MAX_DAYS = 366  # [D] an authorisation lasts at most a year; renew it by granting again
LOOKUP_ROW_LIMIT = 1000
CONSENT_KINDS = ("consent.granted", "consent.revoked", "consent.used", "lookup.refused")


@dataclass(frozen=True)
class ConsentRecord:
    id: int
    enterprise: str
    uscc: str
    bank: str
    datasets: list[str]
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    status: str  # active / expired / revoked
    audit_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "granted_at": iso(self.granted_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
        }


@dataclass(frozen=True)
class LookupResult:
    dataset: str
    uscc: str
    consent_id: int
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ConsentEvent:
    """One entry of an enterprise's consent log."""

    seq: int
    ts: str
    kind: str
    actor: str | None
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _status(row: Consent, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    return "active" if now < row.expires_at else "expired"


def _record(session: Session, row: Consent, now: datetime | None = None) -> ConsentRecord:
    return ConsentRecord(
        id=row.id,
        enterprise=username_of(session, row.enterprise_id) or "?",
        uscc=row.uscc,
        bank=row.bank_org,
        datasets=row.dataset_ids(),
        granted_at=row.granted_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
        status=_status(row, now_or(now)),
        audit_hash=row.audit_hash,
    )


def enterprise_account(session: Session, uscc: str) -> User:
    """The enterprise account carrying ``uscc`` (``NotFound`` if none)."""
    user = session.scalars(
        select(User).where(User.uscc == uscc, User.role == UserRole.ENTERPRISE.value).limit(1)
    ).first()
    if user is None:
        raise NotFound(
            "No enterprise account carries that unified social credit code.",
            hint="The enterprise registers first (`sandbox user add NAME --role enterprise --uscc ...`).",
        )
    return user


def _lookup_datasets(ctx: GovContext, datasets: Sequence[str]) -> list[str]:
    out = []
    for ds_id in datasets:
        ds = ctx.catalog.dataset(ds_id)  # UnknownDataset
        if ENTERPRISE_KEY not in ds.column_names:
            raise InvalidRequest(
                f"{ds_id!r} has no {ENTERPRISE_KEY!r} column: it holds no records of one enterprise.",
                hint="Authorise enterprise datasets such as enterprise_tax, social_insurance, penalties.",
            )
        out.append(ds_id)
    return out


def _check_uscc(uscc: str) -> str:
    code = uscc.strip().upper()
    if not USCC_RE.match(code):
        raise InvalidRequest(
            "The unified social credit code must be 18 characters: digits and capital letters "
            "except I, O, S, V and Z.",
            hint="Check the code (GB 32100-2015).",
        )
    return code


def _bank_exists(session: Session, bank: str) -> bool:
    return (
        session.scalars(
            select(User.id).where(User.role == UserRole.BANK.value, User.organisation == bank).limit(1)
        ).first()
        is not None
    )


# --------------------------------------------------------------------------- grant / revoke


def grant(
    ctx: GovContext,
    *,
    actor: str,
    bank: str,
    datasets: Sequence[str] | str,
    days: int,
    enterprise_uscc: str | None = None,
    now: datetime | None = None,
) -> ConsentRecord:
    """The enterprise ``actor`` authorises ``bank`` for ``datasets`` for ``days`` days."""
    wanted = _lookup_datasets(ctx, split_list(datasets))
    if not wanted:
        raise InvalidRequest(
            "Name at least one dataset.", hint="e.g. --datasets enterprise_tax,social_insurance"
        )
    if not 1 <= int(days) <= MAX_DAYS:
        raise InvalidRequest(
            f"An authorisation lasts 1 to {MAX_DAYS} days.", hint="Grant again to extend it."
        )
    bank = bank.strip()
    now = now_or(now)
    with writing(ctx) as session:
        user = account(session, actor)
        target = _check_uscc(enterprise_uscc) if enterprise_uscc else user.uscc
        check_can(user, Action.MANAGE_AUTHORISATION, Resource.of(uscc=target, label="authorisation"))
        assert target is not None
        if not bank or not _bank_exists(session, bank):
            raise InvalidRequest(
                f"No bank organisation {bank!r} is registered.",
                hint="Use the organisation name of the bank's analysts (e.g. BANK_A).",
            )
        row = Consent(
            enterprise_id=user.id,
            uscc=target,
            bank_org=bank,
            datasets=dump(wanted),
            granted_at=now,
            expires_at=now + timedelta(days=int(days)),
        )
        session.add(row)
        session.flush()
        entry = append(
            session,
            "consent.granted",
            user.username,
            {
                "consent_id": row.id,
                "enterprise": user.username,
                "bank": bank,
                "datasets": wanted,
                "expires_at": row.expires_at.isoformat(),
            },
        )
        row.audit_hash = entry.hash
        session.flush()
        return _record(session, row, now)


def revoke(
    ctx: GovContext, *, actor: str, consent_id: int, reason: str = "", now: datetime | None = None
) -> ConsentRecord:
    """Withdraw an authorisation; look-ups under it stop at once."""
    now = now_or(now)
    with writing(ctx) as session:
        user = account(session, actor)
        row = session.get(Consent, consent_id)
        if row is None:
            raise NotFound(f"No authorisation {consent_id}.")
        check_can(
            user, Action.MANAGE_AUTHORISATION, Resource.of(uscc=row.uscc, label=f"authorisation {consent_id}")
        )
        if row.revoked_at is not None:
            raise InvalidTransition(f"Authorisation {consent_id} was already revoked.")
        row.revoked_at = now
        row.revoked_reason = reason.strip() or None
        session.flush()
        data: dict[str, Any] = {"consent_id": row.id, "enterprise": user.username, "bank": row.bank_org}
        if row.revoked_reason:
            data["reason"] = row.revoked_reason
        append(session, "consent.revoked", user.username, data)
        return _record(session, row, now)


def list_consents(ctx: GovContext, *, user: str, now: datetime | None = None) -> list[ConsentRecord]:
    """Own authorisations (enterprise); those given to the bank (bank analyst); all (admin, auditor)."""
    with reading(ctx) as session:
        viewer = account(session, user)
        query = select(Consent).order_by(Consent.id.desc())
        if viewer.role == UserRole.ENTERPRISE:
            query = query.where(Consent.enterprise_id == viewer.id)
        elif viewer.role == UserRole.BANK:
            query = query.where(Consent.bank_org == (viewer.organisation or ""))
        elif viewer.role not in (UserRole.ADMIN, UserRole.AUDITOR):
            raise AccessDenied(
                f"Role {viewer.role!r} has no enterprise authorisations to see.",
                hint="Enterprises see their own; banks see those given to them; admins and auditors see all.",
            )
        return [_record(session, r, now) for r in session.scalars(query)]


def active_consent(
    session: Session, *, uscc: str, bank: str, dataset: str, now: datetime | None = None
) -> Consent | None:
    """The newest authorisation in force for (enterprise, bank, dataset), or None."""
    now = now_or(now)
    rows = session.scalars(
        select(Consent)
        .where(Consent.uscc == uscc, Consent.bank_org == bank, Consent.revoked_at.is_(None))
        .order_by(Consent.id.desc())
    )
    return next((r for r in rows if r.is_active(now) and dataset in r.dataset_ids()), None)


# --------------------------------------------------------------------------- look-up


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _refusal_reason(session: Session, *, uscc: str, bank: str, dataset: str, now: datetime) -> str:
    rows = list(
        session.scalars(
            select(Consent).where(Consent.uscc == uscc, Consent.bank_org == bank).order_by(Consent.id.desc())
        )
    )
    covering = [r for r in rows if dataset in r.dataset_ids()]
    if not covering:
        return "none"
    latest = covering[0]
    return "revoked" if latest.revoked_at is not None else ("expired" if now >= latest.expires_at else "none")


def lookup(
    ctx: GovContext, *, user: str, dataset: str, uscc: str, now: datetime | None = None
) -> LookupResult:
    """Rows of one enterprise from ``dataset`` for a bank analyst it has authorised (SR-16)."""
    now = now_or(now)
    code = _check_uscc(uscc)
    warehouse = getattr(ctx, "warehouse_engine", None)
    if warehouse is None:
        raise ConfigError("No warehouse is configured for look-ups.", hint="Set SANDBOX_WAREHOUSE_URL.")
    enterprise: str | None = None
    consent_id: int | None = None
    try:
        ds = ctx.catalog.dataset(dataset)
        _lookup_datasets(ctx, [dataset])
        with writing(ctx) as session:
            analyst = account(session, user)
            owner = session.scalars(
                select(User).where(User.uscc == code, User.role == UserRole.ENTERPRISE.value).limit(1)
            ).first()
            enterprise = owner.username if owner is not None else None
            bank = analyst.organisation or ""
            consent = active_consent(session, uscc=code, bank=bank, dataset=dataset, now=now)
            consent_id = consent.id if consent is not None else None
            conditions = {Condition.AUTHORISATION} if consent is not None else set()
            resource = Resource.of(uscc=code, conditions=conditions, row_targeted=True, label=dataset)
            if analyst.role == UserRole.BANK and consent is None:
                why = _refusal_reason(session, uscc=code, bank=bank, dataset=dataset, now=now)
                detail = {"revoked": "was revoked", "expired": "has expired"}.get(why, "is not recorded")
                raise ConsentRequired(
                    f"The enterprise's authorisation of {bank or 'your bank'} for {dataset!r} {detail}.",
                )
            check_can(analyst, Action.DP_QUERY, resource)
            assert consent is not None
            table = dataset_table(ds, MetaData())
            columns = [c for c in table.columns if c.name != RANK_COLUMN]
            statement = select(*columns).where(table.c[ENTERPRISE_KEY] == bindparam("uscc"))
            if RANK_COLUMN in table.c:
                statement = statement.order_by(table.c[RANK_COLUMN])
            statement = statement.limit(LOOKUP_ROW_LIMIT + 1)
            with warehouse.connect() as conn:
                fetched = conn.execute(statement, {"uscc": code}).all()
            truncated = len(fetched) > LOOKUP_ROW_LIMIT
            rows = [[_jsonable(v) for v in r] for r in fetched[:LOOKUP_ROW_LIMIT]]
            append(
                session,
                "consent.used",
                analyst.username,
                {
                    "consent_id": consent.id,
                    "enterprise": enterprise,
                    "bank": bank,
                    "dataset": dataset,
                    "rows": len(rows),
                },
            )
            return LookupResult(
                dataset=dataset,
                uscc=code,
                consent_id=consent.id,
                columns=[c.name for c in columns],
                rows=rows,
                truncated=truncated,
            )
    except SandboxError as err:
        _audit_refusal(ctx, user=user, dataset=dataset, enterprise=enterprise, consent_id=consent_id, err=err)
        raise


def _audit_refusal(
    ctx: GovContext,
    *,
    user: str,
    dataset: str,
    enterprise: str | None,
    consent_id: int | None,
    err: SandboxError,
) -> None:
    try:
        with writing(ctx) as session:
            known = registry.find_user(session, user) is not None
            append(
                session,
                "lookup.refused",
                user if known else None,
                {
                    "dataset": dataset,
                    "user": user,
                    "enterprise": enterprise,
                    "consent_id": consent_id,
                    "code": err.code,
                },
            )
    except Exception:  # noqa: S110 - the refusal itself is what the caller must see
        pass


# --------------------------------------------------------------------------- the enterprise's log


def consent_log(ctx: GovContext, *, user: str, enterprise: str | None = None) -> list[ConsentEvent]:
    """Audit entries about an enterprise's authorisations: grants, revocations, look-ups, refusals.

    The enterprise sees its own (REQUIREMENTS §4 "Read audit logs": own authorisations); admins
    and auditors name any enterprise.
    """
    with reading(ctx) as session:
        viewer = account(session, user)
        if viewer.role == UserRole.ENTERPRISE:
            if enterprise not in (None, viewer.username):
                raise AccessDenied("An enterprise sees only its own authorisation log.")
            target = viewer.username
        else:
            if Scope.ANY not in check_scopes(viewer, Action.READ_AUDIT):
                raise AccessDenied("Only the enterprise itself, the operator and supervisors read this log.")
            if enterprise is None:
                raise InvalidRequest("Name the enterprise account whose log to show.")
            target = enterprise
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.kind.in_(CONSENT_KINDS)).order_by(AuditEntry.seq)
        )
        out = []
        for row in rows:
            data = row.payload()
            if data.get("enterprise") == target:
                out.append(ConsentEvent(seq=row.seq, ts=row.ts, kind=row.kind, actor=row.actor, data=data))
        return out


__all__ = [
    "CONSENT_KINDS",
    "LOOKUP_ROW_LIMIT",
    "MAX_DAYS",
    "ConsentEvent",
    "ConsentRecord",
    "LookupResult",
    "active_consent",
    "consent_log",
    "enterprise_account",
    "grant",
    "list_consents",
    "lookup",
    "revoke",
]
