"""What the export review pages show, built from the services (synchronous; run in the threadpool).

Every read and every decision about an export request goes through
``sandbox.export.service`` (``list_exports``, ``show``, ``review``): it decides who may
see and who may decide, and its errors are what the page shows. This module only adds
what a reviewer needs around the request: the file preview, the sources as the catalogue
describes them, the project's grants, agreements and budget use, and whether the viewer
may decide here (to draw the form, never to authorise: the service does that again).

**Who sees file content.** The pages are reachable from outside the sandbox, so the file
of a request (preview or raw) is shown only to those who review or oversee it: stewards
the service lets read it, admins and auditors. The requester and project members see the
status, checks and decision, and get the file only through the export gate's download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sandbox.access import registry
from sandbox.control.db import session_scope
from sandbox.control.models import UserRole
from sandbox.errors import AccessDenied, SandboxError
from sandbox.export import service as export_service
from sandbox.export.readers import FileKind, parse_file
from sandbox.export.results import Verdict
from sandbox.export.service import ExportContext, ExportRecord
from sandbox.export.states import ExportStatus
from sandbox.export.tables import cell_text
from sandbox.ledger import store as ledger
from sandbox.ledger.values import Scope

PREVIEW_ROWS = 200
PREVIEW_COLUMNS = 40
PREVIEW_TEXT_CHARS = 100_000

CONTENT_ROLES = frozenset({UserRole.STEWARD.value, UserRole.ADMIN.value, UserRole.AUDITOR.value})
"""Roles that may see the content of a quarantined file (the service decides which requests)."""


# ------------------------------------------------------------------------------ list


@dataclass(frozen=True)
class Viewer:
    name: str
    role: str
    department: str | None


def viewer(ectx: ExportContext, username: str) -> Viewer:
    with session_scope(ectx.control_engine) as session:
        user = registry.find_user(session, username)
        if user is None:
            raise AccessDenied(f"{username!r} has no account in the data sandbox.")
        return Viewer(name=user.username, role=str(user.role), department=user.department)


def awaits(record: ExportRecord, who: Viewer) -> bool:
    """Is ``record`` waiting for a decision by ``who`` (a steward of one of its departments)?"""
    return (
        record.status == ExportStatus.UNDER_REVIEW
        and who.role == UserRole.STEWARD.value
        and record.requester != who.name
        and (not record.departments or who.department in record.departments)
        and all(r["reviewer"] != who.name for r in record.reviews)
    )


@dataclass(frozen=True)
class ExportsOverview:
    viewer: Viewer
    awaiting: list[ExportRecord]
    others: list[ExportRecord]


def exports_overview(ectx: ExportContext, username: str) -> ExportsOverview:
    who = viewer(ectx, username)
    records = export_service.list_exports(ectx, user=username)
    awaiting = [r for r in records if awaits(r, who)]
    waiting_ids = {r.id for r in awaiting}
    return ExportsOverview(who, awaiting, [r for r in records if r.id not in waiting_ids])


# ------------------------------------------------------------------------------ preview


@dataclass(frozen=True)
class PreviewTable:
    name: str
    columns: list[str]
    rows: list[list[str]]
    total_rows: int
    total_columns: int


@dataclass(frozen=True)
class Preview:
    kind: str
    tables: list[PreviewTable] = field(default_factory=list)
    text: str | None = None
    text_truncated: bool = False
    image: bool = False
    pdf: bool = False
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def build_preview(data: bytes, filename: str, *, max_bytes: int) -> Preview:
    """Tables as tables, images inline, text as text; a file the readers refuse says why."""
    try:
        parsed = parse_file(data, filename, max_bytes=max_bytes)
    except SandboxError as err:
        return Preview(kind="unknown", error=err.message)
    tables = []
    for table in parsed.tables:
        columns = table.columns[:PREVIEW_COLUMNS]
        rows = [[cell_text(table.cell(i, c)) for c in columns] for i in range(min(len(table), PREVIEW_ROWS))]
        tables.append(PreviewTable(table.name, columns, rows, len(table), len(table.columns)))
    text: str | None = None
    truncated = False
    if parsed.kind in (FileKind.TEXT, FileKind.MARKDOWN, FileKind.JSON) or (
        parsed.kind == FileKind.CSV and not tables
    ):
        whole = data.decode("utf-8-sig", errors="replace")
        text, truncated = whole[:PREVIEW_TEXT_CHARS], len(whole) > PREVIEW_TEXT_CHARS
    return Preview(
        kind=parsed.kind.value,
        tables=tables,
        text=text,
        text_truncated=truncated,
        image=parsed.kind == FileKind.PNG,
        pdf=parsed.kind == FileKind.PDF,
        notes=list(parsed.notes),
    )


MEDIA_TYPES = {
    FileKind.PNG: "image/png",
    FileKind.PDF: "application/pdf",
}


def file_for_reviewer(ectx: ExportContext, username: str, export_id: int) -> tuple[ExportRecord, bytes]:
    """The quarantined bytes (hash re-checked), for a viewer who may see content; else AccessDenied."""
    record = export_service.show(ectx, export_id=export_id, user=username)
    who = viewer(ectx, username)
    check_may_see_content(who, record)
    return record, ectx.quarantine.read(record.sha256)


def may_see_content(who: Viewer, record: ExportRecord) -> bool:
    return who.role in CONTENT_ROLES


def check_may_see_content(who: Viewer, record: ExportRecord) -> None:
    if not may_see_content(who, record):
        raise AccessDenied(
            f"The file of export request {record.id} is shown only to its reviewers, admins and auditors.",
            hint="Requesters get the file through the export gate once it is approved "
            "(from the notebook, or `sandbox export download`).",
        )


# ------------------------------------------------------------------------------ request page


@dataclass(frozen=True)
class Source:
    dataset: str
    name_zh: str
    name_en: str
    tier: str
    tier_zh: str
    providers: list[tuple[str, str, str]]  # (id, zh, en)


@dataclass(frozen=True)
class GrantRow:
    dataset: str
    source: str
    granted_at: Any
    expires_at: Any
    active: bool


@dataclass(frozen=True)
class BudgetRow:
    dataset: str
    project_spent: Decimal
    per_project: Decimal
    requester_spent: Decimal
    per_user: Decimal
    cited_epsilon: Decimal


@dataclass(frozen=True)
class Decision:
    """Whether the viewer may decide here, and if not, the reason the page shows."""

    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class RequestView:
    record: ExportRecord
    viewer: Viewer
    sources: list[Source]
    grants: list[GrantRow]
    agreements: list[Any]
    budgets: list[BudgetRow]
    decision: Decision
    approvals: int
    preview: Preview | None
    verdicts: dict[str, int]
    citation: list[str]


def request_view(ctx: Any, ectx: ExportContext, username: str, export_id: int) -> RequestView:
    record = export_service.show(ectx, export_id=export_id, user=username)  # may the viewer read it?
    who = viewer(ectx, username)
    preview = None
    if may_see_content(who, record):
        data = ectx.quarantine.read(record.sha256)
        preview = build_preview(data, record.filename, max_bytes=max(len(data), 1))
    verdicts = {v.value: sum(1 for c in record.checks if c.verdict == v) for v in Verdict}
    manifest = record.manifest or {}
    return RequestView(
        record=record,
        viewer=who,
        sources=_sources(ectx, record),
        grants=_grants(ectx, record),
        agreements=_agreements(ctx, username, record),
        budgets=_budgets(ectx, record),
        decision=_decision(record, who),
        approvals=sum(1 for r in record.reviews if r["decision"] == "approve"),
        preview=preview,
        verdicts=verdicts,
        citation=[str(c) for c in manifest.get("citation", [])],
    )


def _decision(record: ExportRecord, who: Viewer) -> Decision:
    if who.role == UserRole.AUDITOR.value:
        return Decision(False, "Auditors read export requests; they do not decide them.")
    if record.status != ExportStatus.UNDER_REVIEW:
        return Decision(False, f"The request is {record.status.value.replace('_', ' ')}; nothing to decide.")
    if record.requester == who.name:
        return Decision(False, "Nobody reviews their own request.")
    if who.role != UserRole.STEWARD.value:
        return Decision(False, "Only stewards of the providing departments decide export requests.")
    if record.departments and who.department not in record.departments:
        return Decision(False, "Your department does not provide the data of this file.")
    if any(r["reviewer"] == who.name for r in record.reviews):
        return Decision(
            False, "You have reviewed this request; another steward must give the remaining approval."
        )
    return Decision(True)


def _sources(ectx: ExportContext, record: ExportRecord) -> list[Source]:
    platform = ectx.catalog.platform
    out = []
    for ds_id in record.datasets:
        if ds_id not in ectx.catalog.datasets:
            continue
        ds = ectx.catalog.dataset(ds_id)
        providers = [
            (
                p,
                platform.departments[p].name.zh if p in platform.departments else p,
                platform.departments[p].name.en if p in platform.departments else p,
            )
            for p in ds.provider
        ]
        out.append(
            Source(
                dataset=ds.id,
                name_zh=ds.name.zh,
                name_en=ds.name.en,
                tier=ds.tier.value,
                tier_zh=platform.tiers[ds.tier].name.zh,
                providers=providers,
            )
        )
    return out


def _grants(ectx: ExportContext, record: ExportRecord) -> list[GrantRow]:
    with session_scope(ectx.control_engine) as session:
        return [
            GrantRow(g.dataset, g.source, g.granted_at, g.expires_at, g.is_active())
            for g in registry.list_grants(session, project=record.project)
        ]


def _agreements(ctx: Any, username: str, record: ExportRecord) -> list[Any]:
    """The project's data-use agreements the viewer may see (governance, when installed)."""
    try:
        from sandbox.governance import agreements
    except ImportError:  # governance not installed in this build: grants only
        return []
    try:
        return list(agreements.list_agreements(ctx, user=username, project=record.project))
    except SandboxError:
        return []


