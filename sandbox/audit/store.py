"""The append-only audit store: ``append`` inside the caller's transaction, ``verify``.

Appends are serialised on the chain head row (``audit_head``): the first statement
of ``append`` is ``UPDATE audit_head SET seq = seq + 1``, which takes the row lock on
PostgreSQL (later appenders wait, then see the new head under READ COMMITTED) and
the write lock on SQLite. On SQLite start the transaction with
``session_scope(engine, immediate=True)`` so that a transaction that read earlier
never has to upgrade a stale snapshot (which fails with "database is locked").
``audit_log.prev_hash`` is unique, so a fork is impossible even if a caller gets
this wrong: the second writer fails instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sandbox.audit import chain
from sandbox.audit.chain import Anchor, VerifyResult
from sandbox.audit.events import build_payload
from sandbox.control.models import AuditEntry, AuditHead
from sandbox.errors import InternalError

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(moment: datetime) -> str:
    """UTC timestamp text used in the chain, e.g. ``2025-01-31T08:00:00.000000Z``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime; pass a timezone-aware datetime")
    return moment.astimezone(UTC).strftime(_TS_FORMAT)


def append(
    session: Session,
    kind: str,
    actor: str | None,
    data: Mapping[str, Any],
    *,
    now: datetime | None = None,
) -> AuditEntry:
    """Append one event to the chain inside the caller's transaction; return the entry.

    ``kind`` must be registered (``sandbox.audit.events``); ``actor`` is the
    pseudonymous id (username) of who acted, or None for the system. The entry is
    flushed, not committed: it is kept or rolled back with the caller's work.
    """
    payload = build_payload(kind, data)
    locked = session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
    if getattr(locked, "rowcount", 1) != 1:
        raise InternalError("audit_head row missing; run `sandbox init` (migrations) first")
    seq, prev_hash = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
    ts = format_ts(now or datetime.now(UTC))
    made = chain.make_entry(prev_hash, seq, ts, kind, actor, payload)
    entry = AuditEntry(
        seq=made.seq,
        ts=made.ts,
        kind=made.kind,
        actor=made.actor,
        data=str(made.data),
        prev_hash=made.prev_hash,
        hash=made.hash,
    )
    session.add(entry)
    session.flush()
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=made.hash))
    return entry


def head(session: Session) -> Anchor:
    """The recorded chain head (seq 0 and ``GENESIS`` for an empty log)."""
    seq, hash_ = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
    return Anchor(seq=seq, hash=hash_)


def iter_entries(session: Session, *, since: int = 1, batch: int = 1000) -> Iterator[chain.Entry]:
    """Entries in seq order from ``since``, streamed in batches (plain ``chain.Entry``)."""
    columns = (
        AuditEntry.seq,
        AuditEntry.ts,
        AuditEntry.kind,
        AuditEntry.actor,
        AuditEntry.data,
        AuditEntry.prev_hash,
        AuditEntry.hash,
    )
    last = since - 1
    while True:
        rows = session.execute(
            select(*columns).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        for row in rows:
            yield chain.Entry(*row)
        last = rows[-1].seq


def verify(session: Session) -> VerifyResult:
    """Verify the whole chain, and that it ends at the recorded head row."""
    return chain.verify(iter_entries(session), anchor=head(session))


__all__ = ["append", "format_ts", "head", "iter_entries", "verify"]
