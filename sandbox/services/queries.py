"""The query service: the one DP path used by the CLI and the gateway.

``run_query`` follows STYLE.md's order exactly:

1. **authenticate**: the user exists and is approved, and no sanction froze their budget;
2. **authorise**: member of the project; then, once the dataset is known, the
   access rules (role, tier, active grant: ``sandbox.access.rules.check_can_query``);
3. **validate** against public metadata (``sandbox.dp.parse_sql``) and refuse an
   epsilon above the dataset's ``per_query_max`` (``EpsilonTooLarge``), before
   anything runs;
4. an identical earlier release (same project, dataset, normalised spec
   fingerprint and epsilon) is returned at zero cost (audited ``query.cache_hit``);
5. **compile** (the charge is what the OpenDP privacy map says);
6. **reserve** the charge in its own committed transaction (``budget.reserved``);
7. **execute** the one push-down statement on the warehouse and add noise;
8. **commit** the release and its audit event ``query.released`` in one
   transaction, then return.

Any failure after 6 keeps the charge, is recorded as ``query.failed`` with the
details in the audit log only, and reaches the caller as a ``QueryFailed``
carrying a request id (``QueryTimeout`` when the statement ran past
``SANDBOX_QUERY_TIMEOUT``: whether a query is slow depends on the data, so the
charge is kept then too). Refusals before 6 are audited as ``query.rejected``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from sandbox.access import registry
from sandbox.access.rules import check_account_active, check_can_query
from sandbox.audit.store import append as audit_append
from sandbox.config import Settings, get_settings
from sandbox.control.db import make_engine as make_control_engine
from sandbox.control.db import session_scope
from sandbox.control.models import User
from sandbox.errors import (
    AuthenticationFailed,
    BudgetFrozen,
    ConfigError,
    InvalidQuery,
    NotProjectMember,
    QueryFailed,
    QueryTimeout,
    SandboxError,
)
from sandbox.ledger import store as ledger
from sandbox.ledger.store import Party, Reservation, StoredRelease
from sandbox.ledger.values import BudgetStatus, check_epsilon_allowed, format_amount, parse_epsilon
from sandbox.policy.loader import Catalog, load_policies

__all__ = [
    "PreviewRecord",
    "ReleaseRecord",
    "ServiceContext",
    "budget_status",
    "preview",
    "run_query",
]


# --------------------------------------------------------------------------- context


@dataclass
class ServiceContext:
    """What the services need: settings, the catalogue, the control-DB and warehouse engines."""

    settings: Settings
    catalog: Catalog
    control_engine: Engine
    warehouse_engine: Engine
    #: Seconds a read of the warehouse's derived-table layout (``_dp_derived``) is reused.
    layout_ttl: float = 10.0
    _layout: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)
    _layout_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def derived_layout(self, *, refresh: bool = False) -> dict[str, Any]:
        """The warehouse's current derived tables by dataset (``sandbox.dp.derived.read_layout``),
        re-read at most every ``layout_ttl`` seconds; ``{}`` when none exist or they cannot be read."""
        now = time.monotonic()
        cached = self._layout
        if not refresh and cached is not None and now - cached[0] < self.layout_ttl:
            return cached[1]
        with self._layout_lock:
            from sandbox.dp.derived import read_layout

            try:
                with self.warehouse_engine.connect() as conn:
                    layout: dict[str, Any] = read_layout(conn, self.catalog.datasets)
            except Exception:  # an unreadable layout only costs speed: the raw tables are always right
                layout = {}
            self._layout = (now, layout)
            return layout

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ServiceContext:
        from sandbox.catalog.warehouse import make_engine as make_warehouse_engine

        settings = settings or get_settings()
        catalog = load_policies(settings.policy_dir)
        control = make_control_engine(settings.control_db_url)
        warehouse = make_warehouse_engine(
            settings.warehouse_url, **_warehouse_options(settings.warehouse_url)
        )
        return cls(settings=settings, catalog=catalog, control_engine=control, warehouse_engine=warehouse)

    def close(self) -> None:
        self.control_engine.dispose()
        self.warehouse_engine.dispose()


def _warehouse_options(url: str) -> dict[str, Any]:
    # The query path only reads; DuckDB lets several read-only processes share a file.
    backend = make_url(url).get_backend_name()
    if backend == "duckdb" and _file_of(url) is not None:
        return {"read_only": True}
    return {}


def _file_of(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("duckdb", "sqlite"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _check_warehouse_present(ctx: ServiceContext) -> None:
    """Refuse before reserving when the embedded warehouse file does not exist (no budget lost)."""
    path = _file_of(str(ctx.warehouse_engine.url))
    if path is not None and not path.exists():
        raise ConfigError(
            "The warehouse has not been built yet.",
            hint="Run `sandbox synth` (or `sandbox init --demo`) to create it, then query again.",
        )


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ReleaseRecord:
    """A DP release as returned to a caller (fresh or from the cache)."""

    release_id: str
    request_id: str
    dataset: str
    project: str
    user: str
    epsilon_requested: Decimal
    epsilon_spent: Decimal  # what this call cost: 0 for a repeated query
    epsilon_charged: Decimal  # what the release was charged when it was made
    cached: bool
    sql: str
    fingerprint: str
    created_at: datetime
    columns: list[str]
    key_columns: list[str]
    rows: list[list[Any]]
    ci95: list[list[float | None]]
    budget: BudgetStatus
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The CLI's ``--json`` shape (decimals as exact strings)."""
        return {
            "release_id": self.release_id,
            "dataset": self.dataset,
            "epsilon_spent": format_amount(self.epsilon_spent),
            "columns": list(self.columns),
            "rows": [list(r) for r in self.rows],
            "ci95": [list(r) for r in self.ci95],
            "budget": self.budget.to_dict(),
        }


