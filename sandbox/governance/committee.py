"""The expert-committee workbench (SR-37): queues, items, opinions; the gate applications pass.

Flow::

    raise_item(ctx, actor=..., kind=..., title=..., description=..., dataset=..., application_id=...)
    record_opinion(ctx, actor=expert, item_id=..., opinion="approve", members=[...], reason=...)
    withdraw(ctx, actor=raiser_or_admin, item_id=..., reason=...)
    queues(ctx, user=...) / list_items(ctx, user=...) / show(ctx, user=..., item_id=...)

Ties to the other flows:

* ``applications.submit`` opens a ``high_risk_application`` item for every **restricted**
  (非开放) dataset of an application (:func:`open_for_application`, same transaction).
* ``applications.decide`` calls :func:`check_application_gate` before a steward *approves* a
  dataset: a dataset with a (not withdrawn) high-risk item, and every restricted dataset, needs
  the committee's favourable opinion (``approve`` or ``approve_with_conditions``) on its latest
  item. A refusal needs no opinion. The opinion's conditions travel with the decision.
* A move 非开放→有条件 is proposed as a ``declassification_proposal``; no code changes a
  dataset's tier (the policy files do), so :func:`latest_opinion` is what such a change consults.

Every change appends its audit entry (``committee.raised``, ``committee.opinion_recorded``,
``committee.withdrawn``) in the transaction that makes it. Free texts (description, reason,
conditions) stay in the tables; the chain pins their SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.audit.events import register_kind
from sandbox.audit.store import append
from sandbox.control.models import AuditEntry, User, UserRole, UserStatus
from sandbox.errors import InvalidRequest, InvalidTransition, NotFound
from sandbox.governance.agreements import username_of
from sandbox.governance.committee_models import CommitteeItem, CommitteeOpinion, CommitteeOpinionMember
from sandbox.governance.committee_rules import (
    FAVOURABLE,
    KIND_TITLES,
    QUORUM,
    ItemFacts,
    ItemKind,
    ItemStatus,
    Opinion,
    can_record_opinion,
    can_see,
    can_withdraw,
    check_can_raise,
    check_can_record_opinion,
    check_can_see,
    check_can_withdraw,
    check_opinion_text,
    check_subject,
)
from sandbox.governance.common import (
    GovContext,
    account,
    choice,
    departments_of,
    iso,
    now_or,
    reading,
    split_list,
    text,
    writing,
)
from sandbox.governance.models import Application, ApplicationDataset, dump, load
from sandbox.policy.loader import Catalog

_KINDS = [
    ("committee.raised", "Matter put to the expert committee (SR-37).", ("item_id", "kind")),
    ("committee.opinion_recorded", "Expert committee's opinion recorded.", ("item_id", "opinion", "members")),
    ("committee.withdrawn", "Committee item withdrawn.", ("item_id",)),
]
for _kind_name, _description, _required in _KINDS:
    register_kind(_kind_name, 1, _description, required=_required)

AUDIT_KINDS = tuple(name for name, _, _ in _KINDS)
RESTRICTED = "restricted"


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class OpinionRecord:
    opinion: str
    conditions: str | None
    reason: str
    decided_on: date
    members: list[str]
    recorded_by: str
    recorded_at: datetime

    @property
    def favourable(self) -> bool:
        return Opinion(self.opinion) in FAVOURABLE

    def to_dict(self) -> dict[str, Any]:
        return {
            "opinion": self.opinion,
            "conditions": self.conditions,
            "reason": self.reason,
            "decided_on": self.decided_on.isoformat(),
            "members": self.members,
            "recorded_by": self.recorded_by,
            "recorded_at": iso(self.recorded_at),
        }


@dataclass(frozen=True)
class ItemRecord:
    id: int
    kind: str
    status: str
    title: str
    description: str
    dataset: str | None
    application_id: int | None
    departments: list[str]
    raised_by: str
    raised_at: datetime
    automatic: bool
    withdrawn_by: str | None
    withdrawn_at: datetime | None
    withdrawn_reason: str | None
    opinion: OpinionRecord | None
    application: dict[str, Any] | None = None  # scenario, purpose, project, datasets (case file)
    history: list[dict[str, Any]] = field(default_factory=list)  # its audit entries (case file)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "title": self.title,
            "description": self.description,
            "dataset": self.dataset,
            "application_id": self.application_id,
            "departments": self.departments,
            "raised_by": self.raised_by,
            "raised_at": iso(self.raised_at),
            "automatic": self.automatic,
            "withdrawn_by": self.withdrawn_by,
            "withdrawn_at": iso(self.withdrawn_at),
            "withdrawn_reason": self.withdrawn_reason,
            "opinion": self.opinion.to_dict() if self.opinion else None,
            "application": self.application,
            "history": self.history,
        }


@dataclass(frozen=True)
class Queue:
    kind: str
    title_zh: str
    title_en: str
    open: int
    opinion_recorded: int
    withdrawn: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class GateResult:
    """What the committee said about one dataset of an application (None: no referral needed)."""

    item_id: int
    opinion: str
    conditions: str | None
    decided_on: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- helpers


def _quorum(ctx: GovContext) -> int:
    """The platform policy's quorum (``committee.quorum`` in platform.yaml; default QUORUM)."""
    committee = getattr(ctx.catalog.platform, "committee", None)
    return int(committee.quorum) if committee is not None else QUORUM


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _facts(session: Session, row: CommitteeItem) -> ItemFacts:
    return ItemFacts(
        kind=ItemKind(row.kind),
        status=ItemStatus(row.status),
        raised_by=username_of(session, row.raised_by) or "?",
        departments=frozenset(str(d) for d in load(row.departments) or []),
        dataset=row.dataset,
        application_id=row.application_id,
        id=row.id,
    )


