"""Sweeping abandoned reservations while the same reservations are being committed.

Whatever the interleaving, each reservation ends in exactly one terminal state: either
``committed`` (the commit won; the sweep skips it) or ``abandoned`` (the sweep won; the
commit is refused), with exactly one matching audit event, the charge kept either way,
a consistent ledger and a verifying audit chain. On SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from sandbox.audit import store as audit_store
from sandbox.control.db import make_engine, migrate, session_scope
from sandbox.control.models import AuditEntry, Project, User, utcnow
from sandbox.errors import InternalError
from sandbox.ledger import store
from sandbox.ledger.models import Release
from sandbox.ledger.store import Party, Reservation
from sandbox.ledger.values import ReleaseStatus
from sandbox.policy.models import Budgets

BUDGETS = Budgets.model_validate(
    {"per_query_max": "1", "per_user": "50", "per_project": "50", "global": "50"}
)
DATASET = "enterprise_tax"
CHARGE = Decimal("0.1")
RACES = 24


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database_url")
    else:
        url = f"sqlite:///{tmp_path / 'control.sqlite'}"
    migrate(url)
    eng = make_engine(url, pool_size=8, max_overflow=0)
    yield eng
    eng.dispose()


@pytest.fixture
def party(engine: Engine) -> Party:
    with session_scope(engine) as session:
        user = User(username="alice", role="researcher")
        session.add(user)
        session.flush()
        project = Project(name="fin-lab", lead_id=user.id)
        session.add(project)
        session.flush()
        return Party(user.id, user.username, project.id, project.name)


def _stale_reservations(engine: Engine, party: Party, n: int) -> list[Reservation]:
    """``n`` reservations made an hour ago, one minute apart (oldest first): old enough to be
    swept, not yet committed."""
    made = [
        store.reserve(
            engine,
            party,
            dataset=DATASET,
            budgets=BUDGETS,
            fingerprint=f"q{i}",
            epsilon=CHARGE,
            charge=CHARGE,
        )
        for i in range(n)
    ]
    start = utcnow() - timedelta(hours=1)
    with session_scope(engine, immediate=True) as session:
        for i, res in enumerate(made):
            row = session.get(Release, res.release_id)
            assert row is not None
            row.created_at = start + timedelta(minutes=i)
    return made


def _outcome(engine: Engine) -> tuple[dict[str, str], Counter[str], dict[str, list[str]]]:
    """Statuses by release, audit kinds, and the audit kinds that name each release."""
    with session_scope(engine) as session:
        statuses = dict(session.execute(select(Release.id, Release.status)).all())
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        kinds = Counter(e.kind for e in entries)
        by_release: dict[str, list[str]] = {}
        for e in entries:
            rid = e.payload().get("release_id")
            if rid is not None and e.kind != "budget.reserved":
                by_release.setdefault(rid, []).append(e.kind)
        assert store.verify(session) == []
        verdict = audit_store.verify(session)
        assert verdict.ok, verdict
        spent = store.spent(session, DATASET, Party(0, "", 0, ""))
    assert sum(spent.values()) == CHARGE * len(statuses)  # every charge kept (dataset scope)
    return statuses, kinds, by_release


class _Gate:
    """Wraps ``store.audit_append``: the first append of ``kind`` waits (inside its transaction,
    with its locks held) until the test opens the gate."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.inside = threading.Event()
        self.open = threading.Event()
        self._real = store.audit_append

    def __call__(self, session: Any, kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == self.kind and not self.inside.is_set():
            self.inside.set()
            assert self.open.wait(60), "gate never opened"
        return self._real(session, kind, *args, **kwargs)


def _until_blocked(engine: Engine, thread_done: threading.Event) -> None:
    """Wait until the second transaction waits on the first one's locks (PostgreSQL: seen in
    pg_stat_activity; SQLite: the writer queues on BEGIN IMMEDIATE, give it time to get there)."""
    if engine.dialect.name == "postgresql":
        deadline = time.monotonic() + 30
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
                if waiting:
                    break
                conn.rollback()
                time.sleep(0.02)
            else:  # pragma: no cover - diagnostic
                pytest.fail("the second transaction never waited for the lock")
    else:
        time.sleep(0.5)
    assert not thread_done.is_set(), "the second transaction did not wait for the first one"


def test_commit_in_progress_wins_over_a_sweep(
    engine: Engine, party: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    (res,) = _stale_reservations(engine, party, 1)
    gate = _Gate("query.released")
    monkeypatch.setattr(store, "audit_append", gate)
    swept_done = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        committing = pool.submit(store.commit, engine, res, {"rows": [[1]]})
        assert gate.inside.wait(30)  # the commit holds the release row (and SQLite's write lock)

        def sweep() -> list[store.InFlight]:
            try:
                return store.sweep_reservations(engine, actor="admin")
            finally:
                swept_done.set()

        sweeping = pool.submit(sweep)
        _until_blocked(engine, swept_done)
        gate.open.set()
        released = committing.result(timeout=60)
        swept = sweeping.result(timeout=60)
    assert released.status is ReleaseStatus.COMMITTED
    assert swept == []  # re-checked after the wait: no longer reserved
    statuses, kinds, by_release = _outcome(engine)
    assert statuses == {res.release_id: "committed"}
    assert by_release == {res.release_id: ["query.released"]}
    assert kinds["budget.abandoned"] == 0


def test_sweep_in_progress_wins_over_a_commit(
    engine: Engine, party: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    (res,) = _stale_reservations(engine, party, 1)
    gate = _Gate("budget.abandoned")
    monkeypatch.setattr(store, "audit_append", gate)
    commit_done = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        sweeping = pool.submit(store.sweep_reservations, engine, actor="admin")
        assert gate.inside.wait(30)  # the sweep holds the release row (and SQLite's write lock)

        def commit() -> Any:
            try:
                return store.commit(engine, res, {"rows": [[1]]})
            finally:
                commit_done.set()

        committing = pool.submit(commit)
        _until_blocked(engine, commit_done)
        gate.open.set()
        swept = sweeping.result(timeout=60)
        with pytest.raises(InternalError, match="abandoned"):
            committing.result(timeout=60)
    assert [item.release_id for item in swept] == [res.release_id]
    statuses, kinds, by_release = _outcome(engine)
    assert statuses == {res.release_id: "abandoned"}
    assert by_release == {res.release_id: ["budget.abandoned"]}
    assert kinds["query.released"] == 0


def test_racing_commits_and_sweeps_give_exactly_one_terminal_state(engine: Engine, party: Party) -> None:
    reservations = _stale_reservations(engine, party, RACES)
    with session_scope(engine) as session:
        first = min(session.scalars(select(Release.created_at)))
    start = threading.Barrier(3)
    committed: list[str] = []
    refused: list[str] = []
    swept: list[str] = []
    done = threading.Event()

    def committer() -> None:
        start.wait()
        for res in reservations:
            try:
                store.commit(engine, res, {"rows": [[1]]})
                committed.append(res.release_id)
            except InternalError:
                refused.append(res.release_id)
            time.sleep(0.002)
        done.set()

    def sweeper() -> None:
        # a clock that moves through the reservations (a minute apart) as the committer does,
        # so that sweeps and commits meet on the same rows
        start.wait()
        step = 0
        while not done.is_set():
            now = first + timedelta(minutes=step, seconds=30)
            swept.extend(
                i.release_id for i in store.sweep_reservations(engine, older_than=timedelta(0), now=now)
            )
            step += 1
            time.sleep(0.002)

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(committer), pool.submit(sweeper), pool.submit(sweeper)]
        for future in futures:
            future.result(timeout=300)

    ids = {r.release_id for r in reservations}
    # every reservation was finished exactly once: by its commit or by one sweep
    assert sorted(committed + swept) == sorted(ids)
    assert set(refused) == set(swept)
    statuses, kinds, by_release = _outcome(engine)
    assert statuses == {rid: "committed" for rid in committed} | {rid: "abandoned" for rid in swept}
    assert by_release == {rid: ["query.released"] for rid in committed} | {
        rid: ["budget.abandoned"] for rid in swept
    }
    assert kinds["budget.reserved"] == RACES
    assert kinds["query.released"] + kinds["budget.abandoned"] == RACES
