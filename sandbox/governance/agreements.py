"""Data-use agreements (数据利用协议, SR-13): signing, renewal, withdrawal, reading.

An agreement is signed when the last dataset of an application is decided and at least one
was approved (``sandbox.governance.applications.decide`` calls :func:`sign`). It records the
parties, datasets and columns, scenario and purpose, access mode, term, the DP budget per
dataset from the policy, obligations, the citation duty and the sanctions clause. Its
canonical JSON (``document``) and SHA-256 (``digest``) go into the ``agreement.signed``
audit entry, so the signed text is tamper-evident.

* Numbers are ``DUA-<application id>``; a renewal keeps the number and adds a version, and
  the previous version is superseded (its grants revoked, the new ones issued).
* Grants: one per approved dataset, ``expires_at = term_end``, ``source = "agreement <id>"``
  (:func:`grant_source`), through ``sandbox.access.registry`` (audited). The DP path refuses
  expired grants by itself, so an agreement stops queries the moment its term ends.
* A grant from outside an agreement (the demo seed, ``sandbox grant add``) for the same
  project and dataset is revoked and replaced by the agreement's.
* :func:`withdraw_agreement` revokes the grants in the same transaction: queries stop at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.audit.chain import canonical_json
from sandbox.audit.store import append
from sandbox.control.models import Grant, Project, User, UserRole
from sandbox.errors import AccessDenied, InvalidTransition, NotFound
from sandbox.governance.common import (
    GovContext,
    account,
    departments_of,
    iso,
    now_or,
    reading,
    text,
    writing,
)
from sandbox.governance.models import (
    Agreement,
    AgreementStatus,
    Application,
    ApplicationDataset,
    dump,
    load,
)
from sandbox.governance.permissions import Action, Resource, check_can
from sandbox.policy.loader import Catalog
from sandbox.policy.models import Tier

ACCESS_MODE = (
    "Sandbox only: DP queries through the query API inside the data sandbox; no raw rows; "
    "results leave only through the export gate (SR-14, SR-24)."
)
SANCTIONS_CLAUSE = (
    "Obtaining data illegally, using it beyond the agreed scenario or infringing others' rights "
    "is recorded by the platform; access is restricted or closed at once (accounts revoked, notebook "
    "servers stopped, budgets frozen, pending exports withdrawn) and the case is published on the "
    "platform's disclosure list, subject to appeal (Measures ch. 7; SR-32)."
)
REPORT_INTERVAL_DAYS = 90  # [D] a usage report at least every 90 days (SR-29)


@dataclass(frozen=True)
class AgreementRecord:
    id: int
    number: str
    version: int
    project: str
    scenario: str
    purpose: str
    datasets: list[str]
    term_start: datetime
    term_end: datetime
    status: str  # active / expired / withdrawn / superseded
    digest: str
    document: dict[str, Any]
    application_id: int
    withdrawn_reason: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.number} v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ref": self.ref,
            "number": self.number,
            "version": self.version,
            "project": self.project,
            "scenario": self.scenario,
            "purpose": self.purpose,
            "datasets": self.datasets,
            "term_start": iso(self.term_start),
            "term_end": iso(self.term_end),
            "status": self.status,
            "digest": self.digest,
            "application_id": self.application_id,
            "withdrawn_reason": self.withdrawn_reason,
            "document": self.document,
        }


def grant_source(agreement: Agreement) -> str:
    """The ``grants.source`` of grants made under ``agreement``."""
    return f"agreement {agreement.id}"


def effective_status(agreement: Agreement, now: datetime | None = None) -> str:
    if agreement.status != AgreementStatus.ACTIVE:
        return agreement.status
    return "active" if now_or(now) < agreement.term_end else "expired"


def agreement_record(session: Session, agreement: Agreement, now: datetime | None = None) -> AgreementRecord:
    project = session.get(Project, agreement.project_id)
    assert project is not None
    return AgreementRecord(
        id=agreement.id,
        number=agreement.number,
        version=agreement.version,
        project=project.name,
        scenario=agreement.scenario,
        purpose=agreement.purpose,
        datasets=agreement.dataset_ids(),
        term_start=agreement.term_start,
        term_end=agreement.term_end,
        status=effective_status(agreement, now),
        digest=agreement.digest,
        document=load(agreement.document),
        application_id=agreement.application_id,
        withdrawn_reason=agreement.withdrawn_reason,
    )


def username_of(session: Session, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    user = session.get(User, user_id)
    return user.username if user is not None else None


def application_items(session: Session, app: Application) -> list[ApplicationDataset]:
    return list(
        session.scalars(
            select(ApplicationDataset)
            .where(ApplicationDataset.application_id == app.id)
            .order_by(ApplicationDataset.id)
        )
    )


def get_agreement_row(session: Session, agreement_id: int) -> Agreement:
    agreement = session.get(Agreement, agreement_id)
    if agreement is None:
        raise NotFound(f"No agreement {agreement_id}.", hint="List agreements with `sandbox agreement list`.")
    return agreement


def is_member(session: Session, project: Project, user: User) -> bool:
    return registry.membership(session, project, user) is not None


def can_see_application(session: Session, user: User, app: Application) -> bool:
    if user.role in (UserRole.ADMIN, UserRole.AUDITOR):
        return True
    project = session.get(Project, app.project_id)
    assert project is not None
    if user.id == app.applicant_id or is_member(session, project, user):
        return True
    if user.role == UserRole.STEWARD and user.department:
        return any(user.department in load(item.departments) for item in application_items(session, app))
    return False


def normalise(value: str) -> str:
    return " ".join(value.split())


def in_force_agreements(session: Session, project: Project, now: datetime | None = None) -> list[Agreement]:
    now = now_or(now)
    rows = session.scalars(
        select(Agreement)
        .where(Agreement.project_id == project.id, Agreement.status == AgreementStatus.ACTIVE.value)
        .order_by(Agreement.id)
    )
    return [a for a in rows if a.is_in_force(now)]


# --------------------------------------------------------------------------- sign


def _document(
    session: Session,
    catalog: Catalog,
    app: Application,
    project: Project,
    items: Sequence[ApplicationDataset],
    *,
    number: str,
    version: int,
    start: datetime,
    end: datetime,
    supersedes: Agreement | None,
) -> dict[str, Any]:
    departments = sorted(departments_of(catalog, [i.dataset for i in items]))
    budgets: dict[str, dict[str, str]] = {}
    datasets: list[dict[str, Any]] = []
    for item in items:
        ds = catalog.dataset(item.dataset)
        caps = catalog.budgets(item.dataset)
        budgets[item.dataset] = {
            "per_query_max": str(caps.per_query_max),
            "per_user": str(caps.per_user),
            "per_project": str(caps.per_project),
        }
        datasets.append(
            {
                "id": ds.id,
                "name": ds.name.zh,
                "tier": ds.tier.value,
                "source_tier": ds.source_tier,
                "providers": list(ds.provider),
                "columns": load(item.columns) or "all",
                "dp_required": catalog.tier_rules(ds.id).dp_required,
                "high_risk": ds.tier is Tier.RESTRICTED,
            }
        )
    lead = username_of(session, project.lead_id)
    members = sorted(
        {m.username for m, _ in registry.members(session, project.name)} | set(load(app.members))
    )
    return {
        "title": "数据利用协议 / Data-use agreement",
        "number": number,
        "version": version,
        "platform": catalog.platform.name.zh,
        "application_id": app.id,
        "supersedes": f"{supersedes.number} v{supersedes.version}" if supersedes is not None else None,
        "parties": {
            "providers": [{"department": d, "name": catalog.department(d).name.zh} for d in departments],
            "user": {
                "project": project.name,
                "project_title": project.title,
                "lead": lead,
                "organisation": app.organisation,
                "organisation_uscc": app.organisation_uscc,
                "members": members,
            },
            "platform_operator": catalog.platform.name.zh,
        },
        "datasets": datasets,
        "scenario": app.scenario,
        "purpose": app.purpose,
        "access_mode": ACCESS_MODE,
        "term": {"start": start.isoformat(), "end": end.isoformat(), "days": app.duration_days},
        "budgets": budgets,
        "security_measures": app.security_measures,
        "obligations": [
            "Use the data only for the scenario and purpose above; a new purpose needs a new application.",
            "Keep to the security measures stated in the application and the signed undertaking.",
            "Do not attempt to re-identify any person or enterprise; do not export row-level data.",
            "Only members named in this agreement use the data; report changes of the team.",
            f"File a usage report (outputs, products, papers, benefits, incidents) at least every "
            f"{REPORT_INTERVAL_DAYS} days and at the end of the term (SR-29).",
            "Report security incidents to the platform operator without delay.",
        ],
        "reporting": {"usage_report_every_days": REPORT_INTERVAL_DAYS},
        "citation_duty": catalog.platform.citation,
        "sanctions_clause": SANCTIONS_CLAUSE,
        "signatories": {
            "applicant": username_of(session, app.applicant_id),
            "providers": sorted(
                {str(d["steward"]) for i in items for d in (load(i.decisions) or {}).values()}
            ),
        },
    }


def sign(
    session: Session,
    catalog: Catalog,
    app: Application,
    project: Project,
    items: Sequence[ApplicationDataset],
    *,
    actor: str,
    now: datetime,
) -> Agreement:
    previous = session.get(Agreement, app.renews_agreement_id) if app.renews_agreement_id else None
    wanted = {i.dataset for i in items}
    for other in in_force_agreements(session, project, now):
        covered = sorted(wanted & set(other.dataset_ids()))
        if covered and (previous is None or other.id != previous.id):
            # Two applications for the same data were pending; the first approval won.
            raise InvalidTransition(
                f"Project {project.name!r} meanwhile holds agreement {other.number} v{other.version} "
                f"for {covered}.",
                hint=f"Withdraw it, or renew it (--renews {other.id}) instead of this application.",
            )
    if previous is not None:
        number, version = previous.number, previous.version + 1
        end_agreement(session, previous, AgreementStatus.SUPERSEDED, actor=actor, reason="renewed", now=now)
    else:
        number, version = f"DUA-{app.id:06d}", 1
    start, end = now, now + timedelta(days=app.duration_days)
    document = _document(
        session,
        catalog,
        app,
        project,
        items,
        number=number,
        version=version,
        start=start,
        end=end,
        supersedes=previous,
    )
    digest = hashlib.sha256(canonical_json(document)).hexdigest()
    agreement = Agreement(
        number=number,
        version=version,
        application_id=app.id,
        project_id=project.id,
        supersedes_id=previous.id if previous is not None else None,
        scenario=app.scenario,
        purpose=app.purpose,
        datasets=dump([i.dataset for i in items]),
        document=dump(document),
        digest=digest,
        term_start=start,
        term_end=end,
        status=AgreementStatus.ACTIVE.value,
        created_at=now,
    )
    session.add(agreement)
    session.flush()
    append(
        session,
        "agreement.signed",
        actor,
        {
            "agreement_id": agreement.id,
            "number": number,
            "version": version,
            "application_id": app.id,
            "project": project.name,
            "datasets": [i.dataset for i in items],
            "term_start": start.isoformat(),
            "term_end": end.isoformat(),
            "digest": digest,
            "supersedes": previous.id if previous is not None else None,
        },
    )
    for name in load(app.members):
        registry.add_member(session, project.name, str(name), actor=actor)
    for item in items:
        _replace_other_grants(session, project, item.dataset, actor=actor, reason=f"replaced by {number}")
        registry.grant_dataset(
            session,
            project.name,
            item.dataset,
            actor=actor,
            expires_at=end,
            source=grant_source(agreement),
            catalog=catalog,
        )
    return agreement


def _replace_other_grants(
    session: Session, project: Project, dataset: str, *, actor: str, reason: str
) -> None:
    """Revoke a standing grant from outside an agreement (demo seed, CLI) before the agreement's own."""
    if any(g.is_active() for g in registry.grants_for(session, project, dataset)):
        registry.revoke_grant(session, project.name, dataset, actor=actor, reason=reason)


