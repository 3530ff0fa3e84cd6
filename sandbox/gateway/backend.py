"""The gateway's adapter onto the services layer: domain objects in, wire models out.

Routes stay thin and HTTP-only; everything they need from the sandbox goes through
these synchronous functions (run in the threadpool by the routes). Domain errors
pass through unchanged and are rendered by the one handler.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, cast

from sqlalchemy import inspect, select
from sqlalchemy.exc import DBAPIError

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.access.rules import check_account_active
from sandbox.audit.events import register_kind
from sandbox.audit.store import append as audit_append
from sandbox.catalog.deadline import statement_deadline
from sandbox.catalog.warehouse import warehouse_tables
from sandbox.control.db import session_scope
from sandbox.errors import AccessDenied, AccountInactive, NotFound, QueryTimeout
from sandbox.export import service as export_service
from sandbox.export.quarantine import QuarantineStore
from sandbox.gateway import models as wire
from sandbox.services import queries

OPEN_ROWS_EVENT = "open_data.rows_read"
T = TypeVar("T")
_CACHE_LOCK = threading.Lock()


register_kind(
    OPEN_ROWS_EVENT, 1, "A page of an open dataset read through the gateway (SR-10).", required=("dataset",)
)


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


class _SeenTokens:
    """Digests of tokens already announced in the audit log by this process (bounded)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._seen: set[str] = set()
        self._limit = limit
        self._lock = threading.Lock()

    def first_time(self, digest: str) -> bool:
        with self._lock:
            if digest in self._seen:
                return False
            if len(self._seen) >= self._limit:
                self._seen.clear()
            self._seen.add(digest)
            return True


_SEEN = _SeenTokens()


def note_login(ctx: Any, username: str, token: str) -> None:
    """Audit ``user.login`` the first time this process sees a token (a notebook session starting).

    Only the user name goes to the log; the token is reduced to a digest kept in memory.
    """
    digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
    if not _SEEN.first_time(f"{id(ctx)}:{digest}"):
        return
    with session_scope(_control(ctx), immediate=True) as session:
        audit_append(session, "user.login", username, {"user": username, "via": "gateway"})


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


def _budget_row(ctx: Any, project: str, dataset_id: str, status: Any) -> wire.BudgetRow:
    """Caps from the policy, remaining from the ledger; spent = cap - remaining (exact)."""
    caps = ctx.catalog.budgets(dataset_id)
    per_user = Decimal(caps.per_user)
    per_project = Decimal(caps.per_project)
    return wire.BudgetRow(
        project=project,
        dataset=dataset_id,
        per_query_max=Decimal(caps.per_query_max),
        per_user=per_user,
        per_project=per_project,
        user_spent=per_user - Decimal(status.user_remaining),
        user_remaining=Decimal(status.user_remaining),
        project_spent=per_project - Decimal(status.project_remaining),
        project_remaining=Decimal(status.project_remaining),
        available=Decimal(status.available),
    )


def run_query(ctx: Any, account: Account, body: wire.QueryRequest) -> wire.Release:
    project = choose_project(account, body.project)
    record = queries.run_query(ctx, user=account.name, project=project, sql=body.sql, epsilon=body.epsilon)
    return wire.Release(
        release_id=record.release_id,
        dataset=record.dataset,
        project=record.project,
        epsilon_spent=record.epsilon_spent,
        cached=record.cached,
        sql=record.sql,
        created_at=record.created_at.isoformat() if record.created_at else None,
        columns=list(record.columns),
        key_columns=list(record.key_columns),
        rows=[list(r) for r in record.rows],
        ci95=[list(r) for r in record.ci95],
        rank_error95={str(k): float(v) for k, v in dict(record.extra.get("rank_error95") or {}).items()},
        budget=_budget_row(ctx, record.project, record.dataset, record.budget),
    )


def preview(ctx: Any, account: Account, body: wire.QueryRequest) -> wire.Preview:
    project = choose_project(account, body.project)
    record = queries.preview(ctx, user=account.name, project=project, sql=body.sql, epsilon=body.epsilon)
    return wire.Preview(
        dataset=record.dataset,
        project=record.project,
        epsilon=record.epsilon,
        aggregates=[
            wire.PreviewAggregate(
                column=str(a.get("column")),
                aggregate=str(a.get("aggregate")),
                ci95=None if a.get("ci95") is None else float(a["ci95"]),
                rank_error95=None if a.get("rank_error95") is None else float(a["rank_error95"]),
            )
            for a in record.aggregates
        ],
        budget=_budget_row(ctx, record.project, record.dataset, record.budget),
    )


def budgets(ctx: Any, account: Account, project: str | None) -> wire.Budgets:
    projects = [project] if project else account.project_names()
    rows: list[wire.BudgetRow] = []
    for name in projects:
        statuses = queries.budget_status(ctx, user=account.name, project=name)
        rows.extend(_budget_row(ctx, name, ds, st) for ds, st in sorted(statuses.items()))
    return wire.Budgets(budgets=rows)


# --------------------------------------------------------------------------- open data (SR-10)