def _budgets(ectx: ExportContext, record: ExportRecord) -> list[BudgetRow]:
    """Project and requester spend on each DP source (exact decimals), and the epsilon the file cites."""
    cited: dict[str, Decimal] = {}
    with session_scope(ectx.control_engine) as session:
        project = registry.get_project(session, record.project)
        requester = registry.find_user(session, record.requester)
        if requester is None:
            return []
        party = ledger.Party(requester.id, requester.username, project.id, project.name)
        for release_id in record.release_ids:
            stored = ledger.get_release(session, release_id)
            if stored is not None:
                cited[stored.dataset] = cited.get(stored.dataset, Decimal(0)) + stored.epsilon_charged
        rows = []
        for ds_id in record.datasets:
            if ds_id not in ectx.catalog.datasets or not ectx.catalog.tier_rules(ds_id).dp_required:
                continue
            caps = ectx.catalog.budgets(ds_id)
            spent = ledger.spent(session, ds_id, party)
            rows.append(
                BudgetRow(
                    dataset=ds_id,
                    project_spent=spent[Scope.PROJECT],
                    per_project=Decimal(caps.per_project),
                    requester_spent=spent[Scope.USER],
                    per_user=Decimal(caps.per_user),
                    cited_epsilon=cited.get(ds_id, Decimal(0)),
                )
            )
        return rows


def review(ectx: ExportContext, username: str, export_id: int, *, approve: bool, reason: str) -> ExportRecord:
    """One steward's decision, through the export service (which enforces every rule)."""
    return export_service.review(ectx, export_id=export_id, reviewer=username, approve=approve, reason=reason)
