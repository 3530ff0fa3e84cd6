"""The query service (sandbox.services.queries) end to end on real parts.

Real policies, access rules, DP engine (sqlglot parser, OpenDP noise), ledger, audit
chain, a migrated SQLite control DB and a SQLite warehouse whose ``enterprise_tax``
table is declared from the policy. Only the warehouse step is wrapped (to count calls,
to inject a failure, or to hang for the crash test).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, func, select

from sandbox.access import registry
from sandbox.audit import store as audit_store
from sandbox.catalog.warehouse import RANK_COLUMN, dataset_table
from sandbox.catalog.warehouse import make_engine as make_warehouse_engine
from sandbox.config import Settings
from sandbox.control.db import migrate, session_scope
from sandbox.control.models import AuditEntry, utcnow
from sandbox.dp import parse_sql
from sandbox.errors import (
    AccountInactive,
    AuthenticationFailed,
    BudgetExceeded,
    EpsilonTooLarge,
    InvalidQuery,
    NoGrant,
    NotProjectMember,
    QueryFailed,
    QueryTimeout,
)
from sandbox.ledger import store as ledger
from sandbox.ledger.models import Release
from sandbox.ledger.values import ReleaseStatus
from sandbox.policy.loader import load_policies
from sandbox.services import queries
from sandbox.services.queries import ServiceContext

REPO = Path(__file__).resolve().parents[2]
DATASET = "enterprise_tax"  # conditional: per_query_max 1, per_user 3, per_project 3, global 30
SQL = "SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade"
GRADES = ["A", "B", "M", "C", "D"]


def distinct_sql(index: int) -> str:
    """A different valid query for each index (no cache hits between them)."""
    return (
        "SELECT COUNT(*) FROM enterprise_tax "
        f"WHERE filing_months >= {index % 13} AND tax_year <= {3000 + index}"
    )


# --------------------------------------------------------------------------- spies on the DP seam

CALLS: dict[str, int] = {"compile": 0, "execute": 0}
_real_compile = queries._compile
_real_execute = queries._execute


def counting_compile(spec: Any, catalog: Any, epsilon: Decimal) -> Any:
    CALLS["compile"] += 1
    return _real_compile(spec, catalog, epsilon)


def counting_execute(ctx: ServiceContext, compiled: Any) -> list[Any]:
    CALLS["execute"] += 1
    return _real_execute(ctx, compiled)


def install_spies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "_compile", counting_compile)
    monkeypatch.setattr(queries, "_execute", counting_execute)
    CALLS.update(compile=0, execute=0)


# --------------------------------------------------------------------------- environment


def make_warehouse(path: Path, rows: int = 40) -> str:
    """A SQLite warehouse with the policy's ``enterprise_tax`` table and ``rows`` enterprises."""
    url = f"sqlite:///{path}"
    dataset = load_policies(REPO / "policies").dataset(DATASET)
    metadata = MetaData()
    table = dataset_table(dataset, metadata)
    values = []
    for i in range(rows):
        row: dict[str, Any] = {RANK_COLUMN: 1}
        for col in dataset.columns:
            if col.name == dataset.privacy_unit:
                row[col.name] = f"91310000MA{i:08d}"
            elif col.name == "credit_grade":
                row[col.name] = GRADES[i % len(GRADES)]
            elif isinstance(col.domain, list) and col.domain:
                row[col.name] = col.domain[i % len(col.domain)]
            elif col.bounds is not None:
                row[col.name] = float(col.bounds.lower + (col.bounds.upper - col.bounds.lower) * (i % 7) / 7)
            else:
                row[col.name] = f"v{i}"
        values.append(row)
    engine = make_warehouse_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(table.insert(), values)
    engine.dispose()
    return url


