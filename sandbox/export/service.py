"""The export gate's service: submit → checks → steward review → release (DESIGN §5).

Used by the CLI (``sandbox export …``) and the gateway. Every step is one
transaction with its audit entry (``sandbox.audit.store.append``); every status
change goes through :func:`sandbox.export.states.check_can_transition`.

Rules
    * Only data users (researcher, bank, enterprise) who are members of the project
      submit (REQUIREMENTS §4). The file goes into the content-addressed quarantine
      first; the requester cannot change it afterwards.
    * Lineage: the datasets named at submission, else every dataset the project holds
      an active grant for plus the datasets of its DP releases. The strictest tier wins.
    * A failing check rejects the request at once (system). Otherwise a request whose
      sources are all open and whose checks all pass is approved automatically (SR-26,
      ``export_reviewers`` 0); everything else waits for stewards.
    * Reviewers are stewards of a provider department of the (non-open) sources; every such
      department must approve, and at least ``export_reviewers`` distinct stewards (two for
      restricted). One rejection rejects. Nobody reviews their own request; auditors only read.
    * Download: members of the project only. The first download of an approved request
      releases it and writes its manifest; each read re-checks the file's SHA-256.
    * Dry run (:func:`dry_run`): the same checks with the same context, for the same people,
      before submitting; nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sandbox.access.registry import find_project, find_user, list_grants, membership
from sandbox.audit.events import register_kind
from sandbox.audit.store import append as audit_append
from sandbox.config import Settings, get_settings
from sandbox.control.db import make_engine, session_scope
from sandbox.control.models import Project, User, UserRole, UserStatus, utcnow
from sandbox.errors import (
    AccessDenied,
    AccountInactive,
    ExportRejected,
    InvalidTransition,
    NotFound,
    NotProjectMember,
    SandboxError,
)
from sandbox.export.checks import CheckContext, assess_file
from sandbox.export.context import SourceDataset
from sandbox.export.manifest import ReleaseRef, ReviewRef, SourceRef, build_manifest
from sandbox.export.models import ExportRequest, ExportReview
from sandbox.export.provenance import DpRelease
from sandbox.export.quarantine import QuarantineStore, sha256_hex
from sandbox.export.results import CheckResult, Verdict, worst
from sandbox.export.states import ExportActor, ExportStatus, check_can_transition
from sandbox.ledger.models import Release
from sandbox.ledger.values import ReleaseStatus
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import ColumnRole, ExportThresholds, Tier

__all__ = [
    "Assessment",
    "Download",
    "ExportContext",
    "ExportRecord",
    "download",
    "dry_run",
    "list_exports",
    "manifest",
    "review",
    "show",
    "submit",
    "withdraw",
]

REQUEST_ROLES = frozenset({UserRole.RESEARCHER.value, UserRole.BANK.value, UserRole.ENTERPRISE.value})

register_kind(
    "export.refused",
    1,
    "File refused at the export gate's intake (type, size, encoding).",
    required=("project",),
)
register_kind(
    "export.dry_run",
    1,
    "A file checked without submitting it (POST exports/check): hash, size and verdicts, no contents.",
    required=("project", "sha256", "verdict"),
)
register_kind("export.downloaded", 1, "Released export file handed out again.", required=("export_id",))
register_kind("export.withdrawn", 1, "Export request withdrawn.", required=("export_id",))


@dataclass
class ExportContext:
    """What the export service needs: the catalogue, the control DB and the quarantine."""

    catalog: Catalog
    control_engine: Engine
    quarantine: QuarantineStore

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ExportContext:
        settings = settings or get_settings()
        return cls(
            catalog=load_policies(settings.policy_dir),
            control_engine=make_engine(settings.control_db_url),
            quarantine=QuarantineStore(settings.quarantine_dir),
        )

    def close(self) -> None:
        self.control_engine.dispose()


@dataclass(frozen=True)
class ExportRecord:
    """An export request as callers see it."""

    id: int
    status: ExportStatus
    sha256: str
    checks: list[CheckResult]
    project: str
    requester: str
    purpose: str
    filename: str
    size: int
    tier: Tier
    datasets: list[str]
    departments: list[str]
    reviewers_required: int
    release_ids: list[str]
    reviews: list[dict[str, Any]] = field(default_factory=list)
    decision_reason: str | None = None
    created_at: datetime | None = None
    manifest: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The CLI's ``--json`` shape: ``{"id", "status", "checks", "sha256"}``."""
        return {
            "id": self.id,
            "status": self.status.value,
            "checks": [c.to_dict() for c in self.checks],
            "sha256": self.sha256,
        }

    def detail(self) -> dict[str, Any]:
        """``to_dict`` plus lineage, reviews and the decision (``show --json``)."""
        return {
            **self.to_dict(),
            "project": self.project,
            "requester": self.requester,
            "purpose": self.purpose,
            "filename": self.filename,
            "size": self.size,
            "tier": self.tier.value,
            "datasets": self.datasets,
            "departments": self.departments,
            "reviewers_required": self.reviewers_required,
            "release_ids": self.release_ids,
            "reviews": self.reviews,
            "decision_reason": self.decision_reason,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


# ---------------------------------------------------------------- helpers


def _user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"No user {username!r}.", hint="`sandbox user list` shows the accounts.")
    if user.status != UserStatus.APPROVED.value:
        raise AccountInactive(f"Account {user.username!r} is {user.status}.")
    return user


