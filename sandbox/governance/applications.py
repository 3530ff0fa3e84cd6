"""Access applications (SR-11, SR-12, SR-17, SR-23); the agreements they lead to are in
``sandbox.governance.agreements``.

Flow::

    published_conditions(catalog)            # SR-11: what each conditional/restricted dataset asks
    submit(ctx, applicant=lead, project=..., datasets=[...], scenario=..., purpose=..., ...)
    decide(ctx, steward=..., application_id=..., approve=True, reason=...)   # per dataset
      └─ when every dataset is decided and one is approved: a versioned agreement is signed
         and the project gets grants that expire with it (source "agreement <id>")

Rules
    * Only the project's lead applies, and only with a data-user role (REQUIREMENTS §4
      "Apply for 有条件 access"); the 安全承诺书 must be signed.
    * Open datasets need no application. A dataset already covered by another agreement in
      force for the project is refused: renew that agreement instead.
    * A steward decides only the datasets of their own department ("Approve application and
      sign agreement": ✔ own data); the operator only countersigns (◐), so it cannot decide.
      Nobody from the applying project decides. Every decision has a reason, and the time
      from submission to decision is recorded (SR-12).
    * A renewal (``renews=<agreement id>``) keeps the purpose and scenario word for word: a
      change of purpose needs a new application (SR-23). A renewal is refused while the
      project's usage report is overdue (SR-29).
    * High-risk cases go to the expert committee (SR-12, SR-37): every restricted (非开放)
      dataset of an application is referred on submission, and no steward approves a dataset
      referred to the committee until it gave a favourable opinion
      (``sandbox.governance.committee``). Refusing needs no opinion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.audit.store import append
from sandbox.control.models import Project, UserRole
from sandbox.errors import AccessDenied, InvalidTransition, NotFound
from sandbox.governance import committee
from sandbox.governance.agreements import (
    AgreementRecord,
    agreement_record,
    application_items,
    can_see_application,
    get_agreement_row,
    in_force_agreements,
    is_member,
    normalise,
    sign,
    username_of,
)
from sandbox.governance.common import (
    GovContext,
    account,
    departments_of,
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
    Application,
    ApplicationDataset,
    ApplicationStatus,
    ItemStatus,
    dump,
    load,
)
from sandbox.governance.permissions import Action, Resource, check_can
from sandbox.policy.loader import Catalog

MAX_DURATION_DAYS = 1095  # [D] three years at most per agreement


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class DatasetConditions:
    """SR-11: the published conditions of one conditional or restricted dataset."""

    dataset: str
    name: str
    tier: str
    source_tier: str
    providers: list[str]
    conditions: str
    budgets: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ItemRecord:
    dataset: str
    departments: list[str]
    columns: list[str] | None
    status: str
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    decisions: dict[str, dict[str, Any]]  # per provider department: steward, approve, reason, at
    committee: dict[str, Any] | None = None  # the expert committee's referral (committee.referral_status)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "decided_at": iso(self.decided_at)}


@dataclass(frozen=True)
class ApplicationRecord:
    id: int
    project: str
    applicant: str
    organisation: str | None
    scenario: str
    purpose: str
    duration_days: int
    security_measures: str
    members: list[str]
    status: str
    created_at: datetime
    decided_at: datetime | None
    renews: int | None
    items: list[ItemRecord]
    agreement: AgreementRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "applicant": self.applicant,
            "organisation": self.organisation,
            "scenario": self.scenario,
            "purpose": self.purpose,
            "duration_days": self.duration_days,
            "security_measures": self.security_measures,
            "members": self.members,
            "status": self.status,
            "created_at": iso(self.created_at),
            "decided_at": iso(self.decided_at),
            "renews": self.renews,
            "datasets": [i.to_dict() for i in self.items],
            "agreement": self.agreement.to_dict() if self.agreement else None,
        }


# --------------------------------------------------------------------------- helpers


def _record(session: Session, app: Application, now: datetime | None = None) -> ApplicationRecord:
    project = session.get(Project, app.project_id)
    assert project is not None
    agreement = session.scalars(
        select(Agreement).where(Agreement.application_id == app.id).order_by(Agreement.id.desc()).limit(1)
    ).first()
    return ApplicationRecord(
        id=app.id,
        project=project.name,
        applicant=username_of(session, app.applicant_id) or "?",
        organisation=app.organisation,
        scenario=app.scenario,
        purpose=app.purpose,
        duration_days=app.duration_days,
        security_measures=app.security_measures,
        members=[str(m) for m in load(app.members)],
        status=app.status,
        created_at=app.created_at,
        decided_at=app.decided_at,
        renews=app.renews_agreement_id,
        items=[
            ItemRecord(
                dataset=item.dataset,
                departments=[str(d) for d in load(item.departments)],
                columns=load(item.columns),
                status=item.status,
                decided_by=username_of(session, item.decided_by),
                decided_at=item.decided_at,
                reason=item.reason,
                decisions=dict(load(item.decisions) or {}),
                committee=committee.referral_status(session, app.id, item.dataset),
            )
            for item in application_items(session, app)
        ],
        agreement=agreement_record(session, agreement, now) if agreement is not None else None,
    )


def _get_application(session: Session, application_id: int) -> Application:
    app = session.get(Application, application_id)
    if app is None:
        raise NotFound(f"No application {application_id}.", hint="`sandbox application show` lists them.")
    return app


def published_conditions(catalog: Catalog) -> list[DatasetConditions]:
    """Every dataset that needs an application, with its published conditions and budgets."""
    out = []
    for ds_id, ds in catalog.datasets.items():
        if not catalog.tier_rules(ds_id).needs_grant:
            continue
        budgets = catalog.budgets(ds_id)
        out.append(
            DatasetConditions(
                dataset=ds_id,
                name=ds.name.zh,
                tier=ds.tier.value,
                source_tier=ds.source_tier,
                providers=list(ds.provider),
                conditions=ds.conditions,
                budgets={
                    "per_query_max": str(budgets.per_query_max),
                    "per_user": str(budgets.per_user),
                    "per_project": str(budgets.per_project),
                },
            )
        )
    return out


# --------------------------------------------------------------------------- submit


def submit(
    ctx: GovContext,
    *,
    applicant: str,
    project: str,
    datasets: Sequence[str] | str,
    scenario: str,
    purpose: str,
    duration_days: int,
    security_measures: str,
    members: Sequence[str] | str = (),
    columns: Mapping[str, Sequence[str]] | None = None,
    undertaking: bool = True,
    renews: int | None = None,
    organisation_uscc: str | None = None,
    now: datetime | None = None,
) -> ApplicationRecord:
    """File an application for ``project`` (its lead only); one pending decision per dataset."""
    catalog = ctx.catalog
    now = now_or(now)
    wanted = split_list(datasets)
    if not wanted:
        raise InvalidRequest(
            "Name at least one dataset.", hint="e.g. --datasets enterprise_tax,social_insurance"
        )
    scenario = text(scenario, "scenario", maximum=200)
    purpose = text(purpose, "purpose", minimum=10)
    measures = text(security_measures, "security measures", minimum=5)
    if not 1 <= int(duration_days) <= MAX_DURATION_DAYS:
        raise InvalidRequest(
            f"The duration must be 1 to {MAX_DURATION_DAYS} days.", hint="Ask for what the project needs."
        )
    if not undertaking:
        raise InvalidRequest(
            "The security undertaking (安全承诺书) must be signed.",
            hint="Confirm the undertaking (--undertaking) to submit.",
        )
    wanted_columns = {k: split_list(v) for k, v in (columns or {}).items()}
    for ds_id in wanted:
        ds = catalog.dataset(ds_id)  # UnknownDataset
        if not catalog.tier_rules(ds_id).needs_grant:
            raise InvalidRequest(
                f"{ds_id!r} is open data (无条件开放): it needs no application.",
                hint="Read it directly (sb.rows) or leave it out of the application.",
            )
        unknown = [c for c in wanted_columns.get(ds_id, []) if c not in ds.column_names]
        if unknown:
            raise InvalidRequest(f"{ds_id!r} has no column(s) {unknown}.", hint="sb.describe() lists them.")
    extra = sorted(set(wanted_columns) - set(wanted))
    if extra:
        raise InvalidRequest(f"Columns given for datasets not applied for: {extra}.")

    with writing(ctx) as session:
        user = account(session, applicant)
        check_can(user, Action.APPLY, Resource.of(owner=user.username, label=project))
        proj = registry.get_project(session, project)
        if proj.lead_id != user.id:
            raise AccessDenied(
                f"Only the lead of project {project!r} applies for it (SR-17).",
                hint="Ask the project lead to submit the application.",
            )
        team = split_list(members)
        for name in team:
            member = registry.get_user(session, name)
            if member.role not in (UserRole.RESEARCHER, UserRole.BANK, UserRole.ENTERPRISE):
                raise InvalidRequest(
                    f"{name!r} ({member.role}) cannot be a team member: only data users are.",
                )
        previous: Agreement | None = None
        if renews is not None:
            previous = _check_renewal(session, proj, renews, scenario, purpose, now)
        in_force = [
            a for a in in_force_agreements(session, proj, now) if previous is None or a.id != previous.id
        ]
        for agreement in in_force:
            covered = sorted(set(agreement.dataset_ids()) & set(wanted))
            if covered:
                raise InvalidTransition(
                    f"Project {project!r} already holds agreement {agreement.number} v{agreement.version} "
                    f"for {covered}.",
                    hint=f"Renew it (--renews {agreement.id}) with the same purpose, or wait for it to end.",
                )
        app = Application(
            project_id=proj.id,
            applicant_id=user.id,
            organisation=user.organisation,
            organisation_uscc=organisation_uscc,
            scenario=scenario,
            purpose=purpose,
            duration_days=int(duration_days),
            security_measures=measures,
            members=dump(team),
            undertaking_signed=True,
            renews_agreement_id=previous.id if previous is not None else None,
            status=ApplicationStatus.SUBMITTED.value,
            created_at=now,
        )
        session.add(app)
        session.flush()
        for ds_id in wanted:
            session.add(
                ApplicationDataset(
                    application_id=app.id,
                    dataset=ds_id,
                    columns=dump(wanted_columns[ds_id]) if wanted_columns.get(ds_id) else None,
                    departments=dump(sorted(catalog.dataset(ds_id).provider)),
                    decisions=dump({}),
                    status=ItemStatus.PENDING.value,
                )
            )
        session.flush()
        append(
            session,
            "application.submitted",
            user.username,
            {
                "application_id": app.id,
                "project": project,
                "datasets": wanted,
                "scenario": scenario,
                "duration_days": int(duration_days),
                "members": team,
                "renews": app.renews_agreement_id,
                "departments": sorted(departments_of(catalog, wanted)),
            },
        )
        committee.open_for_application(session, catalog, app, user, wanted, now)
        return _record(session, app, now)


def _check_renewal(
    session: Session, project: Project, agreement_id: int, scenario: str, purpose: str, now: datetime
) -> Agreement:
    from sandbox.governance.usage_reports import report_overdue

    previous = get_agreement_row(session, agreement_id)
    if previous.project_id != project.id:
        raise InvalidRequest(f"Agreement {agreement_id} belongs to another project.")
    if previous.status != AgreementStatus.ACTIVE:
        raise InvalidTransition(
            f"Agreement {previous.number} v{previous.version} is {previous.status}; it cannot be renewed.",
            hint="Submit a new application.",
        )
    if normalise(previous.purpose) != normalise(purpose) or normalise(previous.scenario) != normalise(
        scenario
    ):
        raise InvalidRequest(
            "A renewal keeps the agreed scenario and purpose; a change of purpose needs a new application "
            "(SR-23).",
            hint="Submit a new application without --renews for the new purpose.",
        )
    if report_overdue(session, previous, now):
        raise InvalidTransition(
            f"The usage report of project {project.name!r} is overdue; overdue reports block renewal "
            "(SR-29).",
            hint="File a usage report (`sandbox report usage ...`) first.",
        )
    return previous


# --------------------------------------------------------------------------- decide


def decide(
    ctx: GovContext,
    *,
    steward: str,
    application_id: int,
    approve: bool,
    reason: str,
    datasets: Sequence[str] | str | None = None,
    now: datetime | None = None,
) -> ApplicationRecord:
    """Decide the pending datasets of the steward's department (or those named in ``datasets``)."""
    catalog = ctx.catalog
    now = now_or(now)
    reason = text(reason, "reason")
    named = split_list(datasets) if datasets is not None else None
    with writing(ctx) as session:
        user = account(session, steward)
        app = _get_application(session, application_id)
        project = session.get(Project, app.project_id)
        assert project is not None
        if app.status != ApplicationStatus.SUBMITTED:
            raise InvalidTransition(f"Application {application_id} is already {app.status}.")
        if user.id == app.applicant_id or is_member(session, project, user):
            raise AccessDenied(
                "Nobody from the applying project decides its application (separation of duties).",
                hint="A steward of the providing department decides.",
            )
        pending = [i for i in application_items(session, app) if i.status == ItemStatus.PENDING]
        if named is not None:
            unknown = sorted(set(named) - {i.dataset for i in pending})
            if unknown:
                raise InvalidRequest(f"Application {application_id} has no pending dataset(s) {unknown}.")
            chosen = [i for i in pending if i.dataset in named]
        else:
            chosen = [i for i in pending if _awaits(i, user.department)]
        if not chosen:
            # Let the permission matrix explain why (role, or another department's data).
            for item in pending[:1]:
                check_can(user, Action.APPROVE_APPLICATION, _item_resource(item))
            raise InvalidTransition(
                f"Application {application_id} has no dataset awaiting department {user.department!r}.",
            )
        opinions: dict[str, committee.GateResult] = {}
        for item in chosen:
            check_can(user, Action.APPROVE_APPLICATION, _item_resource(item))
            if not _awaits(item, user.department):
                raise InvalidTransition(
                    f"Department {user.department!r} already decided {item.dataset!r} of application "
                    f"{application_id}.",
                    hint="A steward of each other providing department decides next.",
                )
            if approve:  # high-risk: the committee's favourable opinion first (SR-12, SR-37)
                restricted = catalog.dataset(item.dataset).tier.value == committee.RESTRICTED
                gate = committee.check_application_gate(session, app.id, item.dataset, restricted=restricted)
                if gate is not None:
                    opinions[item.dataset] = gate
        status = ItemStatus.APPROVED if approve else ItemStatus.REFUSED
        for item in chosen:
            assert user.department is not None
            decisions = dict(load(item.decisions) or {})
            decisions[user.department] = {
                "steward": user.username,
                "approve": approve,
                "reason": reason,
                "at": now.isoformat(),
            }
            if item.dataset in opinions:
                decisions[user.department]["committee"] = opinions[item.dataset].to_dict()
            item.decisions = dump(decisions)
            item.decided_by = user.id
            item.decided_at = now
            item.reason = reason
            # Refused by one provider: refused. Approved: once every provider approved.
            if not approve:
                item.status = ItemStatus.REFUSED.value
            elif set(decisions) >= set(load(item.departments)):
                item.status = ItemStatus.APPROVED.value
        session.flush()
        items = application_items(session, app)
        complete = all(i.status != ItemStatus.PENDING for i in items)
        approved = [i for i in items if i.status == ItemStatus.APPROVED]
        if complete:
            if not approved:
                app.status = ApplicationStatus.REFUSED.value
            elif len(approved) == len(items):
                app.status = ApplicationStatus.APPROVED.value
            else:
                app.status = ApplicationStatus.PARTIALLY_APPROVED.value
            app.decided_at = now
        session.flush()
        append(
            session,
            "application.decided",
            user.username,
            {
                "application_id": app.id,
                "project": project.name,
                "datasets": [i.dataset for i in chosen],
                "decision": status.value,
                "dataset_status": {i.dataset: i.status for i in chosen},
                "reason": reason,
                "department": user.department,
                "application_status": app.status,
                # SR-12: decision time is measured.
                "hours_since_submission": round((now - app.created_at).total_seconds() / 3600, 2),
                # the committee items whose favourable opinion this approval relies on
                **({"committee_items": {d: g.item_id for d, g in opinions.items()}} if opinions else {}),
            },
        )
        if complete and approved:
            sign(session, catalog, app, project, approved, actor=user.username, now=now)
        return _record(session, app, now)