def _get(session: Session, item_id: int, *, lock: bool = False) -> CommitteeItem:
    query = select(CommitteeItem).where(CommitteeItem.id == item_id)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFound(f"No committee item {item_id}.", hint="`sandbox committee list` shows the items.")
    return row


def _opinion_row(session: Session, item_id: int) -> CommitteeOpinion | None:
    return session.scalars(select(CommitteeOpinion).where(CommitteeOpinion.item_id == item_id)).one_or_none()


def _opinion(session: Session, item_id: int) -> OpinionRecord | None:
    row = _opinion_row(session, item_id)
    if row is None:
        return None
    members = session.scalars(
        select(User.username)
        .join(CommitteeOpinionMember, CommitteeOpinionMember.user_id == User.id)
        .where(CommitteeOpinionMember.opinion_id == row.id)
        .order_by(User.username)
    ).all()
    return OpinionRecord(
        opinion=row.opinion,
        conditions=row.conditions,
        reason=row.reason,
        decided_on=row.decided_on,
        members=list(members),
        recorded_by=username_of(session, row.recorded_by) or "?",
        recorded_at=row.recorded_at,
    )


def _application_summary(session: Session, application_id: int | None) -> dict[str, Any] | None:
    if application_id is None:
        return None
    app = session.get(Application, application_id)
    if app is None:
        return None
    from sandbox.control.models import Project

    project = session.get(Project, app.project_id)
    items = session.scalars(
        select(ApplicationDataset)
        .where(ApplicationDataset.application_id == app.id)
        .order_by(ApplicationDataset.id)
    ).all()
    return {
        "id": app.id,
        "project": project.name if project is not None else None,
        "applicant": username_of(session, app.applicant_id),
        "organisation": app.organisation,
        "scenario": app.scenario,
        "purpose": app.purpose,
        "duration_days": app.duration_days,
        "security_measures": app.security_measures,
        "status": app.status,
        "datasets": {i.dataset: i.status for i in items},
    }


def _history(session: Session, item_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AuditEntry).where(AuditEntry.kind.in_(AUDIT_KINDS)).order_by(AuditEntry.seq)
    ).all()
    out = []
    for row in rows:
        data = row.payload()
        if data.get("item_id") == item_id:
            out.append({"seq": row.seq, "ts": row.ts, "kind": row.kind, "actor": row.actor, "hash": row.hash})
    return out