def _project(session: Session, name: str) -> Project:
    project = find_project(session, name)
    if project is None:
        raise NotFound(f"No project {name!r}.", hint="`sandbox project list` shows the projects.")
    return project


def _request(session: Session, export_id: int) -> ExportRequest:
    req = session.get(ExportRequest, export_id)
    if req is None:
        raise NotFound(
            f"No export request {export_id}.",
            hint="`sandbox export show ID` takes the id that submit printed.",
        )
    return req


def _record(req: ExportRequest) -> ExportRecord:
    checks = [CheckResult(c["name"], Verdict(c["verdict"]), c["reason"]) for c in req.json_list("checks")]
    return ExportRecord(
        id=req.id,
        status=ExportStatus(req.status),
        sha256=req.sha256,
        checks=checks,
        project=req.project.name,
        requester=req.requester.username,
        purpose=req.purpose,
        filename=req.filename,
        size=req.size,
        tier=Tier(req.tier),
        datasets=[str(d) for d in req.json_list("datasets")],
        departments=[str(d) for d in req.json_list("departments")],
        reviewers_required=req.reviewers_required,
        release_ids=[str(r) for r in req.json_list("release_ids")],
        reviews=[
            {
                "reviewer": r.reviewer.username,
                "department": r.department,
                "decision": r.decision,
                "reason": r.reason,
                "at": r.created_at.isoformat(),
            }
            for r in req.reviews
        ],
        decision_reason=req.decision_reason,
        created_at=req.created_at,
        manifest=json.loads(req.manifest) if req.manifest else None,
    )


def _move(session: Session, req: ExportRequest, target: ExportStatus, actor: ExportActor | None) -> None:
    """The one place a request changes status (through the transition table)."""
    check_can_transition(req.status, target, actor)
    req.status = target.value
    if target in (ExportStatus.APPROVED, ExportStatus.REJECTED):
        req.decided_at = utcnow()
    session.flush()


def _sources(catalog: Catalog, dataset_ids: Sequence[str]) -> list[SourceDataset]:
    out = []
    for ds_id in dataset_ids:
        ds = catalog.dataset(ds_id)
        ident = tuple(c.name for c in ds.columns if c.role == ColumnRole.IDENTIFIER)
        out.append(
            SourceDataset(
                id=ds.id,
                tier=ds.tier,
                columns=tuple(ds.column_names),
                privacy_unit=ds.privacy_unit,
                identifier_columns=ident,
                providers=tuple(ds.provider),
            )
        )
    return out