def seed_people(engine: Engine, *, researchers: int = 3) -> None:
    """alice leads fin-lab (granted enterprise_tax); bob is in fin-lab; carol leads no-grant-lab;
    dave is suspended; researchers r0.. are members of fin-lab."""
    with session_scope(engine, immediate=True) as s:
        for name in ("alice", "bob", "carol", "dave"):
            registry.create_user(s, name, "researcher", actor=None)
        registry.set_status(s, "dave", "suspended", actor=None)
        registry.create_project(s, "fin-lab", title="Finance lab", lead="alice", actor=None)
        registry.create_project(s, "no-grant-lab", title="No grant", lead="carol", actor=None)
        registry.add_member(s, "fin-lab", "bob", actor=None)
        registry.add_member(s, "fin-lab", "dave", actor=None)
        for i in range(researchers):
            registry.create_user(s, f"r{i}", "researcher", actor=None)
            registry.add_member(s, "fin-lab", f"r{i}", actor=None)
        registry.grant_dataset(s, "fin-lab", DATASET, actor=None)


def build_settings(tmp: Path, control_url: str) -> Settings:
    return Settings(
        data_dir=tmp,
        policy_dir=REPO / "policies",
        warehouse_url_override=make_warehouse(tmp / "warehouse.sqlite"),
        control_db_url_override=control_url,
    )


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceContext]:
    control_url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(control_url)
    context = ServiceContext.from_settings(build_settings(tmp_path, control_url))
    seed_people(context.control_engine)
    install_spies(monkeypatch)
    yield context
    context.close()


def audit_kinds(ctx: ServiceContext) -> list[str]:
    with session_scope(ctx.control_engine) as s:
        return list(s.scalars(select(AuditEntry.kind).order_by(AuditEntry.seq)))


def assert_consistent(ctx: ServiceContext) -> None:
    with session_scope(ctx.control_engine) as s:
        assert ledger.verify(s) == []
        verdict = audit_store.verify(s)
        assert verdict.ok, verdict


# --------------------------------------------------------------------------- tests


def test_run_query_charges_releases_and_audits(ctx: ServiceContext) -> None:
    record = queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    assert record.dataset == DATASET and record.project == "fin-lab" and not record.cached
    # the charge is what the OpenDP privacy map says (never more than requested)
    assert record.epsilon_spent == Decimal("0.5") == record.epsilon_charged
    assert record.columns == ["credit_grade", "count"] and record.key_columns == ["credit_grade"]
    # every key of the public domain is released; keys carry no noise and no interval
    assert sorted(row[0] for row in record.rows) == sorted(GRADES)
    assert all(isinstance(row[1], int) for row in record.rows)
    assert all(ci[0] is None and isinstance(ci[1], float) and ci[1] > 0 for ci in record.ci95)
    assert record.extra["budget_unit"] == "epsilon"
    assert record.budget.to_dict() == {
        "user_remaining": "2.5",
        "project_remaining": "2.5",
        "dataset_remaining": "29.5",
    }
    assert audit_kinds(ctx)[-2:] == ["budget.reserved", "query.released"]
    with session_scope(ctx.control_engine) as s:
        row = s.get(Release, record.release_id)
        assert row is not None and row.status == ReleaseStatus.COMMITTED.value
    assert_consistent(ctx)


def test_default_epsilon_comes_from_the_policy(ctx: ServiceContext) -> None:
    record = queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL)
    assert record.epsilon_spent == Decimal("0.1")


def test_prebuilt_spec_is_accepted(ctx: ServiceContext) -> None:
    spec = parse_sql(SQL, ctx.catalog)
    record = queries.run_query(ctx, user="bob", project="fin-lab", spec=spec, epsilon="0.2")
    assert record.epsilon_spent == Decimal("0.2") and record.sql == spec.to_sql()
    # the same question asked as SQL is the same release
    again = queries.run_query(ctx, user="bob", project="fin-lab", sql=SQL, epsilon="0.2")
    assert again.cached and again.release_id == record.release_id
    with pytest.raises(InvalidQuery):
        queries.run_query(ctx, user="bob", project="fin-lab", sql=SQL, spec=spec)


def test_a_hand_made_spec_passes_the_same_checks_as_sql(ctx: ServiceContext) -> None:
    import dataclasses

    spec = parse_sql(SQL, ctx.catalog)
    # grouping by the privacy unit (an identifier) would be refused as SQL: refused as a spec too
    forged = dataclasses.replace(spec, keys=(dataclasses.replace(spec.keys[0], column="uscc"),))
    executed = CALLS["execute"]
    with pytest.raises(InvalidQuery) as err:
        queries.run_query(ctx, user="bob", project="fin-lab", spec=forged, epsilon="0.2")
    assert err.value.code.startswith("query_")
    assert CALLS["execute"] == executed
    assert audit_kinds(ctx)[-1] == "query.rejected"


