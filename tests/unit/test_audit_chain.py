"""The audit hash chain detects any edit, deletion, reordering or insertion."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sandbox.audit import chain
from sandbox.audit.chain import GENESIS, Anchor, Entry, canonical_json, entry_hash, make_entry, verify

json_scalars = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
payloads = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=4)
events = st.tuples(
    st.sampled_from(["user.created", "query.released", "grant.added", "export.decided"]),
    st.none() | st.sampled_from(["alice", "bob", "admin", "卡罗尔"]),
    payloads,
)


def build(evs: list[tuple[str, str | None, dict[str, Any]]]) -> list[Entry]:
    out: list[Entry] = []
    prev = GENESIS
    for i, (kind, actor, data) in enumerate(evs, start=1):
        entry = make_entry(prev, i, f"2025-01-01T00:00:{i % 60:02d}.000000Z", kind, actor, data)
        out.append(entry)
        prev = entry.hash
    return out


chains = st.lists(events, min_size=1, max_size=12).map(build)


def anchor_of(entries: list[Entry]) -> Anchor:
    return Anchor(entries[-1].seq, entries[-1].hash) if entries else Anchor(0, GENESIS)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": "税务", "c": [1, {"z": None, "y": True}]}) == (
        '{"a":"税务","b":1,"c":[1,{"y":true,"z":null}]}'.encode()
    )


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_entry_hash_is_sha256_of_prev_hash_and_canonical_body() -> None:
    import hashlib

    body = {"seq": 1, "ts": "t", "kind": "k.x", "actor": None, "data": {"a": 1}}
    expected = hashlib.sha256(GENESIS.encode() + canonical_json(body)).hexdigest()
    assert entry_hash(GENESIS, body) == expected


def test_empty_chain_verifies_with_genesis_head() -> None:
    result = verify([])
    assert (result.ok, result.count, result.head) == (True, 0, GENESIS)
    assert str(result) == f"ok 0 entries, head {GENESIS}"


@given(chains)
def test_untouched_chain_verifies(entries: list[Entry]) -> None:
    result = verify(entries, anchor=anchor_of(entries))
    assert result.ok, result.reason
    assert result.count == len(entries)
    assert result.head == entries[-1].hash
    assert result.first_bad is None


FIELDS = ["seq", "ts", "kind", "actor", "data", "prev_hash", "hash"]


def _different(field: str, old: Any, draw: Any) -> Any:
    if field == "seq":
        new = draw(st.integers(-3, 40))
    elif field == "actor":
        new = draw(st.none() | st.text(max_size=6))
    elif field == "data":
        choice = draw(st.integers(0, 2))
        if choice == 0:  # a different payload, canonically encoded
            new = chain.canonical_text(draw(payloads))
        elif choice == 1:  # same content, non-canonical bytes
            new = json.dumps(json.loads(old), indent=1, sort_keys=False)
        else:  # one byte flipped
            i = draw(st.integers(0, len(old) - 1))
            new = old[:i] + chr((ord(old[i]) + 1) % 0x7F or 1) + old[i + 1 :]
    elif field in ("prev_hash", "hash"):
        new = draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
    else:
        new = draw(st.text(max_size=24))
    assume(new != old)
    return new


@settings(max_examples=200)
@given(chains, st.data())
def test_any_single_field_edit_is_detected(entries: list[Entry], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(entries) - 1))
    field = data.draw(st.sampled_from(FIELDS))
    old = getattr(entries[i], field)
    new = _different(field, old, data.draw)
    tampered = [*entries]
    tampered[i] = dataclasses.replace(entries[i], **{field: new})
    result = verify(tampered)
    assert not result.ok
    assert result.first_bad == i + 1
    assert result.count == i
    assert result.reason


@given(chains, st.data())
def test_any_deletion_is_detected(entries: list[Entry], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(entries) - 1))
    tampered = entries[:i] + entries[i + 1 :]
    result = verify(tampered, anchor=anchor_of(entries))
    assert not result.ok
    assert result.first_bad == i + 1
    if i < len(entries) - 1:  # a gap in the middle is found without any anchor
        assert not verify(tampered).ok


@given(chains.filter(lambda e: len(e) >= 2), st.data())
def test_any_reordering_is_detected(entries: list[Entry], data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(len(entries))))
    assume(list(order) != list(range(len(entries))))
    tampered = [entries[j] for j in order]
    result = verify(tampered)
    assert not result.ok
    assert result.first_bad == next(k for k, j in enumerate(order) if j != k) + 1


@given(chains, st.data())
def test_any_insertion_is_detected(entries: list[Entry], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(entries)))
    # The forger builds a well-formed entry linked to its predecessor.
    prev = entries[i - 1].hash if i else GENESIS
    kind, actor, payload = data.draw(events)
    forged = make_entry(prev, i + 1, "2025-02-02T00:00:00.000000Z", kind, actor, payload)
    tampered = [*entries[:i], forged, *entries[i:]]
    result = verify(tampered, anchor=anchor_of(entries))
    assert not result.ok
    if i < len(entries):  # in the middle: found without any anchor
        plain = verify(tampered)
        assert not plain.ok
        assert plain.first_bad == i + 2


def test_reasons_name_what_broke() -> None:
    entries = build([("user.created", "admin", {"user": f"u{i}"}) for i in range(4)])
    edited = [*entries]
    edited[1] = dataclasses.replace(entries[1], actor="mallory")
    assert "hash mismatch" in (verify(edited).reason or "")
    gap = entries[:2] + entries[3:]
    result = verify(gap)
    assert (result.first_bad, result.count, result.head) == (3, 2, entries[1].hash)
    assert "entry 3 is missing" in (result.reason or "")
    truncated = verify(entries[:3], anchor=anchor_of(entries))
    assert truncated.first_bad == 4 and "recorded head is seq 4" in (truncated.reason or "")


def test_entries_round_trip_through_json_lines() -> None:
    entries = build([("grant.added", "admin", {"dataset": "enterprise_tax", "n": 1})])
    lines = [json.dumps(e.to_dict(), ensure_ascii=False) for e in entries]
    back = [Entry.from_dict(json.loads(line)) for line in lines]
    assert verify(back).ok