def _thresholds(catalog: Catalog, dataset_ids: Sequence[str]) -> ExportThresholds:
    """The strictest of the sources' thresholds (platform defaults when there is none)."""
    if not dataset_ids:
        return catalog.platform.defaults.export
    items = [catalog.export_thresholds(d) for d in dataset_ids]
    return ExportThresholds(
        min_cell_count=max(t.min_cell_count for t in items),
        dominance_top1=min(t.dominance_top1 for t in items),
        dominance_top2=min(t.dominance_top2 for t in items),
        p_percent=max(t.p_percent for t in items),
        dp_min_noisy_count=max(t.dp_min_noisy_count for t in items),
        max_file_bytes=min(t.max_file_bytes for t in items),
        reviewers=max(t.reviewers or 0 for t in items),
    )


def _project_releases(session: Session, project: Project) -> list[tuple[Release, DpRelease]]:
    rows = session.scalars(
        select(Release)
        .where(Release.project_id == project.id, Release.status == ReleaseStatus.COMMITTED.value)
        .order_by(Release.created_at)
    ).all()
    out = []
    for rel in rows:
        data = rel.result_data() or {}
        dp = DpRelease.from_mapping(
            {**data, "release_id": rel.id, "dataset": rel.dataset, "epsilon": rel.epsilon_charged}
        )
        out.append((rel, dp))
    return out


def _granted(session: Session, project: Project) -> list[str]:
    return sorted({g.dataset for g in list_grants(session, project=project.name, active_only=True)})


def _lineage(
    session: Session,
    catalog: Catalog,
    project: Project,
    datasets: Sequence[str] | None,
    release_sets: list[str],
) -> list[str]:
    granted = set(_granted(session, project))
    if datasets:
        for ds_id in datasets:
            ds = catalog.dataset(ds_id)
            if ds.tier != Tier.OPEN and ds_id not in granted:
                raise AccessDenied(
                    f"Project {project.name!r} holds no grant for {ds_id!r}; no export can derive from it.",
                    hint="Name the datasets the file was made from (--dataset), as granted to the project.",
                )
        return sorted(set(datasets))
    return sorted(granted | set(release_sets))


def _departments(catalog: Catalog, sources: Sequence[SourceDataset], tier: Tier) -> list[str]:
    relevant = [s for s in sources if s.tier != Tier.OPEN] if tier != Tier.OPEN else list(sources)
    return sorted({p for s in relevant for p in s.providers})


def _actor(session: Session, user: User, req: ExportRequest) -> ExportActor | None:
    if user.id == req.requester_id:
        return ExportActor.REQUESTER
    if user.role == UserRole.STEWARD.value and _steward_eligible(user, req):
        return ExportActor.REVIEWER
    if user.role == UserRole.ADMIN.value:
        return ExportActor.ADMIN
    return None


def _steward_eligible(user: User, req: ExportRequest) -> bool:
    departments = req.json_list("departments")
    return not departments or user.department in departments


def _can_read(session: Session, user: User, req: ExportRequest) -> bool:
    if user.role in (UserRole.ADMIN.value, UserRole.AUDITOR.value) or user.id == req.requester_id:
        return True
    if user.role == UserRole.STEWARD.value:
        return _steward_eligible(user, req)
    return membership(session, req.project, user) is not None


def _readable_request(session: Session, user: str, export_id: int) -> ExportRequest:
    """The request, if ``user`` may see it (``_can_read``); else AccessDenied."""
    viewer = _user(session, user)
    req = _request(session, export_id)
    if not _can_read(session, viewer, req):
        raise AccessDenied(
            f"{viewer.username!r} may not see export request {export_id}.",
            hint="Requesters, members of its project, its reviewers, admins and auditors can see it.",
        )
    return req