def _awaits(item: ApplicationDataset, department: str | None) -> bool:
    """Whether ``item`` still needs the decision of ``department``."""
    if item.status != ItemStatus.PENDING or not department:
        return False
    return department in load(item.departments) and department not in (load(item.decisions) or {})


def _item_resource(item: ApplicationDataset) -> Resource:
    return Resource.of(departments=load(item.departments), label=item.dataset)


def show(
    ctx: GovContext, *, user: str, application_id: int, now: datetime | None = None
) -> ApplicationRecord:
    with reading(ctx) as session:
        viewer = account(session, user)
        app = _get_application(session, application_id)
        if not can_see_application(session, viewer, app):
            raise AccessDenied(
                f"{viewer.username!r} may not see application {application_id}.",
                hint="The project's members, stewards of the datasets' departments, admins and auditors can.",
            )
        return _record(session, app, now)


def list_applications(
    ctx: GovContext, *, user: str, status: str | None = None, now: datetime | None = None
) -> list[ApplicationRecord]:
    """Applications ``user`` may see, newest first."""
    with reading(ctx) as session:
        viewer = account(session, user)
        query = select(Application).order_by(Application.id.desc())
        if status is not None:
            query = query.where(Application.status == status)
        return [
            _record(session, a, now)
            for a in session.scalars(query)
            if can_see_application(session, viewer, a)
        ]


def pending_for(ctx: GovContext, *, steward: str) -> list[ApplicationRecord]:
    """Applications with a dataset of the steward's department still to decide."""
    records = list_applications(ctx, user=steward, status=ApplicationStatus.SUBMITTED.value)
    with reading(ctx) as session:
        dept = account(session, steward).department
    return [
        r for r in records if any(i.status == ItemStatus.PENDING and dept in i.departments for i in r.items)
    ]


__all__ = [
    "MAX_DURATION_DAYS",
    "ApplicationRecord",
    "DatasetConditions",
    "ItemRecord",
    "decide",
    "list_applications",
    "pending_for",
    "published_conditions",
    "show",
    "submit",
]