def end_agreement(
    session: Session, agreement: Agreement, status: AgreementStatus, *, actor: str, reason: str, now: datetime
) -> list[Grant]:
    """Withdraw or supersede ``agreement`` and revoke its active grants at once."""
    project = session.get(Project, agreement.project_id)
    assert project is not None
    agreement.status = status.value
    agreement.withdrawn_at = now
    actor_user = registry.find_user(session, actor)
    agreement.withdrawn_by = actor_user.id if actor_user is not None else None
    agreement.withdrawn_reason = reason
    session.flush()
    kind = "agreement.withdrawn" if status is AgreementStatus.WITHDRAWN else "agreement.superseded"
    append(
        session,
        kind,
        actor,
        {"agreement_id": agreement.id, "project": project.name, "reason": reason},
    )
    revoked: list[Grant] = []
    source = grant_source(agreement)
    for dataset in agreement.dataset_ids():
        active = [
            g for g in registry.grants_for(session, project, dataset) if g.is_active() and g.source == source
        ]
        if active:
            revoked.extend(
                registry.revoke_grant(session, project.name, dataset, actor=actor, reason=f"{kind}: {reason}")
            )
    return revoked


def withdraw_agreement(
    ctx: GovContext, *, actor: str, agreement_id: int, reason: str, now: datetime | None = None
) -> AgreementRecord:
    """Withdraw an agreement: its grants are revoked in the same transaction (queries stop at once).

    Allowed: a steward of a providing department, the operator (platform-wide measure), or
    the project's lead (giving the agreement up).
    """
    now = now_or(now)
    reason = text(reason, "reason")
    with writing(ctx) as session:
        user = account(session, actor)
        agreement = get_agreement_row(session, agreement_id)
        project = session.get(Project, agreement.project_id)
        assert project is not None
        if agreement.status != AgreementStatus.ACTIVE:
            raise InvalidTransition(
                f"Agreement {agreement.number} v{agreement.version} is {agreement.status}."
            )
        is_lead = project.lead_id == user.id
        if not is_lead:
            check_can(
                user,
                Action.RECORD_VIOLATION,
                Resource.of(
                    departments=departments_of(ctx.catalog, agreement.dataset_ids()),
                    label=f"agreement {agreement.number}",
                ),
            )
        end_agreement(
            session, agreement, AgreementStatus.WITHDRAWN, actor=user.username, reason=reason, now=now
        )
        return agreement_record(session, agreement, now)


