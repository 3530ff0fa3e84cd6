"""The audit store: append inside the caller's transaction, verify, tampering, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError

from sandbox.audit import store
from sandbox.audit.chain import GENESIS
from sandbox.control.db import make_engine, migrate, session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import InternalError


@pytest.fixture
def pg_engine(pg_database_url: str) -> Iterator[Engine]:
    migrate(pg_database_url)
    engine = make_engine(pg_database_url, pool_size=10)
    try:
        yield engine
    finally:
        engine.dispose()


def _append_n(engine: Engine, n: int, actor: str = "admin") -> None:
    for i in range(n):
        with session_scope(engine, immediate=True) as session:
            store.append(session, "user.created", actor, {"user": f"u{i}", "role": "researcher"})


def test_empty_log_verifies(control_engine: Engine) -> None:
    with session_scope(control_engine) as session:
        result = store.verify(session)
    assert (result.ok, result.count, result.head) == (True, 0, GENESIS)


def test_append_links_entries_and_stamps_the_kind_version(control_engine: Engine) -> None:
    _append_n(control_engine, 3)
    with session_scope(control_engine) as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        result = store.verify(session)
        head = store.head(session)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert entries[0].payload() == {"user": "u0", "role": "researcher", "_v": 1}
    assert result.ok and result.count == 3 and result.head == entries[-1].hash
    assert (head.seq, head.hash) == (3, entries[-1].hash)


def test_append_rolls_back_with_the_callers_transaction(control_engine: Engine) -> None:
    _append_n(control_engine, 1)
    with pytest.raises(RuntimeError), session_scope(control_engine, immediate=True) as session:
        store.append(session, "user.created", "admin", {"user": "ghost", "role": "researcher"})
        raise RuntimeError("caller failed")
    _append_n(control_engine, 1)
    with session_scope(control_engine) as session:
        assert store.verify(session).count == 2


def test_unknown_kinds_and_personal_fields_are_refused(control_engine: Engine) -> None:
    with session_scope(control_engine, immediate=True) as session:
        with pytest.raises(InternalError, match="unknown audit event kind"):
            store.append(session, "user.teleported", None, {})
        with pytest.raises(InternalError, match="personal data"):
            store.append(session, "user.created", None, {"user": "a", "role": "bank", "phone": "1"})
        with pytest.raises(InternalError, match="missing required"):
            store.append(session, "user.created", None, {"user": "a"})


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", "hash mismatch"),
        ("UPDATE audit_log SET data = replace(data, 'u2', 'u9') WHERE seq = 3", "hash mismatch"),
        ("UPDATE audit_log SET data = data || ' ' WHERE seq = 3", "canonical"),
        ("UPDATE audit_log SET ts = '2000-01-01T00:00:00.000000Z' WHERE seq = 3", "hash mismatch"),
        ("DELETE FROM audit_log WHERE seq = 3", "missing"),
    ],
)
def test_tampering_in_the_database_is_found(control_engine: Engine, sql: str, reason: str) -> None:
    _append_n(control_engine, 5)
    with control_engine.begin() as conn:
        conn.execute(text(sql))
    with session_scope(control_engine) as session:
        result = store.verify(session)
    assert not result.ok
    assert result.first_bad == 3
    assert reason in (result.reason or "")


def test_deleting_the_newest_entries_is_found_through_the_head_row(control_engine: Engine) -> None:
    _append_n(control_engine, 5)
    with control_engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 4"))
    with session_scope(control_engine) as session:
        result = store.verify(session)
    assert not result.ok and result.first_bad == 4


def test_a_second_writer_cannot_fork_the_chain(control_engine: Engine) -> None:
    _append_n(control_engine, 2)
    with session_scope(control_engine) as session:
        last = session.get(AuditEntry, 2)
        assert last is not None
        forged = AuditEntry(
            seq=99,
            ts="x",
            kind="user.created",
            actor=None,
            data="{}",
            prev_hash=last.prev_hash,
            hash="f" * 64,
        )
    with pytest.raises(IntegrityError), session_scope(control_engine) as session:
        session.add(forged)


def _hammer(engine: Engine, threads: int, per_thread: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with session_scope(engine, immediate=True) as session:
                    store.append(
                        session, "user.created", f"w{t}", {"user": f"t{t}-{i}", "role": "researcher"}
                    )
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return errors


def _assert_valid_chain(engine: Engine, expected: int) -> None:
    with session_scope(engine) as session:
        result = store.verify(session)
        seqs = session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
        distinct_hashes = session.scalar(select(func.count(func.distinct(AuditEntry.hash))))
    assert result.ok, result
    assert result.count == expected
    assert list(seqs) == list(range(1, expected + 1))
    assert distinct_hashes == expected


def test_concurrent_appends_keep_one_valid_chain_on_sqlite(control_engine: Engine) -> None:
    errors = _hammer(control_engine, threads=8, per_thread=20)
    assert errors == []
    _assert_valid_chain(control_engine, 160)


def test_concurrent_appends_keep_one_valid_chain_on_postgres(pg_engine: Engine) -> None:
    errors = _hammer(pg_engine, threads=8, per_thread=20)
    assert errors == []
    _assert_valid_chain(pg_engine, 160)


def test_tampering_is_found_on_postgres(pg_engine: Engine) -> None:
    _append_n(pg_engine, 4)
    with pg_engine.begin() as conn:
        conn.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(kind="grant.added"))
    with session_scope(pg_engine) as session:
        result = store.verify(session)
    assert not result.ok and result.first_bad == 2