def test_identical_query_is_answered_from_the_cache_at_zero_cost(ctx: ServiceContext) -> None:
    first = queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    executed = CALLS["execute"]
    # same project, same normalised query and epsilon (another member, other spacing, "0.50")
    again = queries.run_query(
        ctx,
        user="bob",
        project="fin-lab",
        sql="select credit_grade,  count(*)\nfrom enterprise_tax group by credit_grade",
        epsilon="0.50",
    )
    assert again.cached and again.release_id == first.release_id
    assert again.epsilon_spent == 0 and again.epsilon_charged == Decimal("0.5")
    assert again.rows == first.rows and again.ci95 == first.ci95
    assert CALLS["execute"] == executed
    assert audit_kinds(ctx)[-1] == "query.cache_hit"
    assert again.budget.project_remaining == first.budget.project_remaining
    # a different epsilon is a different release
    other = queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.25")
    assert not other.cached and other.epsilon_spent == Decimal("0.25")
    assert_consistent(ctx)


def test_epsilon_above_per_query_max_is_refused_before_anything_runs(ctx: ServiceContext) -> None:
    with pytest.raises(EpsilonTooLarge) as info:
        queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="1.5")
    assert info.value.code == "epsilon_too_large"
    assert CALLS == {"compile": 0, "execute": 0}
    with session_scope(ctx.control_engine) as s:
        assert s.scalar(select(func.count()).select_from(Release)) == 0
    assert audit_kinds(ctx)[-1] == "query.rejected"


def test_non_member_is_refused(ctx: ServiceContext) -> None:
    with pytest.raises(NotProjectMember):
        queries.run_query(ctx, user="carol", project="fin-lab", sql=SQL, epsilon="0.1")
    assert CALLS == {"compile": 0, "execute": 0}
    with session_scope(ctx.control_engine) as s:
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert entry is not None and entry.kind == "query.rejected"
        assert entry.payload()["code"] == "not_project_member"


def test_project_without_grant_is_refused(ctx: ServiceContext) -> None:
    with pytest.raises(NoGrant):
        queries.run_query(ctx, user="carol", project="no-grant-lab", sql=SQL, epsilon="0.1")
    assert CALLS == {"compile": 0, "execute": 0}


def test_unknown_or_suspended_users_are_refused(ctx: ServiceContext) -> None:
    with pytest.raises(AuthenticationFailed):
        queries.run_query(ctx, user="mallory", project="fin-lab", sql=SQL, epsilon="0.1")
    with pytest.raises(AccountInactive):
        queries.run_query(ctx, user="dave", project="fin-lab", sql=SQL, epsilon="0.1")
    with pytest.raises(AccountInactive):
        queries.budget_status(ctx, user="dave", project="fin-lab")
    assert CALLS == {"compile": 0, "execute": 0}


def test_invalid_query_and_epsilon_are_refused(ctx: ServiceContext) -> None:
    with pytest.raises(InvalidQuery):
        queries.run_query(
            ctx, user="alice", project="fin-lab", sql="SELECT * FROM enterprise_tax", epsilon="0.1"
        )
    with pytest.raises(InvalidQuery):
        queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="-1")


def test_budget_exhausted_is_refused_without_running(ctx: ServiceContext) -> None:
    for i in range(3):
        queries.run_query(ctx, user="alice", project="fin-lab", sql=distinct_sql(i), epsilon="1")
    executed = CALLS["execute"]
    with pytest.raises(BudgetExceeded) as info:
        queries.run_query(ctx, user="bob", project="fin-lab", sql=SQL, epsilon="0.1")
    assert info.value.details["scope"] == "project"
    assert "has 0 left" in info.value.message
    assert CALLS["execute"] == executed
    assert queries.budget_status(ctx, user="bob", project="fin-lab")[DATASET].available == 0
    assert_consistent(ctx)