def _record(session: Session, row: CommitteeItem, *, full: bool = False) -> ItemRecord:
    return ItemRecord(
        id=row.id,
        kind=row.kind,
        status=row.status,
        title=row.title,
        description=row.description,
        dataset=row.dataset,
        application_id=row.application_id,
        departments=[str(d) for d in load(row.departments) or []],
        raised_by=username_of(session, row.raised_by) or "?",
        raised_at=row.raised_at,
        automatic=bool(row.automatic),
        withdrawn_by=username_of(session, row.withdrawn_by),
        withdrawn_at=row.withdrawn_at,
        withdrawn_reason=row.withdrawn_reason,
        opinion=_opinion(session, row.id),
        application=_application_summary(session, row.application_id) if full else None,
        history=_history(session, row.id) if full else [],
    )


def _kind(value: str | ItemKind) -> ItemKind:
    return choice(ItemKind, value, "committee queue")


def _open_duplicate(
    session: Session, kind: ItemKind, dataset: str | None, application_id: int | None
) -> CommitteeItem | None:
    query = select(CommitteeItem).where(
        CommitteeItem.kind == kind.value,
        CommitteeItem.status == ItemStatus.OPEN.value,
        CommitteeItem.dataset.is_(None) if dataset is None else CommitteeItem.dataset == dataset,
        CommitteeItem.application_id.is_(None)
        if application_id is None
        else CommitteeItem.application_id == application_id,
    )
    return session.scalars(query.limit(1)).first()


def _insert(
    session: Session,
    *,
    kind: ItemKind,
    raiser: User,
    title: str,
    description: str,
    dataset: str | None,
    application_id: int | None,
    departments: Sequence[str],
    automatic: bool,
    now: datetime,
) -> CommitteeItem:
    duplicate = _open_duplicate(session, kind, dataset, application_id)
    if duplicate is not None:
        raise InvalidTransition(
            f"Committee item {duplicate.id} ({kind.value}) about the same subject is still open.",
            hint=f"Add to it, or withdraw it first (`sandbox committee withdraw {duplicate.id}`).",
        )
    row = CommitteeItem(
        kind=kind.value,
        status=ItemStatus.OPEN.value,
        dataset=dataset,
        application_id=application_id,
        departments=dump(sorted(set(departments))),
        title=title,
        description=description,
        raised_by=raiser.id,
        raised_at=now,
        automatic=automatic,
    )
    session.add(row)
    session.flush()
    append(
        session,
        "committee.raised",
        raiser.username,
        {
            "item_id": row.id,
            "kind": kind.value,
            "dataset": dataset,
            "application_id": application_id,
            "departments": sorted(set(departments)),
            "automatic": automatic,
            "description_sha256": _digest(description),
        },
        now=now,
    )
    return row


# --------------------------------------------------------------------------- raise


def raise_item(
    ctx: GovContext,
    *,
    actor: str,
    kind: str | ItemKind,
    title: str,
    description: str,
    dataset: str | None = None,
    application_id: int | None = None,
    now: datetime | None = None,
) -> ItemRecord:
    """Put a matter to the committee (see ``committee_rules`` for who may raise which kind)."""
    catalog = ctx.catalog
    now = now_or(now)
    kind = _kind(kind)
    title = text(title, "title", maximum=200)
    description = text(description, "description", minimum=10)
    tier = catalog.dataset(dataset).tier.value if dataset else None  # UnknownDataset
    check_subject(kind, dataset=dataset, application_id=application_id, tier=tier)
    with writing(ctx) as session:
        user = account(session, actor)
        departments: set[str] = set(departments_of(catalog, [dataset])) if dataset else set()
        if application_id is not None:
            app = session.get(Application, application_id)
            if app is None:
                raise NotFound(f"No application {application_id}.")
            applied = [
                i.dataset
                for i in session.scalars(
                    select(ApplicationDataset).where(ApplicationDataset.application_id == application_id)
                )
            ]
            if dataset is not None and dataset not in applied:
                raise InvalidRequest(f"Application {application_id} does not ask for {dataset!r}.")
            if dataset is None:
                departments.update(departments_of(catalog, applied))
        check_can_raise(user, kind, departments=departments)
        row = _insert(
            session,
            kind=kind,
            raiser=user,
            title=title,
            description=description,
            dataset=dataset,
            application_id=application_id,
            departments=sorted(departments),
            automatic=False,
            now=now,
        )
        return _record(session, row)


