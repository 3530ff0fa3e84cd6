"""The audit hash chain: canonical JSON, entry hashes and ``verify``. Pure, no I/O.

Each entry has a body ``{seq, ts, kind, actor, data}`` and

    hash = sha256(prev_hash || canonical_json(body))        (hex, 64 chars)

where ``prev_hash`` is the previous entry's hash (``GENESIS`` for seq 1).
``verify`` walks entries in order and reports the first that breaks the chain:
a gap or repeat in ``seq`` (deletion, insertion, reordering), a ``prev_hash``
that is not the previous hash, a ``data`` text that is not canonical JSON, or a
stored hash that differs from the recomputed one (any edited field). Given an
``anchor`` (the head recorded elsewhere: the head row, an exported head), it also
detects entries removed from or added to the end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

GENESIS = "0" * 64
HASH_LENGTH = 64


def canonical_json(obj: Any) -> bytes:
    """Canonical UTF-8 JSON: sorted keys, no whitespace, non-ASCII kept, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def canonical_text(obj: Any) -> str:
    """``canonical_json`` as ``str`` (what the ``audit_log.data`` column stores)."""
    return canonical_json(obj).decode("utf-8")


def entry_body(seq: int, ts: str, kind: str, actor: str | None, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "ts": ts, "kind": kind, "actor": actor, "data": dict(data)}


def entry_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """``sha256(prev_hash || canonical_json(body))`` as lowercase hex."""
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(canonical_json(dict(body)))
    return digest.hexdigest()


class EntryLike(Protocol):
    """What ``verify`` reads. ``data`` is the stored canonical JSON text or a mapping."""

    @property
    def seq(self) -> int: ...
    @property
    def ts(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def actor(self) -> str | None: ...
    @property
    def data(self) -> str | Mapping[str, Any]: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True)
class Entry:
    """A plain chain entry (used by tests, exports and ``verify`` of JSON lines)."""

    seq: int
    ts: str
    kind: str
    actor: str | None
    data: str | Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        data = json.loads(self.data) if isinstance(self.data, str) else dict(self.data)
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "actor": self.actor,
            "data": data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Entry:
        data = row["data"]
        return cls(
            seq=row["seq"],
            ts=row["ts"],
            kind=row["kind"],
            actor=row["actor"],
            data=data if isinstance(data, str) else dict(data),
            prev_hash=row["prev_hash"],
            hash=row["hash"],
        )


def make_entry(
    prev_hash: str, seq: int, ts: str, kind: str, actor: str | None, data: Mapping[str, Any]
) -> Entry:
    """Build the next entry (``data`` stored as canonical text)."""
    body = entry_body(seq, ts, kind, actor, data)
    return Entry(seq, ts, kind, actor, canonical_text(body["data"]), prev_hash, entry_hash(prev_hash, body))


@dataclass(frozen=True)
class Anchor:
    """A head recorded outside the log: the entry ``seq`` must exist with ``hash``."""

    seq: int
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """``ok``; ``count`` entries verified; ``head`` = hash of the last good entry.

    When not ok, ``first_bad`` is the seq of the first broken entry and ``reason``
    says what is wrong with it.
    """

    ok: bool
    count: int
    head: str
    first_bad: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"ok {self.count} entries, head {self.head}"
        return f"broken at seq {self.first_bad}: {self.reason}"


def _fail(count: int, head: str, seq: int, reason: str) -> VerifyResult:
    return VerifyResult(ok=False, count=count, head=head, first_bad=seq, reason=reason)


def _parse_data(data: str | Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(data, str):
        return dict(data), None
    try:
        value = json.loads(data)
    except ValueError:
        return None, "data is not valid JSON"
    if not isinstance(value, dict):
        return None, "data is not a JSON object"
    if canonical_text(value) != data:
        return None, "data is not in canonical form (it was edited)"
    return value, None


def verify(entries: Iterable[EntryLike], *, anchor: Anchor | None = None) -> VerifyResult:
    """Check the chain in the order given; stop at the first broken entry."""
    prev = GENESIS
    expected = 1
    count = 0
    for entry in entries:
        seq = entry.seq
        if seq != expected:
            if isinstance(seq, int) and seq > expected:
                reason = f"entry {expected} is missing (found seq {seq} after {expected - 1})"
            else:
                reason = f"expected seq {expected}, found seq {seq!r} (entries reordered or inserted)"
            return _fail(count, prev, expected, reason)
        if entry.prev_hash != prev:
            return _fail(count, prev, seq, "prev_hash does not match the hash of the previous entry")
        data, problem = _parse_data(entry.data)
        if data is None:
            return _fail(count, prev, seq, problem or "bad data")
        body = entry_body(seq, entry.ts, entry.kind, entry.actor, data)
        try:
            recomputed = entry_hash(prev, body)
        except (TypeError, ValueError, UnicodeError):
            return _fail(count, prev, seq, "entry fields cannot be hashed (wrong types)")
        if recomputed != entry.hash:
            return _fail(count, prev, seq, "hash mismatch: the entry's content was changed")
        prev = entry.hash
        count += 1
        expected += 1
    if anchor is not None:
        if count < anchor.seq:
            return _fail(
                count, prev, count + 1, f"log ends at seq {count} but the recorded head is seq {anchor.seq}"
            )
        if count > anchor.seq:
            return _fail(
                count, prev, anchor.seq + 1, f"entries after the recorded head seq {anchor.seq} were added"
            )
        if anchor.hash != prev:
            return _fail(count, prev, count, "hash of the last entry differs from the recorded head")
    return VerifyResult(ok=True, count=count, head=prev)


__all__ = [
    "GENESIS",
    "Anchor",
    "Entry",
    "EntryLike",
    "VerifyResult",
    "canonical_json",
    "canonical_text",
    "entry_body",
    "entry_hash",
    "make_entry",
    "verify",
]