def test_failure_after_reserving_keeps_the_charge_and_hides_details(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx: ServiceContext, compiled: Any) -> list[Any]:
        raise RuntimeError("warehouse exploded near row uscc=U00000000000000003")

    monkeypatch.setattr(queries, "_execute", broken)
    with pytest.raises(QueryFailed) as info:
        queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    err = info.value
    request_id = err.details["request_id"]
    assert request_id in err.message and "U0000" not in err.message and "exploded" not in str(err.to_dict())
    assert "kept" in err.message
    assert_failed_and_charged(ctx, request_id, detail="exploded")


def assert_failed_and_charged(ctx: ServiceContext, request_id: str, *, detail: str) -> None:
    """alice's 0.5 stays charged; the release is failed, without a result; the audit log has
    the failure's ``detail`` under the request id; ledger and chain are consistent."""
    status = queries.budget_status(ctx, user="alice", project="fin-lab")[DATASET]
    assert status.user_remaining == Decimal("2.5")
    with session_scope(ctx.control_engine) as s:
        failed = s.scalars(select(AuditEntry).where(AuditEntry.kind == "query.failed")).one()
        assert failed.payload()["request_id"] == request_id
        assert detail in failed.payload()["error"]["message"]
        row = s.scalars(select(Release)).one()
        assert row.status == ReleaseStatus.FAILED.value and row.result is None
    assert_consistent(ctx)


def test_missing_warehouse_is_refused_before_reserving(ctx: ServiceContext) -> None:
    path = Path(str(ctx.warehouse_engine.url.database))
    ctx.warehouse_engine.dispose()
    path.unlink()
    with pytest.raises(Exception) as info:
        queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    assert getattr(info.value, "code", None) == "config_error"
    assert queries.budget_status(ctx, user="alice", project="fin-lab")[DATASET].user_remaining == 3


def test_budget_status_lists_granted_dp_datasets(ctx: ServiceContext) -> None:
    assert queries.budget_status(ctx, user="carol", project="no-grant-lab") == {}
    with pytest.raises(NotProjectMember):
        queries.budget_status(ctx, user="carol", project="fin-lab")
    statuses = queries.budget_status(ctx, user="bob", project="fin-lab")
    assert list(statuses) == [DATASET]
    assert statuses[DATASET].to_dict() == {
        "user_remaining": "3",
        "project_remaining": "3",
        "dataset_remaining": "30",
    }


