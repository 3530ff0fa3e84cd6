"""Channels between data users and providers: demand requests, corrections, objections.

* **Demand requests** (开放需求, SR-07): anyone signed in asks for data not yet open (a dataset
  that is not open, or data not in the catalogue at all). The request is routed to the
  provider department (the dataset's first provider, or the department named; else the
  operator) and moves received → answered / opened / refused (a refusal needs a reason).
* **Data-correction reports** (数据纠错, SR-30): anyone flags an error in a dataset; routed to its
  provider; received → acknowledged → corrected / rejected (with reason).
* **Objections** (权益保护, SR-30): filed by ``sandbox.governance.objections``; the same table,
  answered here with an outcome (upheld / partly_upheld / rejected) and a reason.
* **SLA clocks** (SR-30): each request is due ``channels.sla_days[kind]`` days after filing;
  ``answered_at`` is set the first time it is answered; ``overdue`` / ``answered_late`` and the
  per-kind summary (:func:`sla_summary`) follow ``sandbox.governance.channel_rules``.
* **Usage reports** (数据利用情况报告, SR-29) are in ``sandbox.governance.usage_reports``.

Who answers: a steward of the routed department (for an objection, of any provider department of
its dataset), or the operator (who also routes requests with no department). Everyone may file
(REQUIREMENTS §4, "File demand, correction, 举报": ✔ for every role). Filers see their own
requests; stewards their department's; admins and auditors all. Objections' free texts reach the
audit chain only as SHA-256 digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.access.errors import InvalidRequest
from sandbox.audit.store import append
from sandbox.control.models import User, UserRole
from sandbox.errors import AccessDenied, NotFound
from sandbox.governance import channel_rules as rules
from sandbox.governance.agreements import username_of
from sandbox.governance.common import (
    GovContext,
    account,
    choice,
    iso,
    now_or,
    reading,
    split_list,
    text,
    writing,
)
from sandbox.governance.models import (
    ChannelKind,
    ChannelRequest,
    dump,
    load,
)
from sandbox.governance.permissions import Action, check_can


@dataclass(frozen=True)
class ChannelRecord:
    id: int
    kind: str
    filed_by: str
    title: str
    dataset: str | None
    columns: list[str]
    scenario: str | None
    description: str
    department: str | None
    status: str
    response: str | None
    responded_by: str | None
    responded_at: datetime | None
    created_at: datetime
    subject_kind: str | None  # objections: lookup / consent / release
    subject_ref: str | None
    due_at: datetime
    answered_at: datetime | None
    clock: str  # open / overdue / answered_on_time / answered_late (at the time of reading)
    overdue: bool
    answered_late: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "responded_at": iso(self.responded_at),
            "created_at": iso(self.created_at),
            "due_at": iso(self.due_at),
            "answered_at": iso(self.answered_at),
        }


# --------------------------------------------------------------------------- demand / correction


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _sla_config(ctx: GovContext) -> dict[str, int]:
    """``channels.sla_days`` of platform.yaml (the defaults when the policy names none)."""
    channels_policy = getattr(ctx.catalog.platform, "channels", None)
    if channels_policy is None:
        return {}
    return {k: int(v) for k, v in channels_policy.sla_days.model_dump().items()}


def _facts(ctx: GovContext, session: Session, row: ChannelRequest) -> rules.RequestFacts:
    """Who answers ``row``: its routed department; for an objection also every provider of its dataset."""
    departments = {row.department} if row.department else set()
    if row.kind == ChannelKind.OBJECTION and row.dataset in ctx.catalog.datasets:
        departments.update(ctx.catalog.dataset(row.dataset).provider)
    return rules.RequestFacts(
        id=row.id,
        kind=row.kind,
        filed_by=username_of(session, row.filed_by) or "?",
        departments=frozenset(departments),
    )


def _channel_record(session: Session, row: ChannelRequest, now: datetime | None = None) -> ChannelRecord:
    state = rules.clock(row.due_at, row.answered_at, now_or(now))
    return ChannelRecord(
        id=row.id,
        kind=row.kind,
        filed_by=username_of(session, row.filed_by) or "?",
        title=row.title,
        dataset=row.dataset,
        columns=load(row.columns) or [],
        scenario=row.scenario,
        description=row.description,
        department=row.department,
        status=row.status,
        response=row.response,
        responded_by=username_of(session, row.responded_by),
        responded_at=row.responded_at,
        created_at=row.created_at,
        subject_kind=row.subject_kind,
        subject_ref=row.subject_ref,
        due_at=row.due_at,
        answered_at=row.answered_at,
        clock=state.value,
        overdue=state is rules.Clock.OVERDUE,
        answered_late=state is rules.Clock.ANSWERED_LATE,
    )


def file_request(
    ctx: GovContext,
    kind: ChannelKind,
    *,
    user: str,
    title: str,
    description: str,
    dataset: str | None,
    columns: Sequence[str] | str | None,
    scenario: str | None,
    department: str | None,
    now: datetime | None,
    subject_kind: str | None = None,
    subject_ref: str | None = None,
    check_subject: Callable[[Session, User], None] | None = None,
    description_field: str = "description",
) -> ChannelRecord:
    """File a request of any kind (the shared path of demands, corrections and objections).

    ``check_subject`` validates an objection's subject in the filing transaction. Objections
    keep their title and description out of the audit chain (SHA-256 digests only).
    """
    catalog = ctx.catalog
    title = text(title, "title", maximum=200)
    description = text(description, description_field, minimum=5)
    cols = split_list(columns)
    if dataset is not None:
        ds = catalog.dataset(dataset)  # UnknownDataset
        unknown = [c for c in cols if c not in ds.column_names]
        if unknown and kind is ChannelKind.CORRECTION:
            raise InvalidRequest(f"{dataset!r} has no column(s) {unknown}.", hint="sb.describe() lists them.")
        if department is None:
            department = ds.provider[0]
        elif department not in ds.provider:
            raise InvalidRequest(f"{department!r} does not provide {dataset!r}; it goes to {ds.provider}.")
    if department is not None and department not in catalog.platform.departments:
        raise InvalidRequest(
            f"Unknown department {department!r}.", hint="Use a department id from platform.yaml."
        )
    with writing(ctx) as session:
        filer = account(session, user)
        check_can(filer, Action.FILE_REPORT)
        if check_subject is not None:
            check_subject(session, filer)
        filed_at = now_or(now)
        row = ChannelRequest(
            kind=kind.value,
            filed_by=filer.id,
            dataset=dataset,
            title=title,
            columns=dump(cols) if cols else None,
            scenario=(scenario or "").strip() or None,
            description=description,
            department=department,
            status="received",
            created_at=filed_at,
            due_at=rules.due_at(filed_at, rules.sla_days(kind, _sla_config(ctx))),
            subject_kind=subject_kind,
            subject_ref=subject_ref,
        )
        session.add(row)
        session.flush()
        data: dict[str, Any] = {"request_id": row.id, "department": department, "due_at": iso(row.due_at)}
        if kind is ChannelKind.OBJECTION:
            data["title_sha256"] = _digest(title)
            data["description_sha256"] = _digest(description)
            if subject_kind is not None:
                data["subject"] = {"kind": subject_kind, "ref": subject_ref}
        else:
            data["title"] = title
        if dataset is not None:
            data["dataset"] = dataset
        append(session, f"{kind.value}.filed", filer.username, data)
        return _channel_record(session, row, filed_at)


def file_demand(
    ctx: GovContext,
    *,
    user: str,
    title: str,
    description: str,
    dataset: str | None = None,
    columns: Sequence[str] | str | None = None,
    scenario: str | None = None,
    department: str | None = None,
    now: datetime | None = None,
) -> ChannelRecord:
    """SR-07: ask for data not yet open; routed to the provider (or the operator)."""
    if dataset is not None and not ctx.catalog.tier_rules(dataset).needs_grant:
        raise InvalidRequest(
            f"{dataset!r} is already open (无条件开放).", hint="Read it directly; no request is needed."
        )
    return file_request(
        ctx,
        ChannelKind.DEMAND,
        user=user,
        title=title,
        description=description,
        dataset=dataset,
        columns=columns,
        scenario=scenario,
        department=department,
        now=now,
    )


def file_correction(
    ctx: GovContext,
    *,
    user: str,
    dataset: str,
    description: str,
    columns: Sequence[str] | str | None = None,
    title: str | None = None,
    now: datetime | None = None,
) -> ChannelRecord:
    """SR-30: flag an error in a dataset; routed to its provider."""
    return file_request(
        ctx,
        ChannelKind.CORRECTION,
        user=user,
        title=title or f"Correction to {dataset}",
        description=description,
        dataset=dataset,
        columns=columns,
        scenario=None,
        department=None,
        now=now,
    )


def respond(
    ctx: GovContext,
    *,
    user: str,
    request_id: int,
    status: str,
    response: str,
    now: datetime | None = None,
) -> ChannelRecord:
    """Move a request on (an objection: give its outcome), with the response the filer will read.

    The first move into one of the kind's answers (``channel_rules.ANSWERS``) stops the SLA clock
    (``answered_at``).
    """
    moment = now_or(now)
    with writing(ctx) as session:
        actor = account(session, user)
        row = session.get(ChannelRequest, request_id)
        if row is None:
            raise NotFound(f"No request {request_id}.")
        facts = _facts(ctx, session, row)
        if row.kind == ChannelKind.OBJECTION and not rules.can_see(actor, facts):
            raise NotFound(f"No request {request_id} that you may see.")
        rules.check_can_answer(actor, facts)
        kind = ChannelKind(row.kind)
        rules.check_move(kind, row.status, status)
        response = text(response, "response", minimum=3 if status in rules.NEEDS_REASON else 1)
        row.status = status
        row.response = response
        row.responded_by = actor.id
        row.responded_at = moment
        if row.answered_at is None and rules.stops_clock(kind, status):
            row.answered_at = moment
        session.flush()
        data: dict[str, Any] = {"request_id": row.id, "status": status, "department": row.department}
        if kind is ChannelKind.OBJECTION:
            data["response_sha256"] = _digest(response)
        else:
            data["response"] = response
        if row.answered_at == moment:
            data["answered_at"] = iso(moment)
            data["answered_late"] = moment > row.due_at
        append(session, f"{kind.value}.updated", actor.username, data)
        return _channel_record(session, row, moment)


def route(ctx: GovContext, *, user: str, request_id: int, department: str) -> ChannelRecord:
    """The operator routes a request that named no department (or re-routes one)."""
    if department not in ctx.catalog.platform.departments:
        raise InvalidRequest(
            f"Unknown department {department!r}.", hint="Use a department id from platform.yaml."
        )
    with writing(ctx) as session:
        actor = account(session, user)
        if actor.role != UserRole.ADMIN:
            raise AccessDenied("Only the platform operator routes requests.")
        row = session.get(ChannelRequest, request_id)
        if row is None:
            raise NotFound(f"No request {request_id}.")
        row.department = department
        session.flush()  # the due date stays: the clock runs from filing
        append(
            session,
            f"{row.kind}.updated",
            actor.username,
            {"request_id": row.id, "status": row.status, "department": department, "routed": True},
        )
        return _channel_record(session, row)


def _visible_rows(
    ctx: GovContext, session: Session, viewer: User, kind: str | None, status: str | None
) -> list[ChannelRequest]:
    query = select(ChannelRequest).order_by(ChannelRequest.id.desc())
    if kind is not None:
        query = query.where(ChannelRequest.kind == choice(ChannelKind, kind, "request kind").value)
    if status is not None:
        query = query.where(ChannelRequest.status == status)
    return [r for r in session.scalars(query) if rules.can_see(viewer, _facts(ctx, session, r))]


def list_requests(
    ctx: GovContext,
    *,
    user: str,
    kind: str | None = None,
    status: str | None = None,
    clock: str | None = None,
    overdue: bool = False,
    now: datetime | None = None,
) -> list[ChannelRecord]:
    """Requests ``user`` may see (own, their department's, or all for admins and auditors),
    with their clocks at ``now``; ``clock`` keeps one clock state, ``overdue`` the overdue ones."""
    moment = now_or(now)
    wanted = choice(rules.Clock, clock, "clock") if clock is not None else None
    if overdue:
        wanted = rules.Clock.OVERDUE
    with reading(ctx) as session:
        viewer = account(session, user)
        rows = _visible_rows(ctx, session, viewer, kind, status)
        records = [_channel_record(session, r, moment) for r in rows]
        return [r for r in records if wanted is None or r.clock == wanted.value]


def get_request(ctx: GovContext, *, user: str, request_id: int, now: datetime | None = None) -> ChannelRecord:
    with reading(ctx) as session:
        viewer = account(session, user)
        row = session.get(ChannelRequest, request_id)
        if row is None or not rules.can_see(viewer, _facts(ctx, session, row)):
            raise NotFound(f"No request {request_id} that you may see.")
        return _channel_record(session, row, now)


def sla_summary(ctx: GovContext, *, user: str, now: datetime | None = None) -> list[rules.SlaSummary]:
    """Per kind: filed, open, overdue, answered on time / late, median days to answer (SR-30, SR-38).

    Over the requests ``user`` may see: a supervisor or the operator gets the platform's figures,
    a steward its department's, anyone else their own.
    """
    moment = now_or(now)
    with reading(ctx) as session:
        viewer = account(session, user)
        facts = [
            rules.ClockFacts(r.kind, r.created_at, r.due_at, r.answered_at)
            for r in _visible_rows(ctx, session, viewer, None, None)
        ]
    return rules.summarise(facts, now=moment, configured=_sla_config(ctx))


__all__ = [
    "ChannelRecord",
    "file_correction",
    "file_demand",
    "file_request",
    "get_request",
    "list_requests",
    "respond",
    "route",
    "sla_summary",
]
