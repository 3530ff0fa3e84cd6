"""Administration: ``sandbox user …``, ``sandbox project …``, ``sandbox grant …``.

Every change is an audit entry whose actor is ``--actor`` (default: the
``SANDBOX_ACTOR`` environment variable, else ``admin``). Passwords are read
from stdin (``--password-stdin``) or generated and printed once; never taken
from the command line, where they would land in shell history.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.cli.output import emit_json, fail
from sandbox.config import get_settings
from sandbox.control.db import open_engine, session_scope
from sandbox.control.models import Grant, User, UserRole, UserStatus
from sandbox.errors import SandboxError

ACTOR_ENV = "SANDBOX_ACTOR"

user_app = typer.Typer(help="Accounts: list, add, suspend, revoke, reinstate.", no_args_is_help=True)
project_app = typer.Typer(help="Projects: list, add, add-member.", no_args_is_help=True)
grant_app = typer.Typer(help="Dataset grants to projects: add, list, revoke.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ActorOpt = Annotated[
    str | None,
    typer.Option("--actor", help=f"Who makes the change (audit actor); default ${ACTOR_ENV} or 'admin'."),
]


def _actor(value: str | None) -> str:
    return value or os.environ.get(ACTOR_ENV) or "admin"


@contextmanager
def _engine() -> Iterator[Engine]:
    engine = open_engine(get_settings().control_db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _run(as_json: bool, work: Callable[[Session], Any], *, write: bool = True) -> Any:
    """Run ``work`` in one transaction; SandboxErrors print the error shape and exit 2."""
    try:
        with _engine() as engine, session_scope(engine, immediate=write) as session:
            return work(session)
    except SandboxError as err:
        _fail(err, as_json)


def _fail(err: SandboxError, as_json: bool) -> NoReturn:
    fail(err, as_json=as_json)


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console().print(table)


def _date(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d %H:%M")


# --- users -------------------------------------------------------------------------------------


def _user_dict(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "status": user.status,
        "organisation": user.organisation,
        "department": user.department,
        "uscc": user.uscc,
        "created_at": user.created_at.isoformat(),
    }


@user_app.command("list")
def user_list(
    role: Annotated[str | None, typer.Option("--role", help="Only this role.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List accounts (never their password hashes)."""
    users = _run(
        as_json,
        lambda s: [_user_dict(u) for u in registry.list_users(s, role=role, status=status)],
        write=False,
    )
    if as_json:
        emit_json(users)
        return
    columns = ["username", "role", "status", "organisation", "department"]
    _table("Users", columns, [[u[c] for c in columns] for u in users])


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name (pseudonymous id in the audit log).")],
    role: Annotated[UserRole, typer.Option("--role", help="Role of the account.")],
    organisation: Annotated[str | None, typer.Option("--organisation", help="University, bank, ...")] = None,
    department: Annotated[
        str | None, typer.Option("--department", help="Provider department id (stewards).")
    ] = None,
    uscc: Annotated[
        str | None, typer.Option("--uscc", help="Unified social credit code (enterprise users).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (else one is generated).")
    ] = False,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an approved account; prints a generated password once unless --password-stdin."""
    generated = not password_stdin
    password = secrets.token_urlsafe(12) if generated else sys.stdin.readline().rstrip("\r\n")

    def work(session: Session) -> dict[str, Any]:
        if department is not None:
            _check_department(department)
        user = registry.create_user(
            session,
            username,
            role.value,
            password=password,
            organisation=organisation,
            department=department,
            uscc=uscc,
            actor=_actor(actor),
        )
        return _user_dict(user)

    created = _run(as_json, work)
    if as_json:
        emit_json({**created, "password": password if generated else None})
        return
    typer.echo(f"created user {username} ({role.value})")
    if generated:
        typer.echo(f"password (shown only now): {password}")


def _check_department(department: str) -> None:
    try:
        from sandbox.policy.loader import load_policies
    except ModuleNotFoundError:  # pragma: no cover - policy area not installed
        return
    catalog = load_policies(get_settings().policy_dir)
    if department not in catalog.platform.departments:
        known = ", ".join(sorted(catalog.platform.departments))
        raise InvalidRequest(f"Unknown department {department!r}.", hint=f"Use one of: {known}.")


def _status_command(status: UserStatus, verb: str) -> Callable[..., None]:
    def command(
        username: Annotated[str, typer.Argument(help="Login name.")],
        reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")] = None,
        actor: ActorOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        changed = _run(
            as_json,
            lambda s: registry.set_status(s, username, status.value, actor=_actor(actor), reason=reason),
        )
        if as_json:
            emit_json({"username": username, "status": status.value, "changed": changed})
        elif changed:
            typer.echo(f"{verb} {username} (status {status.value})")
        else:
            typer.echo(f"{username} is already {status.value}; nothing changed")

    command.__doc__ = f"Set an account's status to {status.value} ({verb})."
    return command


user_app.command("suspend")(_status_command(UserStatus.SUSPENDED, "suspended"))
user_app.command("revoke")(_status_command(UserStatus.REVOKED, "revoked"))
user_app.command("reinstate")(_status_command(UserStatus.APPROVED, "reinstated"))


# --- projects ----------------------------------------------------------------------------------


@project_app.command("list")
def project_list(as_json: JsonOpt = False) -> None:
    """List projects with their lead and members."""

    def work(session: Session) -> list[dict[str, Any]]:
        out = []
        for project in registry.list_projects(session):
            members = [u.username for u, _role in registry.members(session, project.name)]
            out.append(
                {
                    "name": project.name,
                    "title": project.title,
                    "lead": project.lead.username,
                    "members": members,
                }
            )
        return out

    projects = _run(as_json, work, write=False)
    if as_json:
        emit_json(projects)
        return
    rows = [[p["name"], p["title"], p["lead"], ", ".join(p["members"])] for p in projects]
    _table("Projects", ["name", "title", "lead", "members"], rows)


@project_app.command("add")
def project_add(
    name: Annotated[str, typer.Argument(help="Project id, e.g. fin-lab.")],
    lead: Annotated[str, typer.Option("--lead", help="Username of the project lead (becomes a member).")],
    title: Annotated[str, typer.Option("--title", help="Human-readable title.")] = "",
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a project led by an existing user."""
    _run(
        as_json,
        lambda s: registry.create_project(s, name, title=title or name, lead=lead, actor=_actor(actor)),
    )
    if as_json:
        emit_json({"name": name, "lead": lead, "title": title})
    else:
        typer.echo(f"created project {name} (lead {lead})")