def test_preview_spends_nothing(ctx: ServiceContext) -> None:
    before = audit_kinds(ctx)
    result = queries.preview(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    assert result.epsilon == Decimal("0.5") and not result.cached
    assert [(a["column"], a["aggregate"]) for a in result.aggregates] == [("count", "count")]
    assert isinstance(result.aggregates[0]["ci95"], float)
    assert result.budget.user_remaining == 3
    assert audit_kinds(ctx) == before
    assert CALLS["execute"] == 0


# --------------------------------------------------------------------------- crash between reserve and commit

_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {test_dir!r})
    import test_ledger_service as t
    from sandbox.services import queries
    from sandbox.services.queries import ServiceContext
    from sandbox.config import Settings
    from pathlib import Path

    def hang(ctx, compiled):
        print("reserved", flush=True)
        time.sleep(120)
        raise SystemExit(1)

    queries._execute = hang
    settings = Settings(data_dir=Path({tmp!r}), policy_dir=Path({policies!r}),
                        warehouse_url_override={warehouse!r}, control_db_url_override={control!r})
    ctx = ServiceContext.from_settings(settings)
    queries.run_query(ctx, user="alice", project="fin-lab", sql={sql!r}, epsilon="0.5")
    print("returned", flush=True)
    """
)


def crash_after_reserving(ctx: ServiceContext) -> None:
    """Run ``SQL`` at epsilon 0.5 as alice in a child process and SIGKILL it between reserve and commit."""
    settings = ctx.settings
    script = _CHILD.format(
        test_dir=str(Path(__file__).resolve().parent),
        tmp=str(settings.data_dir),
        policies=str(settings.policy_dir),
        warehouse=settings.warehouse_url,
        control=settings.control_db_url,
        sql=SQL,
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line == "reserved", child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL


def test_crash_between_reserve_and_commit_leaves_a_charge_and_no_release(ctx: ServiceContext) -> None:
    crash_after_reserving(ctx)
    with session_scope(ctx.control_engine) as s:
        rows = s.scalars(select(Release)).all()
        assert [(r.status, r.result, r.epsilon_charged) for r in rows] == [("reserved", None, "0.5")]
        assert [k for k in s.scalars(select(AuditEntry.kind).order_by(AuditEntry.seq))][
            -1
        ] == "budget.reserved"
    # the reservation still counts as spent; no release exists without it
    status = queries.budget_status(ctx, user="alice", project="fin-lab")[DATASET]
    assert status.user_remaining == Decimal("2.5") and status.project_remaining == Decimal("2.5")
    # the same query now runs normally (the abandoned reservation is not a cached release)
    record = queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    assert not record.cached and record.budget.user_remaining == 2
    assert_consistent(ctx)


def test_sweep_after_a_crash_abandons_the_reservation_and_keeps_the_charge(ctx: ServiceContext) -> None:
    crash_after_reserving(ctx)
    engine = ctx.control_engine
    # just after the crash the reservation is as young as a running query's: left alone
    assert ledger.sweep_reservations(engine) == []
    with session_scope(engine) as s:
        (reserved,) = s.scalars(select(Release)).all()
        assert reserved.status == ReleaseStatus.RESERVED.value
    before = queries.budget_status(ctx, user="alice", project="fin-lab")[DATASET]

    # a quarter of an hour later (the default cut-off) the sweep takes it for abandoned
    later = utcnow() + ledger.ABANDON_AFTER + timedelta(seconds=1)
    (swept,) = ledger.sweep_reservations(engine, actor="admin", now=later)
    assert (swept.release_id, swept.user, swept.project, swept.dataset, swept.charge) == (
        reserved.id,
        "alice",
        "fin-lab",
        DATASET,
        Decimal("0.5"),
    )
    with session_scope(engine) as s:
        row = s.get(Release, reserved.id)
        assert row is not None
        assert (row.status, row.result, row.epsilon_charged) == ("abandoned", None, "0.5")
        assert row.finished_at is not None
    # the charge is kept: the remaining budgets are what they were
    after = queries.budget_status(ctx, user="alice", project="fin-lab")[DATASET]
    assert after == before and after.user_remaining == Decimal("2.5")
    assert audit_kinds(ctx)[-2:] == ["budget.reserved", "budget.abandoned"]
    assert_consistent(ctx)
    assert ledger.sweep_reservations(engine, now=later) == []
    # the same query runs normally afterwards, charged again (nothing was released the first time)
    record = queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    assert not record.cached and record.budget.user_remaining == 2
    assert_consistent(ctx)


def _slow_down(ctx: ServiceContext) -> None:
    """Make ``enterprise_tax`` a real but slow view: every row repeated 10^8 times."""
    with ctx.warehouse_engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE enterprise_tax RENAME TO enterprise_tax_rows")
        conn.exec_driver_sql(
            "CREATE VIEW enterprise_tax AS SELECT t.* FROM enterprise_tax_rows t, "
            "(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100000000) "
            "SELECT i FROM r)"
        )


@pytest.mark.timeout(60, method="thread")  # were the deadline broken, the scan would run for hours
def test_a_statement_past_the_query_timeout_is_stopped_and_keeps_its_charge(ctx: ServiceContext) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, query_timeout=0.5)
    _slow_down(ctx)
    started = time.monotonic()
    with pytest.raises(QueryTimeout) as info:
        queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    elapsed = time.monotonic() - started
    assert elapsed < 10  # stopped near 0.5 s, not after the 4 * 10^9-row scan
    err = info.value
    assert isinstance(err, QueryFailed) and err.code == "query_timeout" and err.status == 504
    request_id = err.details["request_id"]
    assert request_id in err.message and "0.5 s" in err.message and "kept" in err.message
    assert "WHERE filter" in err.hint
    # charged: whether a query is slow depends on the data
    assert_failed_and_charged(ctx, request_id, detail="SANDBOX_QUERY_TIMEOUT")
    # the engine's pool is healthy afterwards: with the table back, the next query is released
    with ctx.warehouse_engine.begin() as conn:
        conn.exec_driver_sql("DROP VIEW enterprise_tax")
        conn.exec_driver_sql("ALTER TABLE enterprise_tax_rows RENAME TO enterprise_tax")
    record = queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    assert sorted(row[0] for row in record.rows) == sorted(GRADES)
    assert_consistent(ctx)