def _audit_refusal(
    ctx: ExportContext,
    user: str,
    project: str,
    filename: str,
    data: bytes,
    err: SandboxError,
    *,
    dry_run: bool = False,
) -> None:
    payload: dict[str, Any] = {
        "project": project,
        "sha256": sha256_hex(data),
        "size": len(data),
        "extension": PurePath(filename).suffix.lower()[:16],
        "code": err.code,
    }
    if dry_run:
        payload["dry_run"] = True
    with session_scope(ctx.control_engine, immediate=True) as session:
        audit_append(session, "export.refused", user, payload)


# ---------------------------------------------------------------- checks in context


@dataclass(frozen=True)
class Assessment:
    """The automatic checks of one file in its project's context, and what they decide.

    Shared by :func:`submit` (which then stores and routes the file) and :func:`dry_run`
    (which stores nothing).
    """

    filename: str
    project: str
    sha256: str
    size: int
    lineage: list[str]
    tier: Tier
    departments: list[str]
    reviewers_required: int
    release_ids: list[str]
    checks: list[CheckResult]

    @property
    def verdict(self) -> Verdict:
        return worst(r.verdict for r in self.checks)

    @property
    def outcome(self) -> ExportStatus:
        """Where a submission of this file would go: rejected, approved (automatically) or under review."""
        if self.verdict == Verdict.FAIL:
            return ExportStatus.REJECTED
        if self.reviewers_required == 0:
            return ExportStatus.APPROVED
        return ExportStatus.UNDER_REVIEW

    def to_dict(self) -> dict[str, Any]:
        """``{"checks": [{"name", "verdict", "reason"}], "verdict", ...}`` (the dry run's answer)."""
        return {
            "checks": [c.to_dict() for c in self.checks],
            "verdict": self.verdict.value,
            "outcome": self.outcome.value,
            "filename": self.filename,
            "project": self.project,
            "sha256": self.sha256,
            "size": self.size,
            "tier": self.tier.value,
            "datasets": self.lineage,
            "departments": self.departments,
            "reviewers_required": self.reviewers_required,
            "release_ids": self.release_ids,
        }


def _check_context(
    ctx: ExportContext, *, user: str, project: str, datasets: Sequence[str] | None
) -> tuple[CheckContext, list[str]]:
    """Who may ask (a data user who is a member), and what the checks know: lineage, releases, thresholds."""
    with session_scope(ctx.control_engine) as session:
        requester = _user(session, user)
        proj = _project(session, project)
        if requester.role not in REQUEST_ROLES:
            raise AccessDenied(
                f"Role {requester.role!r} cannot request exports.",
                hint="Exports are requested by data users (researcher, bank, enterprise) of a project.",
            )
        if membership(session, proj, requester) is None:
            raise NotProjectMember(f"{requester.username!r} is not a member of project {proj.name!r}.")
        releases = [dp for _, dp in _project_releases(session, proj)]
        lineage = _lineage(session, ctx.catalog, proj, datasets, sorted({r.dataset for r in releases}))
    check_ctx = CheckContext(
        project=project,
        sources=_sources(ctx.catalog, lineage),
        releases=releases,
        thresholds=_thresholds(ctx.catalog, lineage),
    )
    return check_ctx, lineage


def _assess(
    ctx: ExportContext, check_ctx: CheckContext, lineage: list[str], name: str, data: bytes
) -> Assessment:
    """Run the checks (raises ``ExportRejected`` for an unusable file) and work out the routing."""
    assessed = assess_file(data, name, check_ctx)
    results = assessed.results
    tier = check_ctx.tier  # no known lineage counts as restricted
    thresholds = check_ctx.thresholds
    required = max(thresholds.reviewers or 0, ctx.catalog.platform.tiers[tier].export_reviewers)
    if worst(r.verdict for r in results) != Verdict.PASS:
        required = max(required, 1)  # warnings always go to a person
    return Assessment(
        filename=name,
        project=check_ctx.project,
        sha256=sha256_hex(data),
        size=len(data),
        lineage=lineage,
        tier=tier,
        departments=_departments(ctx.catalog, check_ctx.sources, tier),
        reviewers_required=required,
        release_ids=assessed.release_ids,
        checks=results,
    )