def open_for_application(
    session: Session,
    catalog: Catalog,
    app: Application,
    applicant: User,
    datasets: Sequence[str],
    now: datetime,
) -> list[int]:
    """Refer every restricted dataset of a new application to the committee (in the caller's transaction)."""
    opened = []
    for ds_id in datasets:
        ds = catalog.dataset(ds_id)
        if ds.tier.value != RESTRICTED:
            continue
        row = _insert(
            session,
            kind=ItemKind.HIGH_RISK_APPLICATION,
            raiser=applicant,
            title=f"Application {app.id}: {ds_id} (restricted / 非开放)",
            description=(
                f"Application {app.id} asks for the restricted (非开放) dataset {ds_id!r} for the scenario "
                f"“{app.scenario}”. Restricted data is high-risk: the providers approve it only with the "
                "expert committee's favourable opinion (SR-12, SR-37)."
            ),
            dataset=ds_id,
            application_id=app.id,
            departments=sorted(ds.provider),
            automatic=True,
            now=now,
        )
        opened.append(row.id)
    return opened


# --------------------------------------------------------------------------- opinion, withdraw


def _parse_date(value: date | str | None, now: datetime) -> date:
    if value is None or value == "":
        return now.date()
    if isinstance(value, date):
        decided = value
    else:
        try:
            decided = date.fromisoformat(value)
        except ValueError:
            raise InvalidRequest(f"Not a date: {value!r}.", hint="Use YYYY-MM-DD.") from None
    if decided > now.date():
        raise InvalidRequest("The committee's date is in the future.", hint="Give the date it deliberated.")
    return decided


def _opinion_value(value: str | Opinion) -> Opinion:
    return choice(Opinion, value, "opinion")


def record_opinion(
    ctx: GovContext,
    *,
    actor: str,
    item_id: int,
    opinion: str | Opinion,
    members: Sequence[str] | str,
    reason: str,
    conditions: str | None = None,
    decided_on: date | str | None = None,
    now: datetime | None = None,
) -> ItemRecord:
    """Record the committee's opinion on an open item (a member of it, with the quorum named)."""
    now = now_or(now)
    value = _opinion_value(opinion)
    reason = text(reason, "reason")
    cleaned = (conditions or "").strip() or None
    check_opinion_text(value, cleaned)
    day = _parse_date(decided_on, now)
    names = split_list(members)
    with writing(ctx) as session:
        user = account(session, actor)
        row = _get(session, item_id, lock=True)
        accounts = []
        for name in names:
            member = registry.find_user(session, name)
            if member is None:
                raise InvalidRequest(f"No account {name!r} among the members.", hint="Name expert accounts.")
            accounts.append(member)
        check_can_record_opinion(user, _facts(session, row), accounts, quorum=_quorum(ctx))
        record = CommitteeOpinion(
            item_id=row.id,
            opinion=value.value,
            conditions=cleaned,
            reason=reason,
            decided_on=day,
            recorded_by=user.id,
            recorded_at=now,
        )
        session.add(record)
        session.flush()
        for member in accounts:
            session.add(CommitteeOpinionMember(opinion_id=record.id, user_id=member.id))
        row.status = ItemStatus.OPINION_RECORDED.value
        session.flush()
        payload: dict[str, Any] = {
            "item_id": row.id,
            "kind": row.kind,
            "opinion": value.value,
            "members": sorted(names),
            "decided_on": day.isoformat(),
            "dataset": row.dataset,
            "application_id": row.application_id,
            "departments": load(row.departments) or [],
            "reason_sha256": _digest(reason),
        }
        if cleaned:
            payload["conditions_sha256"] = _digest(cleaned)
        append(session, "committee.opinion_recorded", user.username, payload, now=now)
        return _record(session, row)


