"""64 parallel ``run_query`` calls against a project budget that admits exactly 10.

enterprise_tax's policy (conditional defaults): per_project 3, so ten queries at
epsilon 0.3 fill it exactly. Each query is different (no cache hits). The control DB
is SQLite or a real PostgreSQL; ledger and audit chain must agree afterwards.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import test_ledger_service as svc  # sibling test module: environment helpers
from sqlalchemy import func, select

from sandbox.control.db import migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import BudgetExceeded
from sandbox.ledger import store as ledger
from sandbox.ledger.models import Release
from sandbox.services import queries
from sandbox.services.queries import ServiceContext

N_QUERIES = 64
ADMITTED = 10
USERS = 8


@pytest.fixture(params=["sqlite", "postgres"])
def ctx(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServiceContext]:
    if request.param == "postgres":
        control_url = request.getfixturevalue("pg_database_url")
    else:
        control_url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(control_url)
    context = ServiceContext.from_settings(svc.build_settings(tmp_path, control_url))
    svc.seed_people(context.control_engine, researchers=USERS)
    svc.install_spies(monkeypatch)
    yield context
    context.close()


def test_parallel_queries_release_exactly_what_the_budget_admits(ctx: ServiceContext) -> None:
    barrier = threading.Barrier(N_QUERIES)

    def one(index: int) -> str:
        barrier.wait()
        try:
            queries.run_query(
                ctx,
                user=f"r{index % USERS}",
                project="fin-lab",
                sql=svc.distinct_sql(index),
                epsilon="0.3",
            )
        except BudgetExceeded:
            return "refused"
        return "released"

    with ThreadPoolExecutor(max_workers=N_QUERIES) as pool:
        outcomes = Counter(pool.map(one, range(N_QUERIES)))
    assert outcomes == {"released": ADMITTED, "refused": N_QUERIES - ADMITTED}

    status = queries.budget_status(ctx, user="alice", project="fin-lab")[svc.DATASET]
    assert status.project_remaining == 0
    assert status.dataset_remaining == Decimal(27)
    with session_scope(ctx.control_engine) as s:
        assert s.scalar(select(func.count()).select_from(Release)) == ADMITTED
        kinds = {
            kind: n for kind, n in s.execute(select(AuditEntry.kind, func.count()).group_by(AuditEntry.kind))
        }
    assert kinds["budget.reserved"] == ADMITTED
    assert kinds["query.released"] == ADMITTED
    assert kinds["query.rejected"] == N_QUERIES - ADMITTED
    svc.assert_consistent(ctx)
    with session_scope(ctx.control_engine) as s:
        assert ledger.verify(s) == []