def open_rows(ctx: Any, account: Account, dataset_id: str, offset: int, limit: int) -> wire.RowsPage:
    """One page of an open dataset, in a stable order (every column); logged in the audit log."""
    cat = ctx.catalog
    ds = cat.dataset(dataset_id)  # UnknownDataset
    if not cat.tier_rules(dataset_id).rows_visible:
        raise AccessDenied(
            f"Rows of {dataset_id!r} are not available: it is a {ds.tier.value} dataset.",
            hint="Query it with differentially private aggregates: sb.query(...).",
        )
    table = _tables(ctx)[dataset_id]
    columns = [table.c[name] for name in ds.column_names]
    statement = select(*columns).order_by(*columns).offset(offset).limit(limit + 1)
    seconds = ctx.settings.query_timeout
    with ctx.warehouse_engine.connect() as conn:
        try:
            with statement_deadline(conn, seconds) as deadline:
                try:
                    fetched = [list(r) for r in conn.execute(statement).all()]
                except DBAPIError as err:
                    if deadline.expired(err):
                        raise QueryTimeout(
                            f"Reading rows {offset}..{offset + limit} of {dataset_id!r} took longer "
                            f"than the warehouse limit of {seconds:g} s and was stopped.",
                            hint="Ask for an earlier page or fewer rows (limit); deep offsets are slow.",
                        ) from None
                    raise
        except DBAPIError:
            conn.rollback()
            if inspect(conn).has_table(dataset_id):
                raise  # a real failure: internal_error with a request id
            raise NotFound(
                f"The open dataset {dataset_id!r} has not been loaded into the warehouse yet.",
                hint="Ask the platform operator to run `sandbox synth` for it.",
            ) from None
    more = len(fetched) > limit
    rows = [[_scalar(v) for v in r] for r in fetched[:limit]]
    with session_scope(_control(ctx), immediate=True) as session:
        audit_append(
            session,
            OPEN_ROWS_EVENT,
            account.name,
            {"dataset": dataset_id, "offset": offset, "rows": len(rows)},
        )
    return wire.RowsPage(
        dataset=dataset_id,
        columns=ds.column_names,
        rows=rows,
        offset=offset,
        limit=limit,
        next_offset=offset + limit if more else None,
        citation=_citation(cat, ds),
    )


def _cached(ctx: Any, name: str, make: Callable[[], T]) -> T:
    """A per-context helper object, built once (the context is shared by every request)."""
    with _CACHE_LOCK:
        value = getattr(ctx, name, None)
        if value is None:
            value = make()
            setattr(ctx, name, value)
        return cast(T, value)


def _tables(ctx: Any) -> dict[str, Any]:
    return _cached(ctx, "_gateway_tables", lambda: warehouse_tables(ctx.catalog))


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _citation(cat: Any, ds: Any) -> str:
    providers = "、".join(
        cat.platform.departments[d].name.zh if d in cat.platform.departments else d for d in ds.provider
    )
    template = str(cat.platform.citation)
    values = {
        "dataset": ds.name.zh,
        "provider": providers,
        "date": dt.date.today().isoformat(),
        "release": "-",
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return f"{providers}《{ds.name.zh}》"


# --------------------------------------------------------------------------- export gate


def _export_ctx(ctx: Any) -> Any:
    """The export service's context, built once from the services' engines and settings."""
    return _cached(
        ctx,
        "_gateway_export_ctx",
        lambda: export_service.ExportContext(
            catalog=ctx.catalog,
            control_engine=ctx.control_engine,
            quarantine=QuarantineStore(ctx.settings.quarantine_dir),
        ),
    )


def submit_export(
    ctx: Any,
    account: Account,
    upload: Upload,
    *,
    purpose: str,
    description: str,
    project: str | None,
    datasets: list[str] | None,
) -> wire.ExportPublic:
    text = purpose.strip()
    if description.strip():
        text = f"{text}\n\n{description.strip()}"
    record = export_service.submit(
        _export_ctx(ctx),
        user=account.name,
        project=choose_project(account, project),
        purpose=text,
        filename=upload.filename,
        data=upload.content,
        datasets=datasets,
    )
    return wire.export_public(record)


def list_exports(ctx: Any, account: Account) -> wire.Exports:
    records = export_service.list_exports(_export_ctx(ctx), user=account.name)
    return wire.Exports(exports=[wire.export_public(r) for r in records])


def get_export(ctx: Any, account: Account, export_id: int) -> wire.ExportPublic:
    return wire.export_public(export_service.show(_export_ctx(ctx), export_id=export_id, user=account.name))


def check_export(
    ctx: Any, account: Account, upload: Upload, *, project: str | None, datasets: list[str] | None
) -> wire.ExportDryRun:
    """The checks ``submit_export`` would run on this file, with nothing stored."""
    found = export_service.dry_run(
        _export_ctx(ctx),
        user=account.name,
        project=choose_project(account, project),
        filename=upload.filename,
        data=upload.content,
        datasets=datasets,
    )
    return wire.export_dry_run(found)


@dataclass(frozen=True)
class ReleasedFile:
    """A file handed out by the gate: the bytes whose SHA-256 was just re-checked."""

    filename: str
    content: bytes
    sha256: str
    status: str


def download_export(ctx: Any, account: Account, export_id: int) -> ReleasedFile:
    got = export_service.download(_export_ctx(ctx), export_id=export_id, user=account.name)
    return ReleasedFile(
        filename=got.record.filename,
        content=got.data,
        sha256=got.record.sha256,
        status=got.record.status.value,
    )


def export_manifest(ctx: Any, account: Account, export_id: int) -> wire.ExportManifest:
    found = export_service.manifest(_export_ctx(ctx), export_id=export_id, user=account.name)
    return wire.ExportManifest.model_validate(found)