@dataclass(frozen=True)
class PreviewRecord:
    """What a query would cost and how accurate it would be; nothing is spent."""

    dataset: str
    project: str
    epsilon: Decimal  # the charge the query would make
    aggregates: list[dict[str, Any]]  # {"column", "aggregate", "ci95"}
    cached: bool  # an identical release exists: running it would cost nothing
    budget: BudgetStatus
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "project": self.project,
            "epsilon": format_amount(self.epsilon),
            "aggregates": self.aggregates,
            "cached": self.cached,
            "budget": self.budget.to_dict(),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- DP engine seam


def _parse(sql: str, catalog: Catalog) -> Any:
    from sandbox.dp import parse_sql

    return parse_sql(sql, catalog)


def _revalidate(spec: Any, catalog: Catalog) -> Any:
    """A spec built in Python passes the same checks as SQL: its SQL text is parsed again and must
    give the same spec (a hand-made spec that skips a check, e.g. a query window, is refused)."""
    to_sql = getattr(spec, "to_sql", None)
    if not callable(to_sql):
        raise InvalidQuery("A query spec must come from sandbox.dp (parse_sql or the builder).")
    try:
        text = str(to_sql())
    except Exception as err:  # a malformed hand-made spec (e.g. outputs naming nothing)
        raise InvalidQuery("The query spec is malformed.", hint="Build queries with sandbox.dp.") from err
    again = _parse(text, catalog)
    if again != spec:
        raise InvalidQuery(
            "The query spec does not match its own SQL text.",
            hint="Build queries with sandbox.dp.parse_sql or the table(...) builder.",
        )
    return again


def _compile(spec: Any, catalog: Catalog, epsilon: Decimal) -> Any:
    from sandbox.dp import compile_query

    return compile_query(spec, catalog, epsilon)