def withdraw(
    ctx: GovContext, *, actor: str, item_id: int, reason: str, now: datetime | None = None
) -> ItemRecord:
    """Withdraw an open item (its raiser or the operator), with a reason."""
    now = now_or(now)
    reason = text(reason, "reason")
    with writing(ctx) as session:
        user = account(session, actor)
        row = _get(session, item_id, lock=True)
        check_can_withdraw(user, _facts(session, row))
        row.status = ItemStatus.WITHDRAWN.value
        row.withdrawn_by = user.id
        row.withdrawn_at = now
        row.withdrawn_reason = reason
        session.flush()
        append(
            session,
            "committee.withdrawn",
            user.username,
            {
                "item_id": row.id,
                "kind": row.kind,
                "dataset": row.dataset,
                "application_id": row.application_id,
                "reason_sha256": _digest(reason),
            },
            now=now,
        )
        return _record(session, row)


# --------------------------------------------------------------------------- reading


def show(ctx: GovContext, *, user: str, item_id: int) -> ItemRecord:
    """One item with its case file (application summary, audit entries) for those who may see it."""
    with reading(ctx) as session:
        viewer = account(session, user)
        row = _get(session, item_id)
        check_can_see(viewer, _facts(session, row))
        return _record(session, row, full=True)


def list_items(
    ctx: GovContext, *, user: str, kind: str | None = None, status: str | None = None
) -> list[ItemRecord]:
    """The items ``user`` may see, newest first, optionally of one queue and status."""
    with reading(ctx) as session:
        viewer = account(session, user)
        query = select(CommitteeItem).order_by(CommitteeItem.id.desc())
        if kind:
            query = query.where(CommitteeItem.kind == _kind(kind).value)
        if status:
            query = query.where(CommitteeItem.status == choice(ItemStatus, status, "status").value)
        return [
            _record(session, row) for row in session.scalars(query) if can_see(viewer, _facts(session, row))
        ]


def queues(ctx: GovContext, *, user: str) -> list[Queue]:
    """The four queues with the counts of the items ``user`` may see."""
    items = list_items(ctx, user=user)
    out = []
    for kind in ItemKind:
        mine = [i for i in items if i.kind == kind.value]
        zh, en = KIND_TITLES[kind]
        out.append(
            Queue(
                kind=kind.value,
                title_zh=zh,
                title_en=en,
                open=sum(i.status == ItemStatus.OPEN for i in mine),
                opinion_recorded=sum(i.status == ItemStatus.OPINION_RECORDED for i in mine),
                withdrawn=sum(i.status == ItemStatus.WITHDRAWN for i in mine),
            )
        )
    return out


def committee_members(ctx: GovContext) -> list[str]:
    """Usernames of the active committee members (for the opinion form)."""
    with reading(ctx) as session:
        return [
            u.username for u in registry.list_users(session, role=UserRole.EXPERT.value, status="approved")
        ]


@dataclass(frozen=True)
class ItemActions:
    """What the viewer may do on an item page (to draw forms; the services check again)."""

    record_opinion: bool
    opinion_reason: str
    withdraw: bool
    members: list[str]
    quorum: int


def actions_for(ctx: GovContext, *, user: str, item_id: int) -> ItemActions:
    with reading(ctx) as session:
        viewer = account(session, user)
        row = _get(session, item_id)
        facts = _facts(session, row)
        experts = registry.list_users(session, role=UserRole.EXPERT.value, status=UserStatus.APPROVED.value)
        others = [e for e in experts if e.username != facts.raised_by]
        # the widest quorum the form can name
        may_record = can_record_opinion(viewer, facts, others, quorum=_quorum(ctx))
        reason = ""
        if not may_record:
            try:
                check_can_record_opinion(viewer, facts, others, quorum=_quorum(ctx))
            except (InvalidRequest, InvalidTransition) as err:
                reason = err.message
            except Exception as err:  # AccessDenied and friends: the message pages show
                reason = getattr(err, "message", str(err))
        return ItemActions(
            record_opinion=may_record,
            opinion_reason=reason,
            withdraw=can_withdraw(viewer, facts),
            members=[e.username for e in others],
            quorum=_quorum(ctx),
        )


