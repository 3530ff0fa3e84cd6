"""Channels between data users and providers: demand requests, corrections, usage reports.

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
* **Usage reports** (数据利用情况报告, SR-29): a project member files outputs (papers, products,
  loans supported), benefits and incidents. A project whose agreement started more than
  ``REPORT_INTERVAL_DAYS`` ago without a report in the last interval is *overdue*; overdue
  reports block renewal (``applications.submit(renews=...)``).

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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.audit.store import append
from sandbox.control.models import Project, User, UserRole
from sandbox.errors import AccessDenied, NotFound
from sandbox.governance import channel_rules as rules
from sandbox.governance.agreements import REPORT_INTERVAL_DAYS, effective_status, username_of
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
    Agreement,
    AgreementStatus,
    ChannelKind,
    ChannelRequest,
    UsageReport,
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


@dataclass(frozen=True)
class UsageReportRecord:
    id: int
    project: str
    agreement_id: int | None
    filed_by: str
    papers: int
    products: int
    loans_supported: int
    outputs: list[str]
    benefits: str
    incidents: str
    cites_sources: bool
    filed_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "filed_at": iso(self.filed_at)}


@dataclass(frozen=True)
class ReportDue:
    """A project's reporting position under one agreement (SR-29)."""

    project: str
    agreement_id: int
    agreement: str
    term_start: datetime
    last_report: datetime | None
    due: datetime
    overdue: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "agreement_id": self.agreement_id,
            "agreement": self.agreement,
            "term_start": iso(self.term_start),
            "last_report": iso(self.last_report),
            "due": iso(self.due),
            "overdue": self.overdue,
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


# --------------------------------------------------------------------------- usage reports


def _report_record(session: Session, row: UsageReport) -> UsageReportRecord:
    project = session.get(Project, row.project_id)
    assert project is not None
    return UsageReportRecord(
        id=row.id,
        project=project.name,
        agreement_id=row.agreement_id,
        filed_by=username_of(session, row.filed_by) or "?",
        papers=row.papers,
        products=row.products,
        loans_supported=row.loans_supported,
        outputs=[str(o) for o in load(row.outputs)],
        benefits=row.benefits,
        incidents=row.incidents,
        cites_sources=row.cites_sources,
        filed_at=row.filed_at,
    )


def file_usage_report(
    ctx: GovContext,
    *,
    user: str,
    project: str,
    papers: int = 0,
    products: int = 0,
    loans_supported: int = 0,
    outputs: Sequence[str] | str | None = None,
    benefits: str = "",
    incidents: str = "",
    cites_sources: bool = True,
    agreement_id: int | None = None,
    now: datetime | None = None,
) -> UsageReportRecord:
    """SR-29: a project member reports outputs, products, papers, loans supported and incidents."""
    counts = {"papers": papers, "products": products, "loans_supported": loans_supported}
    for name, value in counts.items():
        if int(value) < 0:
            raise InvalidRequest(f"{name} cannot be negative.")
    items = (
        split_list(outputs) if isinstance(outputs, str) else [o.strip() for o in outputs or () if o.strip()]
    )
    with writing(ctx) as session:
        filer = account(session, user)
        proj = registry.get_project(session, project)
        if registry.membership(session, proj, filer) is None:
            raise AccessDenied(
                f"{filer.username!r} is not a member of project {project!r}.",
                hint="A member of the project (usually its lead) files its usage report.",
            )
        if agreement_id is not None:
            agreement = session.get(Agreement, agreement_id)
            if agreement is None or agreement.project_id != proj.id:
                raise InvalidRequest(f"Agreement {agreement_id} is not an agreement of {project!r}.")
        row = UsageReport(
            project_id=proj.id,
            agreement_id=agreement_id,
            filed_by=filer.id,
            papers=int(papers),
            products=int(products),
            loans_supported=int(loans_supported),
            outputs=dump(items),
            benefits=benefits.strip(),
            incidents=incidents.strip(),
            cites_sources=bool(cites_sources),
            filed_at=now_or(now),
        )
        session.add(row)
        session.flush()
        append(
            session,
            "usage_report.filed",
            filer.username,
            {
                "report_id": row.id,
                "project": project,
                "agreement_id": agreement_id,
                **{k: int(v) for k, v in counts.items()},
                "outputs": len(items),
                "incidents": bool(row.incidents),
                "cites_sources": bool(cites_sources),
            },
        )
        return _report_record(session, row)


