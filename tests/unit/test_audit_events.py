"""Typed audit events: registered kinds, versions, required fields, no personal data."""

from __future__ import annotations

import pytest

from sandbox.audit import events
from sandbox.audit.events import VERSION_KEY, build_payload, event_kind, register_kind
from sandbox.errors import InternalError


def test_foundation_kinds_are_registered_with_a_version() -> None:
    kinds = events.kinds()
    for name in ("user.created", "grant.added", "grant.revoked", "project.created", "system.migrated"):
        assert kinds[name].version >= 1
        assert kinds[name].description


def test_payload_gets_the_kind_version() -> None:
    payload = build_payload("user.created", {"user": "alice", "role": "researcher"})
    assert payload == {"user": "alice", "role": "researcher", VERSION_KEY: 1}


def test_unknown_kind_is_a_bug_with_a_hint() -> None:
    with pytest.raises(InternalError) as err:
        build_payload("nope.never", {})
    assert "register_kind" in err.value.hint


@pytest.mark.parametrize("field", ["password", "Phone", "id_number", "email", "token"])
def test_personal_or_secret_fields_are_refused_at_any_depth(field: str) -> None:
    with pytest.raises(InternalError, match="personal data"):
        build_payload("user.created", {"user": "a", "role": "bank", "extra": [{field: "x"}]})


def test_reserved_and_missing_fields_are_refused() -> None:
    with pytest.raises(InternalError, match="reserved"):
        build_payload("user.created", {"user": "a", "role": "bank", "_v": 9})
    with pytest.raises(InternalError, match="missing required"):
        build_payload("grant.added", {"project": "fin-lab"})


def test_areas_register_their_own_kinds_and_may_bump_versions() -> None:
    kind = register_kind("testarea.thing_done", 1, "A test event.", required=("thing",))
    assert event_kind("testarea.thing_done") == kind
    bumped = register_kind("testarea.thing_done", 2, "A test event, v2.", required=("thing", "by"))
    assert build_payload("testarea.thing_done", {"thing": 1, "by": "x"})[VERSION_KEY] == 2
    assert bumped.version == 2
    with pytest.raises(InternalError, match="already registered"):
        register_kind("testarea.thing_done", 1, "older")
    with pytest.raises(InternalError, match=r"area\.event"):
        register_kind("NoDots", 1, "bad name")