class _StatementTimedOut(Exception):
    """The warehouse statement hit the query deadline (becomes QueryTimeout in :func:`_fail`)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"warehouse statement stopped after {seconds:g} s (SANDBOX_QUERY_TIMEOUT)")
        self.seconds = seconds


def _run_statement(conn: Connection, statement: Any, seconds: float, limit: float) -> list[Any]:
    """Run ``statement`` within ``seconds`` (what is left of the query's ``limit``)."""
    from sandbox.catalog.deadline import statement_deadline

    with statement_deadline(conn, seconds) as deadline:
        try:
            return list(conn.execute(statement).all())
        except DBAPIError as err:
            if deadline.expired(err):
                raise _StatementTimedOut(limit) from err
            raise


def _execute(ctx: ServiceContext, compiled: Any) -> list[Any]:
    """Run the one push-down statement; only per-cell aggregates come back.

    The statement runs on the dataset's derived cube or bounded table when they are current
    (same integers, less work: ``sandbox.dp.layout``), else on the raw table. Should a derived
    table vanish between the layout read and the query (a concurrent rebuild), the raw-table
    statement runs instead and the layout is re-read next time. Both share one deadline of
    ``settings.query_timeout`` seconds (``sandbox.catalog.deadline``).
    """
    plan = getattr(compiled, "plan", None)
    derived = ctx.derived_layout().get(compiled.dataset.id) if plan is not None else None
    source, statement = plan.statement_on(derived) if plan is not None else ("raw", compiled.statement)
    limit = ctx.settings.query_timeout
    started = time.monotonic()
    with ctx.warehouse_engine.connect() as conn:
        if source == "raw":
            return _run_statement(conn, statement, limit, limit)
        try:
            return _run_statement(conn, statement, limit, limit)
        except DBAPIError:
            conn.rollback()
            ctx.derived_layout(refresh=True)
            left = limit - (time.monotonic() - started)
            if left <= 0:
                raise _StatementTimedOut(limit) from None
            return _run_statement(conn, compiled.statement, left, limit)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f") if value == value.to_integral_value() else str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)


def _release_payload(release: Any, spec: Any) -> dict[str, Any]:
    """The JSON stored with a release: columns, key columns, rows and per-cell ci95 (lists in column order).

    ``sandbox.dp.Release`` gives rows and ci95 as dicts by output name; ci95 is None for keys.
    """
    names: Any = getattr(release, "columns", None) or getattr(spec, "outputs", ())
    columns = [str(c) for c in names]
    rows = [[r.get(c) for c in columns] if isinstance(r, dict) else list(r) for r in release.rows]
    raw_ci = getattr(release, "ci95", None) or [{} for _ in rows]
    ci95 = [[ci.get(c) for c in columns] if isinstance(ci, dict) else list(ci) for ci in raw_ci]
    payload: dict[str, Any] = {
        "columns": columns,
        "key_columns": [str(k.name) for k in getattr(spec, "keys", ())],
        "rows": _jsonable(rows),
        "ci95": _jsonable(ci95),
    }
    for extra in ("mechanism", "budget_unit", "delta", "approx_dp", "rank_error95"):
        value = getattr(release, extra, None)
        if value is not None:
            payload[extra] = _jsonable(value)
    return payload


def _spec_sql(spec: Any) -> str:
    to_sql = getattr(spec, "to_sql", None)
    return str(to_sql()) if callable(to_sql) else ""


def _fingerprint(spec: Any, compiled: Any) -> str:
    """Cache key of a query: the compiled query's fingerprint (normalised spec, requested epsilon and
    the policy parameters that shape the result), else the spec's own fingerprint."""
    value = getattr(compiled, "fingerprint", None)
    if callable(value):
        value = value()
    if isinstance(value, str) and value:
        return value
    method = getattr(spec, "fingerprint", None)
    if callable(method):
        return str(method())
    from sandbox.ledger.values import fingerprint

    to_dict = getattr(spec, "to_dict", None)
    return fingerprint(to_dict() if callable(to_dict) else repr(spec))


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class _Prepared:
    party: Party
    spec: Any
    sql: str
    dataset: str
    epsilon: Decimal
    fingerprint: str
    compiled: Any


def _authenticate(session: Session, username: str) -> User:
    user = registry.find_user(session, username)
    if user is None:
        raise AuthenticationFailed(f"Unknown user {username!r}.")
    check_account_active(user)
    return user


def _check_not_frozen(session: Session, user: User) -> None:
    """Refuse every DP release, cached or new, while a sanction freezes the user's budget.

    A confirmed violation revokes the account *and* freezes the budget; the account can be set
    back to approved by an operator, the freeze is lifted only by reinstatement on appeal
    (``sandbox.governance.sanctions``). So this check does not rely on the account status.
    """
    from sandbox.governance.models import BudgetFreeze

    case = session.scalars(
        select(BudgetFreeze.violation_id)
        .where(BudgetFreeze.user_id == user.id, BudgetFreeze.lifted_at.is_(None))
        .order_by(BudgetFreeze.frozen_at)
        .limit(1)
    ).first()
    if case is not None:
        raise BudgetFrozen(f"The privacy budget of {user.username!r} is frozen by violation case {case}.")


def _authorise_project(session: Session, user: User, project: str) -> Party:
    proj = registry.find_project(session, project)
    if proj is None or registry.membership(session, proj, user) is None:
        raise NotProjectMember(f"{user.username!r} is not a member of project {project!r}.")
    return Party(user_id=user.id, username=user.username, project_id=proj.id, project=proj.name)


def _audit_rejection(
    ctx: ServiceContext, *, user: str, project: str, dataset: str | None, err: SandboxError
) -> None:
    def work(session: Session) -> None:
        known = registry.find_user(session, user) is not None
        audit_append(
            session,
            "query.rejected",
            user if known else None,
            {"dataset": dataset, "project": project, "user": user, "code": err.code},
        )

    # Best effort: the refusal itself is what the caller must see.
    with contextlib.suppress(Exception):
        ledger.in_transaction(ctx.control_engine, work)


def _prepare(
    ctx: ServiceContext,
    *,
    user: str,
    project: str,
    sql: str | None,
    spec: Any,
    epsilon: Decimal | str | int | float | None,
) -> _Prepared:
    """Authenticate, authorise, validate, compile. Refusals are audited (``query.rejected``) and re-raised."""
    dataset: str | None = getattr(spec, "dataset", None)
    try:
        if (sql is None) == (spec is None):
            raise InvalidQuery("Give exactly one of a SQL text or a query spec.")
        eps = parse_epsilon(epsilon if epsilon is not None else ctx.catalog.default_query_epsilon)
        with session_scope(ctx.control_engine) as session:
            account = _authenticate(session, user)
            _check_not_frozen(session, account)
            party = _authorise_project(session, account, project)
        if spec is None:
            assert sql is not None
            spec = _parse(sql, ctx.catalog)
        else:
            spec = _revalidate(spec, ctx.catalog)
        dataset = str(spec.dataset)
        with session_scope(ctx.control_engine) as session:
            check_can_query(session, user, project, dataset, ctx.catalog)
        check_epsilon_allowed(eps, ctx.catalog.budgets(dataset), dataset=dataset)
        compiled = _compile(spec, ctx.catalog, eps)
    except SandboxError as err:
        _audit_rejection(ctx, user=user, project=project, dataset=dataset, err=err)
        raise
    text = sql if sql is not None else _spec_sql(spec)
    return _Prepared(party, spec, text, dataset, eps, _fingerprint(spec, compiled), compiled)


def _find_cached(ctx: ServiceContext, prep: _Prepared) -> StoredRelease | None:
    with session_scope(ctx.control_engine) as session:
        return ledger.find_cached(
            session,
            project_id=prep.party.project_id,
            dataset=prep.dataset,
            fingerprint=prep.fingerprint,
            epsilon=prep.epsilon,
        )


def _status(ctx: ServiceContext, dataset: str, party: Party) -> BudgetStatus:
    with session_scope(ctx.control_engine) as session:
        return ledger.status(session, dataset, ctx.catalog.budgets(dataset), party)


def _record(
    ctx: ServiceContext, prep: _Prepared, stored: StoredRelease, *, request_id: str, cached: bool
) -> ReleaseRecord:
    result = stored.result or {}
    return ReleaseRecord(
        release_id=stored.release_id,
        request_id=request_id,
        dataset=stored.dataset,
        project=prep.party.project,
        user=prep.party.username,
        epsilon_requested=stored.epsilon_requested,
        epsilon_spent=Decimal(0) if cached else stored.epsilon_charged,
        epsilon_charged=stored.epsilon_charged,
        cached=cached,
        sql=prep.sql,
        fingerprint=stored.fingerprint,
        created_at=stored.created_at,
        columns=list(result.get("columns", [])),
        key_columns=list(result.get("key_columns", [])),
        rows=[list(r) for r in result.get("rows", [])],
        ci95=[list(r) for r in result.get("ci95", [])],
        budget=_status(ctx, stored.dataset, prep.party),
        extra={k: v for k, v in result.items() if k not in {"columns", "key_columns", "rows", "ci95"}},
    )


def _failure_details(err: BaseException) -> dict[str, Any]:
    return {
        "type": type(err).__name__,
        "message": str(err)[:2000],
        "traceback": "".join(traceback.format_exception(err))[-4000:],
    }


def _fail(ctx: ServiceContext, reservation: Reservation, err: BaseException) -> QueryFailed:
    # If even this fails, the release stays 'reserved', which is still charged.
    with contextlib.suppress(Exception):
        ledger.fail(ctx.control_engine, reservation, error=_failure_details(err))
    kept = f"the charge of epsilon={format_amount(reservation.charge)} is kept"
    if isinstance(err, _StatementTimedOut):
        return QueryTimeout(
            f"The query ran longer than the warehouse limit of {err.seconds:g} s and was stopped "
            f"(request id {reservation.request_id}); {kept}.",
            request_id=reservation.request_id,
        )
    return QueryFailed(
        f"The query failed after its budget was reserved (request id {reservation.request_id}); {kept}.",
        request_id=reservation.request_id,
    )


# --------------------------------------------------------------------------- public API


def run_query(
    ctx: ServiceContext,
    *,
    user: str,
    project: str,
    sql: str | None = None,
    spec: Any = None,
    epsilon: Decimal | str | int | float | None = None,
) -> ReleaseRecord:
    """Answer one DP query (SQL text or a prebuilt ``QuerySpec``), charging the project's budget.

    ``epsilon`` defaults to the platform's ``default_query_epsilon``. Raises
    AuthenticationFailed, AccountInactive, NotProjectMember, NoGrant, AccessDenied,
    UnknownDataset, InvalidQuery, EpsilonTooLarge or BudgetExceeded before anything runs;
    QueryFailed (the charge is kept) when execution fails after the reservation; its subclass
    QueryTimeout when the warehouse statement ran past ``settings.query_timeout``.
    """
    prep = _prepare(ctx, user=user, project=project, sql=sql, spec=spec, epsilon=epsilon)
    request_id = ledger.new_id()

    hit = _find_cached(ctx, prep)
    if hit is not None:
        ledger.record_cache_hit(ctx.control_engine, prep.party, hit, request_id=request_id)
        return _record(ctx, prep, hit, request_id=request_id, cached=True)

    try:
        _check_warehouse_present(ctx)
        reservation = ledger.reserve(
            ctx.control_engine,
            prep.party,
            dataset=prep.dataset,
            budgets=ctx.catalog.budgets(prep.dataset),
            fingerprint=prep.fingerprint,
            epsilon=prep.epsilon,
            charge=Decimal(prep.compiled.charge),
            request_id=request_id,
        )
    except SandboxError as err:
        _audit_rejection(ctx, user=user, project=project, dataset=prep.dataset, err=err)
        raise

    # --- the charge is durable from here on: every failure keeps it ---
    try:
        rows = _execute(ctx, prep.compiled)
        payload = _release_payload(prep.compiled.release(rows), prep.spec)
        stored = ledger.commit(
            ctx.control_engine,
            reservation,
            payload,
            audit_data={"cells": len(payload["rows"]), "sql": prep.sql[:2000]},
        )
    except Exception as err:
        raise _fail(ctx, reservation, err) from None
    return _record(ctx, prep, stored, request_id=request_id, cached=False)


def preview(
    ctx: ServiceContext,
    *,
    user: str,
    project: str,
    sql: str | None = None,
    spec: Any = None,
    epsilon: Decimal | str | int | float | None = None,
) -> PreviewRecord:
    """Expected accuracy and cost of a query, after the same checks as ``run_query``; spends nothing."""
    prep = _prepare(ctx, user=user, project=project, sql=sql, spec=spec, epsilon=epsilon)
    hit = _find_cached(ctx, prep)
    expected = prep.compiled.preview()
    return PreviewRecord(
        dataset=prep.dataset,
        project=prep.party.project,
        epsilon=Decimal(0) if hit is not None else Decimal(prep.compiled.charge),
        aggregates=_preview_aggregates(expected, prep.spec),
        cached=hit is not None,
        budget=_status(ctx, prep.dataset, prep.party),
        notes=[str(n) for n in getattr(expected, "notes", ())],
    )


def _preview_aggregates(expected: Any, spec: Any) -> list[dict[str, Any]]:
    """One entry per aggregate: ``{"column", "aggregate", "ci95"}`` (expected 95% half-width)."""
    if isinstance(expected, dict):
        data = expected
    else:
        data = expected.to_dict() if hasattr(expected, "to_dict") else {}
    if "aggregates" in data:
        return [_jsonable(item) for item in data["aggregates"]]
    ci95 = data.get("ci95", {})
    return [
        {
            "column": agg.name,
            "aggregate": str(getattr(agg.kind, "value", agg.kind)),
            "ci95": ci95.get(agg.name),
        }
        for agg in getattr(spec, "aggregates", ())
    ]


def budget_status(ctx: ServiceContext, *, user: str, project: str) -> dict[str, BudgetStatus]:
    """Remaining budgets of ``user`` in ``project`` on each dataset the project holds an active grant for.

    Remaining = policy cap minus every charge reserved, committed or failed.
    """
    with session_scope(ctx.control_engine) as session:
        account = _authenticate(session, user)
        party = _authorise_project(session, account, project)
        datasets = sorted(
            {
                g.dataset
                for g in registry.list_grants(session, project=project, active_only=True)
                if g.dataset in ctx.catalog.datasets and ctx.catalog.tier_rules(g.dataset).dp_required
            }
        )
        return {ds: ledger.status(session, ds, ctx.catalog.budgets(ds), party) for ds in datasets}


def release_json(record: ReleaseRecord) -> str:
    """``record.to_dict()`` as canonical JSON text."""
    return json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True)
