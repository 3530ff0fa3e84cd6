"""The demo accounts, projects and grants seeded by ``sandbox init --demo``.

Idempotent: existing users keep their password and attributes, existing members
stay, and a grant is added only if the project never had one for that dataset (a
revoked demo grant stays revoked). Nothing changed means no audit entries.
Passwords come from ``SANDBOX_DEMO_PASSWORD`` when set, else are generated and
returned once (only for users created now); the DB stores argon2id hashes.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.control.models import UserRole

DEMO_PASSWORD_ENV = "SANDBOX_DEMO_PASSWORD"  # noqa: S105 - the name of the variable
DEMO_SOURCE = "demo seed"


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: UserRole
    organisation: str
    department: str | None = None  # provider department id (platform.yaml), stewards only


@dataclass(frozen=True)
class DemoProject:
    name: str
    title: str
    lead: str
    members: tuple[str, ...]
    datasets: tuple[str, ...]


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("admin", UserRole.ADMIN, "Platform operator (市大数据中心)"),
    DemoUser("alice", UserRole.RESEARCHER, "University joint innovation lab"),
    DemoUser("bob", UserRole.BANK, "BANK_A"),
    DemoUser("frank", UserRole.RESEARCHER, "Transport research institute"),
    DemoUser("carol", UserRole.STEWARD, "Tax bureau", department="tax_bureau"),
    DemoUser("dave", UserRole.STEWARD, "Health commission", department="health_commission"),
    DemoUser("erin", UserRole.AUDITOR, "Supervisor (市政府办公厅)"),
    # The expert committee (专家委员会, SR-37): three members, so that one can raise a matter and
    # the other two still make the quorum (sandbox.governance.committee_rules.QUORUM = 2).
    DemoUser("kai", UserRole.EXPERT, "Expert committee: university (data law)"),
    DemoUser("lin", UserRole.EXPERT, "Expert committee: research institute (privacy engineering)"),
    DemoUser("mei", UserRole.EXPERT, "Expert committee: enterprise (information security)"),
)

DEMO_PROJECTS: tuple[DemoProject, ...] = (
    DemoProject(
        "fin-lab",
        "Inclusive finance joint lab (普惠金融联合创新实验室)",
        lead="alice",
        members=("bob",),
        datasets=("enterprise_registry", "enterprise_tax", "social_insurance", "penalties", "sme_loans"),
    ),
    DemoProject(
        "mobility-lab",
        "Urban mobility joint lab (交通出行联合创新实验室)",
        lead="frank",
        members=(),
        datasets=("transit_stations", "transit_trips", "taxi_trips", "road_accidents"),
    ),
)


@dataclass
class SeedReport:
    created: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)  # users created now -> their password
    password_from_env: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created)


def _department(catalog: Any, wanted: str) -> str:
    """Check the demo department id against platform.yaml (names are configuration)."""
    if catalog is None:
        return wanted
    departments = catalog.platform.departments
    if wanted in departments:
        return wanted
    raise InvalidRequest(
        f"platform.yaml has no provider department {wanted!r} for the demo steward.",
        hint=f"Add {wanted!r} under departments in platform.yaml.",
    )


def seed_demo(session: Session, catalog: Any | None = None, *, password: str | None = None) -> SeedReport:
    """Create the demo users, projects, members and grants that are missing.

    ``catalog`` (``sandbox.policy.loader.Catalog``) validates department and dataset
    ids when given. Run inside ``session_scope(engine, immediate=True)``.
    """
    report = SeedReport()
    password = password if password is not None else os.environ.get(DEMO_PASSWORD_ENV) or None
    report.password_from_env = password is not None
    for spec in DEMO_USERS:
        if registry.find_user(session, spec.username) is not None:
            continue
        secret = password or secrets.token_urlsafe(12)
        department = _department(catalog, spec.department) if spec.department else None
        organisation = spec.organisation
        if department and catalog is not None:
            organisation = catalog.platform.departments[department].name.zh
        registry.create_user(
            session,
            spec.username,
            spec.role,
            password=secret,
            organisation=organisation,
            department=department,
            actor=None,
        )
        report.created.append(f"user {spec.username} ({spec.role.value})")
        report.passwords[spec.username] = secret
    for proj in DEMO_PROJECTS:
        if registry.find_project(session, proj.name) is None:
            registry.create_project(session, proj.name, title=proj.title, lead=proj.lead, actor=None)
            report.created.append(f"project {proj.name} (lead {proj.lead})")
        for member in proj.members:
            if registry.add_member(session, proj.name, member, actor=None):
                report.created.append(f"member {member} of {proj.name}")
        project = registry.get_project(session, proj.name)
        for dataset in proj.datasets:
            if registry.grants_for(session, project, dataset):
                continue
            registry.grant_dataset(
                session, proj.name, dataset, actor=None, source=DEMO_SOURCE, catalog=catalog
            )
            report.created.append(f"grant {dataset} to {proj.name}")
    return report


__all__ = ["DEMO_PASSWORD_ENV", "DEMO_PROJECTS", "DEMO_USERS", "SeedReport", "seed_demo"]