def _filename(filename: str) -> str:
    return PurePath(filename).name or "export"


def dry_run(
    ctx: ExportContext,
    *,
    user: str,
    project: str,
    filename: str,
    data: bytes,
    datasets: Sequence[str] | None = None,
) -> Assessment:
    """Run the checks :func:`submit` would run, with the same context, and store no file.

    Nothing goes to the quarantine or the export table. The audit log gets one
    ``export.dry_run`` entry (hash, size, extension, verdicts and outcome: never the contents),
    so repeated probing of the gate is visible to supervisors; an unusable file raises the same
    ``ExportRejected`` as at submission and is audited as ``export.refused`` with
    ``dry_run: true``. The same people may ask.
    """
    name = _filename(filename)
    check_ctx, lineage = _check_context(ctx, user=user, project=project, datasets=datasets)
    try:
        found = _assess(ctx, check_ctx, lineage, name, data)
    except ExportRejected as err:
        _audit_refusal(ctx, user, project, name, data, err, dry_run=True)
        raise
    with session_scope(ctx.control_engine, immediate=True) as session:
        audit_append(
            session,
            "export.dry_run",
            user,
            {
                "project": project,
                "sha256": found.sha256,
                "size": found.size,
                "extension": PurePath(name).suffix.lower()[:16],
                "datasets": lineage,
                "verdict": found.verdict.value,
                "outcome": found.outcome.value,
                "verdicts": {r.name: r.verdict.value for r in found.checks},
            },
        )
    return found


# ---------------------------------------------------------------- submit


def submit(
    ctx: ExportContext,
    *,
    user: str,
    project: str,
    purpose: str,
    filename: str,
    data: bytes,
    datasets: Sequence[str] | None = None,
) -> ExportRecord:
    """Quarantine a file, run the checks, and route it (rejected / auto-approved / under review)."""
    if not purpose.strip():
        raise ExportRejected(
            "An export request needs a purpose.", hint="Say what the file is for (--purpose TEXT)."
        )
    name = _filename(filename)
    check_ctx, lineage = _check_context(ctx, user=user, project=project, datasets=datasets)
    try:
        found = _assess(ctx, check_ctx, lineage, name, data)
    except ExportRejected as err:
        _audit_refusal(ctx, user, project, name, data, err)
        raise
    results = found.checks
    digest = ctx.quarantine.put(data)
    with session_scope(ctx.control_engine, immediate=True) as session:
        requester = _user(session, user)
        proj = _project(session, project)
        req = ExportRequest(
            project_id=proj.id,
            requester_id=requester.id,
            purpose=purpose.strip(),
            filename=name[:255],
            sha256=digest,
            size=len(data),
            status=ExportStatus.SUBMITTED.value,
            tier=found.tier.value,
            datasets=json.dumps(lineage),
            departments=json.dumps(found.departments),
            reviewers_required=found.reviewers_required,
            checks=json.dumps([r.to_dict() for r in results], ensure_ascii=False),
            release_ids=json.dumps(found.release_ids),
        )
        session.add(req)
        session.flush()
        audit_append(
            session,
            "export.submitted",
            requester.username,
            {
                "export_id": req.id,
                "project": proj.name,
                "sha256": digest,
                "size": len(data),
                "datasets": lineage,
            },
        )
        if found.outcome == ExportStatus.REJECTED:
            failed = [r.name for r in results if r.verdict == Verdict.FAIL]
            req.decision_reason = "automatic checks failed: " + ", ".join(failed)
            _move(session, req, ExportStatus.REJECTED, ExportActor.SYSTEM)
        else:
            _move(session, req, ExportStatus.CHECKED, ExportActor.SYSTEM)
            if found.outcome == ExportStatus.APPROVED:
                req.decision_reason = "auto-approved: open data only and every check passed (SR-26)"
                _move(session, req, ExportStatus.APPROVED, ExportActor.SYSTEM)
            else:
                _move(session, req, ExportStatus.UNDER_REVIEW, ExportActor.SYSTEM)
        audit_append(
            session,
            "export.checked",
            None,
            {
                "export_id": req.id,
                "status": req.status,
                "verdicts": {r.name: r.verdict.value for r in results},
            },
        )
        return _record(req)


