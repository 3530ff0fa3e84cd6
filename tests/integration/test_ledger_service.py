"""The query service (sandbox.services.queries) over a real control DB, real policies and a SQLite warehouse.

The DP engine's parse/compile are replaced by small stand-ins (``StandInSpec``,
``StandInCompiled``) until ``sandbox.dp.compile_query`` lands; everything else is real:
access rules, ledger, audit chain, warehouse statement execution.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, table, text

from sandbox.access import registry
from sandbox.audit import store as audit_store
from sandbox.config import Settings
from sandbox.control.db import migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import (
    AccountInactive,
    AuthenticationFailed,
    BudgetExceeded,
    EpsilonTooLarge,
    InvalidQuery,
    NoGrant,
    NotProjectMember,
    QueryFailed,
)
from sandbox.ledger import store as ledger
from sandbox.ledger.models import Release
from sandbox.ledger.values import ReleaseStatus
from sandbox.services import queries
from sandbox.services.queries import ServiceContext

REPO = Path(__file__).resolve().parents[2]
DATASET = "enterprise_tax"  # conditional: per_query_max 1, per_user 3, per_project 3, global 30
SQL = "SELECT COUNT(*) FROM enterprise_tax"

# --------------------------------------------------------------------------- DP stand-ins


@dataclass(frozen=True)
class StandInSpec:
    dataset: str
    sql: str
    outputs: tuple[str, ...] = ("count",)
    keys: tuple[Any, ...] = ()

    def fingerprint(self) -> str:
        normalised = " ".join(self.sql.lower().split())
        return hashlib.sha256(normalised.encode()).hexdigest()

    def to_sql(self) -> str:
        return self.sql


@dataclass
class StandInRelease:
    columns: list[str]
    rows: list[list[Any]]
    ci95: list[list[float | None]]
    key_columns: list[str] = field(default_factory=list)


@dataclass
class StandInCompiled:
    spec: StandInSpec
    charge: Decimal

    @property
    def statement(self) -> Any:
        return select(func.count()).select_from(table(self.spec.dataset))

    def release(self, rows: list[Any]) -> StandInRelease:
        return StandInRelease(columns=["count"], rows=[[float(rows[0][0]) + 0.25]], ci95=[[3.5]])

    def preview(self) -> dict[str, Any]:
        return {"aggregates": [{"column": "count", "aggregate": "count", "ci95": 3.5}]}


CALLS: dict[str, int] = {"compile": 0, "execute": 0}


def stand_in_parse(sql: str, catalog: Any) -> StandInSpec:
    if re.match(r"\s*select\s+\*", sql, re.IGNORECASE):
        raise InvalidQuery("SELECT * is not supported.")
    match = re.search(r"FROM\s+(\w+)", sql, re.IGNORECASE)
    if match is None:
        raise InvalidQuery("No FROM clause.")
    catalog.dataset(match.group(1))
    return StandInSpec(dataset=match.group(1), sql=sql)


def stand_in_compile(spec: StandInSpec, catalog: Any, epsilon: Decimal) -> StandInCompiled:
    CALLS["compile"] += 1
    return StandInCompiled(spec, epsilon)


_real_execute = queries._execute


def counting_execute(ctx: ServiceContext, compiled: Any) -> list[Any]:
    CALLS["execute"] += 1
    return _real_execute(ctx, compiled)


def install_stand_ins(target: Any = None) -> None:
    """Patch the DP seam of sandbox.services.queries (tests only)."""
    module = target or queries
    module._parse = stand_in_parse
    module._compile = stand_in_compile
    module._execute = counting_execute


# --------------------------------------------------------------------------- environment


def make_warehouse(path: Path, rows: int = 7) -> str:
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE enterprise_tax (uscc VARCHAR, tax_year BIGINT, _rank INTEGER)"))
        for i in range(rows):
            conn.execute(text("INSERT INTO enterprise_tax VALUES (:u, 2017, 1)"), {"u": f"U{i:017d}"})
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
    for name, value in (
        ("_parse", stand_in_parse),
        ("_compile", stand_in_compile),
        ("_execute", counting_execute),
    ):
        monkeypatch.setattr(queries, name, value)
    CALLS.update(compile=0, execute=0)
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
    assert record.epsilon_spent == Decimal("0.5")
    assert record.columns == ["count"] and record.rows == [[7.25]] and record.ci95 == [[3.5]]
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
    record = queries.run_query(
        ctx, user="bob", project="fin-lab", spec=StandInSpec(DATASET, SQL), epsilon="0.2"
    )
    assert record.epsilon_spent == Decimal("0.2") and record.sql == SQL
    with pytest.raises(InvalidQuery):
        queries.run_query(ctx, user="bob", project="fin-lab", sql=SQL, spec=StandInSpec(DATASET, SQL))


def test_identical_query_is_answered_from_the_cache_at_zero_cost(ctx: ServiceContext) -> None:
    first = queries.run_query(ctx, user="alice", project="fin-lab", sql=SQL, epsilon="0.5")
    executed = CALLS["execute"]
    # same project, same normalised query and epsilon (another member, other spacing, "0.50")
    again = queries.run_query(
        ctx, user="bob", project="fin-lab", sql="select  count(*) from enterprise_tax", epsilon="0.50"
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
        queries.run_query(
            ctx, user="alice", project="fin-lab", sql=f"{SQL} WHERE tax_year > {i}", epsilon="1"
        )
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
    status = queries.budget_status(ctx, user="alice", project="fin-lab")[DATASET]
    assert status.user_remaining == Decimal("2.5")
    with session_scope(ctx.control_engine) as s:
        failed = s.scalars(select(AuditEntry).where(AuditEntry.kind == "query.failed")).one()
        assert failed.payload()["request_id"] == request_id
        assert "exploded" in failed.payload()["error"]["message"]
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
    assert result.aggregates == [{"column": "count", "aggregate": "count", "ci95": 3.5}]
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

    t.install_stand_ins()

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


def test_crash_between_reserve_and_commit_leaves_a_charge_and_no_release(ctx: ServiceContext) -> None:
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
