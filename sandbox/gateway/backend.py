"""The gateway's adapter onto the services layer: domain objects in, wire models out.

Routes stay thin and HTTP-only; everything they need from the sandbox goes through
these synchronous functions (run in the threadpool by the routes). Domain errors
pass through unchanged and are rendered by the one handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.access.rules import check_account_active
from sandbox.control.db import session_scope
from sandbox.errors import AccessDenied, AccountInactive
from sandbox.gateway import models as wire


@dataclass(frozen=True)
class ProjectRef:
    name: str
    title: str
    role: str


@dataclass(frozen=True)
class Account:
    """The caller's sandbox account, read once per request (never cached across requests)."""

    name: str
    role: str
    status: str
    organisation: str | None
    projects: tuple[ProjectRef, ...]

    def project_names(self) -> list[str]:
        return [p.name for p in self.projects]


@dataclass(frozen=True)
class Upload:
    filename: str
    content: bytes
    content_type: str


def _control(ctx: Any) -> Any:
    return ctx.control_engine


def active_account(ctx: Any, username: str) -> Account:
    """The registered, approved account of a hub user; raises AccessDenied / AccountInactive."""
    with session_scope(_control(ctx)) as session:
        user = registry.find_user(session, username)
        if user is None:
            raise AccessDenied(
                f"{username!r} has no account in the data sandbox.",
                hint="Ask the platform operator to register you (signing in to the hub is not enough).",
            )
        try:
            check_account_active(user)
        except AccountInactive:
            raise AccountInactive(f"Your sandbox account is {user.status}.") from None
        projects = []
        for project in registry.user_projects(session, username):
            member = registry.membership(session, project, user)
            projects.append(
                ProjectRef(name=project.name, title=project.title, role=member.role if member else "member")
            )
        return Account(
            name=user.username,
            role=user.role,
            status=user.status,
            organisation=user.organisation,
            projects=tuple(projects),
        )


def choose_project(account: Account, project: str | None) -> str:
    """The named project, or the caller's only project; membership itself is checked by the services."""
    if project:
        return project
    names = account.project_names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise InvalidRequest(
            "You are not a member of any project.",
            hint="DP queries are charged to a project; ask a project lead to add you.",
        )
    raise InvalidRequest(
        "Name the project to charge: you belong to " + ", ".join(repr(n) for n in names) + ".",
        hint="Pass project=... (or set SANDBOX_PROJECT in the notebook).",
    )


# --------------------------------------------------------------------------- catalogue


def catalog(ctx: Any) -> wire.CatalogPublic:
    cat = ctx.catalog
    return wire.CatalogPublic(
        platform=cat.platform.name.zh,
        datasets=[wire.catalog_entry(cat.platform, ds) for ds in cat.datasets.values()],
    )


def dataset(ctx: Any, dataset_id: str) -> wire.DatasetPublic:
    cat = ctx.catalog
    ds = cat.dataset(dataset_id)  # UnknownDataset
    return wire.dataset_public(cat.platform, ds, cat.budgets(dataset_id))


# --------------------------------------------------------------------------- DP path (services)


def run_query(ctx: Any, account: Account, body: wire.QueryRequest) -> wire.Release:
    raise NotImplementedError


def preview(ctx: Any, account: Account, body: wire.QueryRequest) -> wire.Preview:
    raise NotImplementedError


def budgets(ctx: Any, account: Account, project: str | None) -> wire.Budgets:
    raise NotImplementedError


def open_rows(ctx: Any, account: Account, dataset_id: str, offset: int, limit: int) -> wire.RowsPage:
    raise NotImplementedError


def submit_export(
    ctx: Any,
    account: Account,
    upload: Upload,
    *,
    purpose: str,
    description: str,
    project: str | None,
    release_ids: list[str],
) -> wire.ExportPublic:
    raise NotImplementedError


def check_export(
    ctx: Any, account: Account, upload: Upload, *, project: str | None, release_ids: list[str]
) -> wire.ExportChecks:
    raise NotImplementedError


def get_export(ctx: Any, account: Account, export_id: str) -> wire.ExportPublic:
    raise NotImplementedError