@project_app.command("add-member")
def project_add_member(
    project: Annotated[str, typer.Argument(help="Project id.")],
    username: Annotated[str, typer.Argument(help="User to add.")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a user to a project."""
    added = _run(as_json, lambda s: registry.add_member(s, project, username, actor=_actor(actor)))
    if as_json:
        emit_json({"project": project, "username": username, "added": added})
    elif added:
        typer.echo(f"added {username} to {project}")
    else:
        typer.echo(f"{username} is already a member of {project}; nothing changed")


# --- grants ------------------------------------------------------------------------------------


def parse_expiry(value: str) -> datetime:
    """``YYYY-MM-DD`` means valid through that day (UTC); full ISO datetimes are taken as given."""
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(days=1)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"Cannot read the date {value!r}.", hint="Use YYYY-MM-DD or an ISO 8601 datetime."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _grant_dict(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "project": grant.project.name,
        "dataset": grant.dataset,
        "granted_by": grant.granter.username if grant.granter else None,
        "granted_at": grant.granted_at.isoformat(),
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        "revoked_at": grant.revoked_at.isoformat() if grant.revoked_at else None,
        "active": grant.is_active(),
        "source": grant.source,
    }


@grant_app.command("add")
def grant_add(
    project: Annotated[str, typer.Argument(help="Project id.")],
    dataset: Annotated[str, typer.Argument(help="Dataset id (checked against the policies).")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Last valid day, YYYY-MM-DD (default: no expiry).")
    ] = None,
    source: Annotated[str, typer.Option("--source", help="Basis, e.g. 'application 12'.")] = "cli",
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Grant a dataset to a project."""

    def work(session: Session) -> dict[str, Any]:
        from sandbox.policy.loader import load_policies

        catalog = load_policies(get_settings().policy_dir)
        expires_at = parse_expiry(expires) if expires else None
        grant = registry.grant_dataset(
            session,
            project,
            dataset,
            actor=_actor(actor),
            expires_at=expires_at,
            source=source,
            catalog=catalog,
        )
        return _grant_dict(grant)

    grant = _run(as_json, work)
    if as_json:
        emit_json(grant)
    else:
        until = f" until {_date(datetime.fromisoformat(grant['expires_at']))}" if grant["expires_at"] else ""
        typer.echo(f"granted {dataset} to {project}{until} (grant {grant['id']})")


@grant_app.command("list")
def grant_list(
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    include_inactive: Annotated[bool, typer.Option("--all", help="Also revoked and expired grants.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List grants (active ones unless --all)."""
    grants = _run(
        as_json,
        lambda s: [
            _grant_dict(g) for g in registry.list_grants(s, project=project, active_only=not include_inactive)
        ],
        write=False,
    )
    if as_json:
        emit_json(grants)
        return
    columns = ["id", "project", "dataset", "expires_at", "revoked_at", "active", "source"]
    _table("Grants", columns, [[g[c] for c in columns] for g in grants])


@grant_app.command("revoke")
def grant_revoke(
    project: Annotated[str, typer.Argument(help="Project id.")],
    dataset: Annotated[str, typer.Argument(help="Dataset id.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")] = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a project's active grant of a dataset."""
    revoked = _run(
        as_json,
        lambda s: [
            g.id for g in registry.revoke_grant(s, project, dataset, actor=_actor(actor), reason=reason)
        ],
    )
    if as_json:
        emit_json({"project": project, "dataset": dataset, "revoked": revoked})
    else:
        typer.echo(f"revoked {dataset} from {project} (grant {', '.join(map(str, revoked))})")


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(project_app, name="project")
    app.add_typer(grant_app, name="grant")


__all__ = ["grant_app", "parse_expiry", "project_app", "register", "user_app"]