# --------------------------------------------------------------------------- gates


def latest_item(
    session: Session, kind: ItemKind, *, dataset: str | None = None, application_id: int | None = None
) -> CommitteeItem | None:
    """The newest item of ``kind`` about the subject that is not withdrawn."""
    query = select(CommitteeItem).where(
        CommitteeItem.kind == kind.value, CommitteeItem.status != ItemStatus.WITHDRAWN.value
    )
    if dataset is not None:
        query = query.where(CommitteeItem.dataset == dataset)
    if application_id is not None:
        query = query.where(CommitteeItem.application_id == application_id)
    return session.scalars(query.order_by(CommitteeItem.id.desc()).limit(1)).first()


def latest_opinion(
    session: Session, kind: ItemKind, *, dataset: str | None = None, application_id: int | None = None
) -> OpinionRecord | None:
    """The opinion on the newest not-withdrawn item about the subject (None: none recorded yet)."""
    row = latest_item(session, kind, dataset=dataset, application_id=application_id)
    return None if row is None else _opinion(session, row.id)


def referral_status(session: Session, application_id: int, dataset: str) -> dict[str, Any] | None:
    """What an applicant may know of a dataset's referral: the newest not-withdrawn
    ``high_risk_application`` item (id, status, opinion, conditions, date); None when not referred.
    Not the members, the reason or the deliberation (those stay in the committee's case file)."""
    row = latest_item(session, ItemKind.HIGH_RISK_APPLICATION, dataset=dataset, application_id=application_id)
    if row is None:
        return None
    opinion = _opinion(session, row.id)
    return {
        "item_id": row.id,
        "status": row.status,
        "opinion": opinion.opinion if opinion is not None else None,
        "conditions": opinion.conditions if opinion is not None else None,
        "decided_on": opinion.decided_on.isoformat() if opinion is not None else None,
    }


def check_application_gate(
    session: Session, application_id: int, dataset: str, *, restricted: bool
) -> GateResult | None:
    """Raise ``InvalidTransition`` unless a steward may now approve ``dataset`` of the application.

    No referral and not restricted: None (no opinion needed). Otherwise the newest not-withdrawn
    ``high_risk_application`` item about it must carry a favourable opinion.
    """
    row = latest_item(session, ItemKind.HIGH_RISK_APPLICATION, dataset=dataset, application_id=application_id)
    if row is None:
        if not restricted:
            return None
        raise InvalidTransition(
            f"{dataset!r} of application {application_id} is restricted (非开放) and was not referred to the "
            "expert committee.",
            hint=(
                "Refer it: `sandbox committee raise --kind high_risk_application "
                f"--application {application_id} --dataset {dataset} ...`."
            ),
        )
    opinion = _opinion(session, row.id)
    if opinion is None:
        raise InvalidTransition(
            f"{dataset!r} of application {application_id} awaits the expert committee's opinion "
            f"(item {row.id}); it cannot be approved yet (SR-12, SR-37).",
            hint="Refuse it now, or approve once the committee has given a favourable opinion.",
        )
    if not opinion.favourable:
        raise InvalidTransition(
            f"The expert committee's opinion on {dataset!r} of application {application_id} is "
            f"{opinion.opinion} (item {row.id}); it cannot be approved.",
            hint="Refuse it, or raise a new high_risk_application item with what the committee asked for.",
        )
    return GateResult(
        item_id=row.id,
        opinion=opinion.opinion,
        conditions=opinion.conditions,
        decided_on=opinion.decided_on.isoformat(),
    )


__all__ = [
    "AUDIT_KINDS",
    "GateResult",
    "ItemActions",
    "ItemRecord",
    "OpinionRecord",
    "Queue",
    "actions_for",
    "check_application_gate",
    "committee_members",
    "latest_item",
    "latest_opinion",
    "list_items",
    "open_for_application",
    "queues",
    "raise_item",
    "record_opinion",
    "referral_status",
    "show",
    "withdraw",
]
