"""Usage reports (数据利用情况报告, SR-29): what a project did with the data, and when it is due.

A project member files outputs (papers, products, loans supported), benefits and incidents. A
project whose agreement started more than ``REPORT_INTERVAL_DAYS`` ago without a report in the
last interval is *overdue*; overdue reports block renewal (``applications.submit(renews=...)``).
Members see their projects' reports; admins, auditors and stewards all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.audit.store import append
from sandbox.control.models import Project, UserRole
from sandbox.errors import AccessDenied
from sandbox.governance.agreements import REPORT_INTERVAL_DAYS, effective_status, username_of
from sandbox.governance.common import (
    GovContext,
    account,
    iso,
    now_or,
    reading,
    split_list,
    writing,
)
from sandbox.governance.models import (
    Agreement,
    AgreementStatus,
    UsageReport,
    dump,
    load,
)


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
    "ReportDue",
    "UsageReportRecord",
    "file_usage_report",
    "list_usage_reports",
    "report_due",
    "report_overdue",
    "reporting_status",
]
