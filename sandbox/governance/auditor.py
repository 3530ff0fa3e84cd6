"""Read-only views over the audit chain for supervisors (SR-28, SR-38).

* :func:`entries`: filtered pages (kind, actor, since) of the chain. What a caller sees
  follows the matrix row "Read audit logs": operator and supervisor everything; a provider
  the entries about its datasets; data users their own activity; an enterprise also the
  entries about its authorisations.
* :func:`chain_status`: verification of the whole chain against its recorded head, with the
  head's seq and hash (publish the hash: an extract is checked against it).
* :func:`extract_lines`: the chain as JSON lines in the format of ``sandbox audit export``
  (one entry per line: seq, ts, kind, actor, data, prev_hash, hash), so
  ``sandbox audit verify --file FILE`` checks an extract downloaded from the gateway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.audit import store
from sandbox.audit.chain import Entry, VerifyResult
from sandbox.audit.store import append, format_ts
from sandbox.control.models import AuditEntry, User
from sandbox.errors import AccessDenied
from sandbox.governance.common import GovContext, account, reading, writing
from sandbox.governance.permissions import Action, Scope, check_scopes
from sandbox.policy.loader import Catalog

MAX_PAGE = 500


@dataclass(frozen=True)
class AuditRow:
    seq: int
    ts: str
    kind: str
    actor: str | None
    data: dict[str, Any]
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    next_after: int | None  # pass as ``after`` for the next page; None at the end
    scope: str  # what the caller may see: all / own datasets / own activity

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows], "next_after": self.next_after, "scope": self.scope}


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    count: int
    head_seq: int
    head_hash: str
    first_bad: int | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Filter:
    """Which entries a viewer may read (REQUIREMENTS §4, "Read audit logs")."""

    def __init__(self, catalog: Catalog, viewer: User) -> None:
        self.allowed = check_scopes(viewer, Action.READ_AUDIT)
        self.viewer = viewer
        dept = viewer.department
        self.own_datasets = (
            {d for d, ds in catalog.datasets.items() if dept in ds.provider} if dept else set()
        )

    @property
    def everything(self) -> bool:
        return Scope.ANY in self.allowed

    @property
    def label(self) -> str:
        if self.everything:
            return "all"
        return ", ".join(sorted(s.value for s in self.allowed))

    def admits(self, actor: str | None, data: dict[str, Any]) -> bool:
        if self.everything:
            return True
        name = self.viewer.username
        if Scope.OWN_ACTIVITY in self.allowed and name in (actor, data.get("user")):
            return True
        if Scope.OWN_AUTHORISATIONS in self.allowed and data.get("enterprise") == name:
            return True
        if Scope.OWN_DATA in self.allowed:
            mentioned = set()
            if isinstance(data.get("dataset"), str):
                mentioned.add(data["dataset"])
            if isinstance(data.get("datasets"), list):
                mentioned.update(str(d) for d in data["datasets"])
            departments = data.get("departments") if isinstance(data.get("departments"), list) else []
            if mentioned & self.own_datasets or self.viewer.department in (departments or []):
                return True
            if data.get("department") == self.viewer.department and self.viewer.department:
                return True
        return False


def _since_text(since: datetime | str | None) -> str | None:
    if since is None:
        return None
    if isinstance(since, datetime):
        return format_ts(since)
    return str(since)


def entries(
    ctx: GovContext,
    *,
    user: str,
    kind: str | None = None,
    actor: str | None = None,
    since: datetime | str | None = None,
    after: int = 0,
    limit: int = 100,
) -> AuditPage:
    """One page of entries the viewer may read, oldest first, after seq ``after``.

    ``kind`` matches exactly or by prefix when it ends with ``.`` or ``*`` (``consent.``);
    ``since`` is a moment (UTC) or an ISO text compared with the entries' ``ts``.
    """
    limit = max(1, min(int(limit), MAX_PAGE))
    with reading(ctx) as session:
        viewer = account(session, user)
        allowed = _Filter(ctx.catalog, viewer)
        query = select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq)
        if kind:
            if kind.endswith((".", "*")):
                query = query.where(AuditEntry.kind.startswith(kind.rstrip("*"), autoescape=True))
            else:
                query = query.where(AuditEntry.kind == kind)
        if actor:
            query = query.where(AuditEntry.actor == actor)
        moment = _since_text(since)
        if moment:
            query = query.where(AuditEntry.ts >= moment)
        rows: list[AuditRow] = []
        last_seen = after
        batch = 1000
        while len(rows) < limit:
            chunk = list(session.scalars(query.where(AuditEntry.seq > last_seen).limit(batch)))
            if not chunk:
                return AuditPage(rows, None, allowed.label)
            for row in chunk:
                last_seen = row.seq
                data = row.payload()
                if allowed.admits(row.actor, data):
                    rows.append(AuditRow(row.seq, row.ts, row.kind, row.actor, data, row.hash))
                    if len(rows) == limit:
                        break
        more = session.scalars(query.where(AuditEntry.seq > last_seen).limit(1)).first() is not None
        return AuditPage(rows, last_seen if more else None, allowed.label)


def chain_status(ctx: GovContext, *, user: str) -> ChainStatus:
    """Verify the chain against its recorded head (operator and supervisor)."""
    with reading(ctx) as session:
        _require_whole_log(account(session, user))
        return _status(session)


def _require_whole_log(viewer: User) -> None:
    if Scope.ANY not in check_scopes(viewer, Action.READ_AUDIT):
        raise AccessDenied(
            "The whole audit chain is for the operator and supervisors (REQUIREMENTS §4).",
            hint="Your own entries are in the audit view (entries).",
        )


def _status(session: Session) -> ChainStatus:
    result: VerifyResult = store.verify(session)
    anchor = store.head(session)
    return ChainStatus(
        ok=result.ok,
        count=result.count,
        head_seq=anchor.seq,
        head_hash=anchor.hash,
        first_bad=result.first_bad,
        reason=result.reason,
    )


def extract_lines(ctx: GovContext, *, user: str | None) -> Iterator[str]:
    """The whole chain as JSON lines (``sandbox audit export`` format), for operator and supervisor.

    The extract is itself an audited act: ``audit.extract_exported`` is appended first, in the
    same transaction that reads the chain, so the extract ends with the record of its own
    making. ``user`` None is the local operator (database access).
    """
    with writing(ctx) as session:
        if user is not None:
            _require_whole_log(account(session, user))
        before = store.head(session)
        append(session, "audit.extract_exported", user, {"head_seq": before.seq, "user": user})
        lines = [_line(entry) for entry in store.iter_entries(session)]
    yield from lines


def _line(entry: Entry) -> str:
    return json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"


__all__ = ["MAX_PAGE", "AuditPage", "AuditRow", "ChainStatus", "chain_status", "entries", "extract_lines"]