# ---------------------------------------------------------------- show / list


def show(ctx: ExportContext, *, export_id: int, user: str) -> ExportRecord:
    with session_scope(ctx.control_engine) as session:
        req = _readable_request(session, user, export_id)
        return _record(req)


def list_exports(ctx: ExportContext, *, user: str, status: str | None = None) -> list[ExportRecord]:
    """The requests ``user`` may see, newest first (optionally one status)."""
    with session_scope(ctx.control_engine) as session:
        viewer = _user(session, user)
        query = select(ExportRequest).order_by(ExportRequest.id.desc())
        if status is not None:
            query = query.where(ExportRequest.status == ExportStatus(status).value)
        return [_record(r) for r in session.scalars(query) if _can_read(session, viewer, r)]


# ---------------------------------------------------------------- review


def review(ctx: ExportContext, *, export_id: int, reviewer: str, approve: bool, reason: str) -> ExportRecord:
    """Record one steward's decision; approve once every department and enough stewards agree."""
    if not reason.strip():
        raise ExportRejected(
            "A review needs a reason.", hint="Say why (--reason TEXT); it is logged (SR-26)."
        )
    target = ExportStatus.APPROVED if approve else ExportStatus.REJECTED
    with session_scope(ctx.control_engine, immediate=True) as session:
        steward = _user(session, reviewer)
        req = _request(session, export_id)
        if steward.role == UserRole.AUDITOR.value:
            raise AccessDenied("Auditors read export requests; they do not review them.")
        actor = _actor(session, steward, req)
        if actor == ExportActor.ADMIN:
            actor = None  # admins withdraw; stewards decide
        check_can_transition(req.status, target, actor)
        if any(r.reviewer_id == steward.id for r in req.reviews):
            raise InvalidTransition(
                f"{steward.username!r} already reviewed export request {export_id}.",
                hint="Another steward must give the remaining approvals.",
            )
        session.add(
            ExportReview(
                request_id=req.id,
                reviewer_id=steward.id,
                department=steward.department,
                decision="approve" if approve else "reject",
                reason=reason.strip(),
            )
        )
        session.flush()
        session.refresh(req)
        if not approve:
            req.decision_reason = reason.strip()
            _move(session, req, ExportStatus.REJECTED, ExportActor.REVIEWER)
        elif _approvals_complete(req):
            req.decision_reason = reason.strip()
            _move(session, req, ExportStatus.APPROVED, ExportActor.REVIEWER)
        audit_append(
            session,
            "export.decided",
            steward.username,
            {
                "export_id": req.id,
                "decision": "approve" if approve else "reject",
                "department": steward.department,
                "status": req.status,
                "reason": reason.strip(),
            },
        )
        return _record(req)


def _approvals_complete(req: ExportRequest) -> bool:
    approvals = [r for r in req.reviews if r.decision == "approve"]
    stewards = {r.reviewer_id for r in approvals}
    covered = {r.department for r in approvals}
    departments = set(req.json_list("departments"))
    return len(stewards) >= req.reviewers_required and departments <= covered


# ---------------------------------------------------------------- withdraw / download


def withdraw(ctx: ExportContext, *, export_id: int, user: str) -> ExportRecord:
    with session_scope(ctx.control_engine, immediate=True) as session:
        actor_user = _user(session, user)
        req = _request(session, export_id)
        actor = _actor(session, actor_user, req)
        _move(session, req, ExportStatus.WITHDRAWN, actor)
        audit_append(session, "export.withdrawn", actor_user.username, {"export_id": req.id})
        return _record(req)