# --------------------------------------------------------------------------- reading


def get_agreement(
    ctx: GovContext, *, user: str, agreement_id: int, now: datetime | None = None
) -> AgreementRecord:
    with reading(ctx) as session:
        viewer = account(session, user)
        agreement = get_agreement_row(session, agreement_id)
        app = session.get(Application, agreement.application_id)
        assert app is not None
        if not can_see_application(session, viewer, app):
            raise AccessDenied(f"{viewer.username!r} may not see agreement {agreement_id}.")
        return agreement_record(session, agreement, now)


def list_agreements(
    ctx: GovContext, *, user: str, project: str | None = None, now: datetime | None = None
) -> list[AgreementRecord]:
    with reading(ctx) as session:
        viewer = account(session, user)
        query = select(Agreement).order_by(Agreement.id.desc())
        if project is not None:
            query = query.where(Agreement.project_id == registry.get_project(session, project).id)
        out = []
        for agreement in session.scalars(query):
            app = session.get(Application, agreement.application_id)
            assert app is not None
            if can_see_application(session, viewer, app):
                out.append(agreement_record(session, agreement, now))
        return out


__all__ = [
    "ACCESS_MODE",
    "REPORT_INTERVAL_DAYS",
    "SANCTIONS_CLAUSE",
    "AgreementRecord",
    "agreement_record",
    "application_items",
    "can_see_application",
    "effective_status",
    "end_agreement",
    "get_agreement",
    "get_agreement_row",
    "grant_source",
    "in_force_agreements",
    "is_member",
    "list_agreements",
    "normalise",
    "sign",
    "username_of",
    "withdraw_agreement",
]