def list_usage_reports(ctx: GovContext, *, user: str, project: str | None = None) -> list[UsageReportRecord]:
    """Reports of the viewer's projects (admins, auditors and stewards: all)."""
    with reading(ctx) as session:
        viewer = account(session, user)
        query = select(UsageReport).order_by(UsageReport.id.desc())
        if project is not None:
            query = query.where(UsageReport.project_id == registry.get_project(session, project).id)
        rows = list(session.scalars(query))
        if viewer.role not in (UserRole.ADMIN, UserRole.AUDITOR, UserRole.STEWARD):
            mine = {p.id for p in registry.user_projects(session, viewer.username)}
            rows = [r for r in rows if r.project_id in mine]
        return [_report_record(session, r) for r in rows]


def _last_report(session: Session, project_id: int) -> datetime | None:
    row = session.scalars(
        select(UsageReport.filed_at)
        .where(UsageReport.project_id == project_id)
        .order_by(UsageReport.filed_at.desc())
        .limit(1)
    ).first()
    return row


def report_due(session: Session, agreement: Agreement, now: datetime | None = None) -> ReportDue:
    """When the next usage report of the agreement's project is due, and whether it is overdue.

    Due ``REPORT_INTERVAL_DAYS`` after the later of the term start and the last report.
    """
    now = now_or(now)
    project = session.get(Project, agreement.project_id)
    assert project is not None
    last = _last_report(session, project.id)
    if last is not None and last < agreement.term_start:
        last = None
    anchor = last or agreement.term_start
    due = anchor + timedelta(days=REPORT_INTERVAL_DAYS)
    return ReportDue(
        project=project.name,
        agreement_id=agreement.id,
        agreement=f"{agreement.number} v{agreement.version}",
        term_start=agreement.term_start,
        last_report=last,
        due=due,
        overdue=now >= due,
    )


def report_overdue(session: Session, agreement: Agreement, now: datetime | None = None) -> bool:
    return report_due(session, agreement, now).overdue


def reporting_status(
    ctx: GovContext, *, user: str | None = None, overdue_only: bool = False, now: datetime | None = None
) -> list[ReportDue]:
    """The reporting position of every agreement in force or expired (not withdrawn/superseded).

    ``user`` limits it to what they may see: admins and auditors all, stewards the agreements
    covering their department's datasets, data users their projects'. None: the local operator.
    """
    now = now_or(now)
    with reading(ctx) as session:
        visible = _agreement_filter(ctx, session, user)
        rows = session.scalars(
            select(Agreement).where(Agreement.status == AgreementStatus.ACTIVE.value).order_by(Agreement.id)
        )
        out = []
        for agreement in rows:
            if effective_status(agreement, now) not in ("active", "expired") or not visible(agreement):
                continue
            due = report_due(session, agreement, now)
            if due.overdue or not overdue_only:
                out.append(due)
        return out


def _agreement_filter(ctx: GovContext, session: Session, user: str | None) -> Callable[[Agreement], bool]:
    if user is None:
        return lambda _agreement: True
    viewer = account(session, user)
    if viewer.role in (UserRole.ADMIN, UserRole.AUDITOR):
        return lambda _agreement: True
    if viewer.role == UserRole.STEWARD:
        dept = viewer.department
        return lambda a: any(dept in ctx.catalog.dataset(d).provider for d in a.dataset_ids())
    mine = {p.id for p in registry.user_projects(session, viewer.username)}
    return lambda a: a.project_id in mine


__all__ = [
    "ChannelRecord",
    "ReportDue",
    "UsageReportRecord",
    "file_correction",
    "file_demand",
    "file_request",
    "file_usage_report",
    "get_request",
    "list_requests",
    "list_usage_reports",
    "report_due",
    "report_overdue",
    "reporting_status",
    "respond",
    "route",
    "sla_summary",
]
