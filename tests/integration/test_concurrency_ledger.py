"""No overspend under concurrency: 64 parallel reservations against a budget that admits exactly 10.

Runs on SQLite (threads, and separate processes) and on a real PostgreSQL cluster.
The charge 0.1 against a cap of 1 also checks exactness (ten float 0.1s do not add to 1).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from sandbox.audit import store as audit_store
from sandbox.control.db import make_engine, migrate, session_scope
from sandbox.control.models import AuditEntry, Project, User
from sandbox.errors import BudgetExceeded
from sandbox.ledger import store
from sandbox.ledger.models import Release
from sandbox.ledger.store import Party
from sandbox.ledger.values import ReleaseStatus
from sandbox.policy.models import Budgets

N_QUERIES = 64
ADMITTED = 10
CHARGE = Decimal("0.1")
# The project cap admits exactly ten charges of 0.1; users and the global cap are looser.
BUDGETS = Budgets.model_validate({"per_query_max": "1", "per_user": "5", "per_project": "1", "global": "10"})
DATASET = "enterprise_tax"


def _seed(engine: Engine, n_users: int) -> list[Party]:
    with session_scope(engine) as session:
        users = [User(username=f"user{i}", role="researcher") for i in range(n_users)]
        session.add_all(users)
        session.flush()
        project = Project(name="fin-lab", lead_id=users[0].id)
        session.add(project)
        session.flush()
        return [Party(u.id, u.username, project.id, project.name) for u in users]


def _one_query(url: str | Engine, party: Party, index: int) -> str:
    """Reserve, 'execute', commit: what the query service does. Returns 'released' or 'refused'."""
    engine = make_engine(url) if isinstance(url, str) else url
    try:
        try:
            res = store.reserve(
                engine,
                party,
                dataset=DATASET,
                budgets=BUDGETS,
                fingerprint=f"query-{index}",
                epsilon=CHARGE,
                charge=CHARGE,
            )
        except BudgetExceeded:
            return "refused"
        store.commit(engine, res, {"rows": [[index]]})
        return "released"
    finally:
        if isinstance(url, str):
            engine.dispose()


def _check(engine: Engine, outcomes: list[str]) -> None:
    assert outcomes.count("released") == ADMITTED
    assert outcomes.count("refused") == N_QUERIES - ADMITTED
    with session_scope(engine) as session:
        statuses = session.scalars(select(Release.status)).all()
        assert statuses == [ReleaseStatus.COMMITTED.value] * ADMITTED
        assert store.verify(session) == []
        party = Party(0, "x", session.scalar(select(Project.id)) or 0, "fin-lab")
        remaining = store.status(session, DATASET, BUDGETS, party)
        assert remaining.project_remaining == 0
        assert remaining.dataset_remaining == Decimal(9)
        kinds = session.execute(select(AuditEntry.kind, func.count()).group_by(AuditEntry.kind)).all()
        assert dict(kinds) == {"budget.reserved": ADMITTED, "query.released": ADMITTED}
        verdict = audit_store.verify(session)
        assert verdict.ok, verdict


def _run_threads(engine: Engine, parties: list[Party]) -> list[str]:
    barrier = threading.Barrier(N_QUERIES)

    def go(index: int) -> str:
        barrier.wait()
        return _one_query(engine, parties[index % len(parties)], index)

    with ThreadPoolExecutor(max_workers=N_QUERIES) as pool:
        return list(pool.map(go, range(N_QUERIES)))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(url)
    engine = make_engine(url, pool_size=N_QUERIES, max_overflow=0)
    yield url, engine
    engine.dispose()


def test_sqlite_threads_never_overspend(sqlite_engine: tuple[str, Engine]) -> None:
    _url, engine = sqlite_engine
    parties = _seed(engine, 8)
    _check(engine, _run_threads(engine, parties))


@pytest.mark.slow
def test_sqlite_processes_never_overspend(sqlite_engine: tuple[str, Engine]) -> None:
    url, engine = sqlite_engine
    parties = _seed(engine, 8)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=8, mp_context=context) as pool:
        futures = [pool.submit(_one_query, url, parties[i % len(parties)], i) for i in range(N_QUERIES)]
        outcomes = [f.result(timeout=300) for f in futures]
    _check(engine, outcomes)


def test_postgres_threads_never_overspend(pg_database_url: str) -> None:
    migrate(pg_database_url)
    engine = make_engine(pg_database_url, pool_size=N_QUERIES, max_overflow=0)
    try:
        parties = _seed(engine, 8)
        _check(engine, _run_threads(engine, parties))
    finally:
        engine.dispose()


@pytest.mark.slow
def test_postgres_processes_never_overspend(pg_database_url: str) -> None:
    migrate(pg_database_url)
    engine = make_engine(pg_database_url)
    try:
        parties = _seed(engine, 8)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=8, mp_context=context) as pool:
            futures = [
                pool.submit(_one_query, pg_database_url, parties[i % len(parties)], i)
                for i in range(N_QUERIES)
            ]
            outcomes = [f.result(timeout=300) for f in futures]
        _check(engine, outcomes)
    finally:
        engine.dispose()