@dataclass(frozen=True)
class Download:
    record: ExportRecord
    data: bytes
    manifest: dict[str, Any]


def download(ctx: ExportContext, *, export_id: int, user: str) -> Download:
    """Hand out an approved (or already released) file with its manifest, after re-checking its hash."""
    with session_scope(ctx.control_engine, immediate=True) as session:
        member = _user(session, user)
        req = _request(session, export_id)
        if member.id != req.requester_id and membership(session, req.project, member) is None:
            raise AccessDenied(
                f"Export request {export_id} goes only to members of project {req.project.name!r} (SR-17).",
                hint="Ask a project member to download it.",
            )
        if req.status != ExportStatus.RELEASED.value:
            actor = ExportActor.REQUESTER if member.id == req.requester_id else ExportActor.SYSTEM
            if req.status != ExportStatus.APPROVED.value:
                check_can_transition(req.status, ExportStatus.RELEASED, actor)  # raises with the reason
            data = ctx.quarantine.read(req.sha256)
            now = utcnow()
            req.manifest = json.dumps(
                _manifest(session, ctx.catalog, req, now), ensure_ascii=False, sort_keys=True
            )
            req.released_at = now
            _move(session, req, ExportStatus.RELEASED, actor)
            audit_append(
                session,
                "export.released",
                member.username,
                {"export_id": req.id, "sha256": req.sha256, "release_ids": req.json_list("release_ids")},
            )
        else:
            data = ctx.quarantine.read(req.sha256)
            audit_append(
                session, "export.downloaded", member.username, {"export_id": req.id, "sha256": req.sha256}
            )
        record = _record(req)
        assert record.manifest is not None
        return Download(record=record, data=data, manifest=record.manifest)


def manifest(ctx: ExportContext, *, export_id: int, user: str) -> dict[str, Any]:
    """The manifest (sources, releases, reviewers, citation) of a released request.

    Whoever may see the request may read it; it exists from the first download on.
    """
    with session_scope(ctx.control_engine) as session:
        req = _readable_request(session, user, export_id)
        if req.manifest is None:
            if req.status == ExportStatus.APPROVED.value:
                hint = "It is approved: its first download releases it and writes the manifest."
            else:
                hint = "Only released files have a manifest; see the request's status and decision."
            raise NotFound(f"Export request {export_id} is {req.status}; it has no manifest yet.", hint=hint)
        loaded: dict[str, Any] = json.loads(req.manifest)
        return loaded


def _manifest(session: Session, catalog: Catalog, req: ExportRequest, now: datetime) -> dict[str, Any]:
    release_ids = [str(r) for r in req.json_list("release_ids")]
    rels = [session.get(Release, rid) for rid in release_ids]
    refs = [
        ReleaseRef(r.id, r.dataset, Decimal(r.epsilon_charged), r.created_at) for r in rels if r is not None
    ]
    sources = []
    synthetic = True
    for ds_id in req.json_list("datasets"):
        ds = catalog.dataset(str(ds_id))
        synthetic = synthetic and ds.synthetic
        sources.append(SourceRef(ds.id, ds.name.zh, ds.name.en, ds.tier, tuple(ds.provider)))
    reviews = [ReviewRef(r.reviewer.username, r.department, r.decision, r.created_at) for r in req.reviews]
    return build_manifest(
        platform=catalog.platform,
        export_id=req.id,
        filename=req.filename,
        sha256=req.sha256,
        size=req.size,
        project=req.project.name,
        requester=req.requester.username,
        purpose=req.purpose,
        sources=sources,
        releases=refs,
        checks=req.json_list("checks"),
        reviews=reviews,
        released_at=now,
        synthetic=synthetic,
    )


@contextmanager
def export_context(settings: Settings | None = None) -> Iterator[ExportContext]:
    ctx = ExportContext.from_settings(settings)
    try:
        yield ctx
    finally:
        ctx.close()
