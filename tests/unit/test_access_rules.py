"""Access rules on the query path, and the registry changes they rest on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from sandbox.access import registry
from sandbox.access.errors import AlreadyExists, InvalidRequest
from sandbox.access.rules import can_query, check_can_query
from sandbox.audit import store
from sandbox.control.db import session_scope
from sandbox.control.models import AuditEntry, utcnow
from sandbox.errors import (
    AccessDenied,
    AccountInactive,
    NoGrant,
    NotProjectMember,
    UnknownDataset,
)
from sandbox.policy.models import Tier


@dataclass(frozen=True)
class FakeDataset:
    id: str
    tier: Tier


@dataclass
class FakeCatalog:
    """Only what the rules read: ``dataset(id).tier``."""

    datasets: dict[str, FakeDataset] = field(
        default_factory=lambda: {
            "enterprise_tax": FakeDataset("enterprise_tax", Tier.CONDITIONAL),
            "sme_loans": FakeDataset("sme_loans", Tier.RESTRICTED),
            "transit_stations": FakeDataset("transit_stations", Tier.OPEN),
        }
    )

    def dataset(self, dataset_id: str) -> FakeDataset:
        try:
            return self.datasets[dataset_id]
        except KeyError:
            raise UnknownDataset(f"No dataset {dataset_id!r}.") from None


CATALOG = FakeCatalog()


@pytest.fixture
def engine(control_engine: Engine) -> Engine:
    with session_scope(control_engine, immediate=True) as s:
        registry.create_user(s, "admin", "admin", password="admin-pass-1", actor=None)
        registry.create_user(
            s, "alice", "researcher", password="alice-pass-1", organisation="Uni lab", actor="admin"
        )
        registry.create_user(s, "bob", "bank", password="bob-pass-12", organisation="BANK_A", actor="admin")
        registry.create_user(s, "mallory", "researcher", password="mallory-pass", actor="admin")
        registry.create_user(
            s, "carol", "steward", department="tax_bureau", password="carol-pass-1", actor="admin"
        )
        registry.create_project(s, "fin-lab", title="Inclusive finance", lead="alice", actor="admin")
        registry.add_member(s, "fin-lab", "bob", actor="admin")
        registry.add_member(s, "fin-lab", "carol", actor="admin")
        registry.grant_dataset(s, "fin-lab", "enterprise_tax", actor="admin", source="test", catalog=CATALOG)
    return control_engine


def check(engine: Engine, user: str, dataset: str, project: str = "fin-lab") -> None:
    with session_scope(engine) as s:
        check_can_query(s, user, project, dataset, CATALOG)


def allowed(engine: Engine, user: str, dataset: str, project: str = "fin-lab") -> bool:
    with session_scope(engine) as s:
        return can_query(s, user, project, dataset, CATALOG)


def test_member_with_grant_may_query(engine: Engine) -> None:
    check(engine, "alice", "enterprise_tax")
    check(engine, "bob", "enterprise_tax")
    assert allowed(engine, "alice", "enterprise_tax")


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_inactive_account_is_refused(engine: Engine, status: str) -> None:
    with session_scope(engine, immediate=True) as s:
        assert registry.set_status(s, "alice", status, actor="admin", reason="test")
    with pytest.raises(AccountInactive, match=status):
        check(engine, "alice", "enterprise_tax")
    with pytest.raises(AccountInactive):
        check(engine, "alice", "transit_stations")  # even open data
    assert not allowed(engine, "alice", "enterprise_tax")
    with session_scope(engine, immediate=True) as s:
        assert registry.set_status(s, "alice", "approved", actor="admin")  # reinstated
    check(engine, "alice", "enterprise_tax")


def test_non_member_is_refused(engine: Engine) -> None:
    with pytest.raises(NotProjectMember, match="mallory"):
        check(engine, "mallory", "enterprise_tax")
    with pytest.raises(NotProjectMember):
        check(engine, "alice", "enterprise_tax", project="no-such-project")
    assert not allowed(engine, "mallory", "transit_stations")


def test_dataset_without_grant_is_refused(engine: Engine) -> None:
    with pytest.raises(NoGrant, match="no grant for dataset 'sme_loans'"):
        check(engine, "alice", "sme_loans")
    assert not allowed(engine, "alice", "sme_loans")


def test_expired_grant_is_refused(engine: Engine) -> None:
    with session_scope(engine, immediate=True) as s:
        registry.grant_dataset(
            s,
            "fin-lab",
            "sme_loans",
            actor="admin",
            expires_at=utcnow() + timedelta(days=30),
            catalog=CATALOG,
        )
    check(engine, "alice", "sme_loans")
    later = utcnow() + timedelta(days=31)
    with session_scope(engine) as s, pytest.raises(NoGrant, match="expired"):
        check_can_query(s, "alice", "fin-lab", "sme_loans", CATALOG, now=later)
    with session_scope(engine) as s:
        assert not can_query(s, "alice", "fin-lab", "sme_loans", CATALOG, now=later)


def test_revoked_grant_is_refused(engine: Engine) -> None:
    with session_scope(engine, immediate=True) as s:
        revoked = registry.revoke_grant(s, "fin-lab", "enterprise_tax", actor="admin", reason="violation")
    assert len(revoked) == 1
    with pytest.raises(NoGrant, match="revoked"):
        check(engine, "alice", "enterprise_tax")


def test_open_dataset_needs_no_grant(engine: Engine) -> None:
    check(engine, "alice", "transit_stations")
    assert allowed(engine, "bob", "transit_stations")


def test_steward_may_not_run_dp_queries(engine: Engine) -> None:
    with pytest.raises(AccessDenied, match="steward"):
        check(engine, "carol", "enterprise_tax")


def test_unknown_dataset_and_user(engine: Engine) -> None:
    with pytest.raises(UnknownDataset):
        check(engine, "alice", "nope")
    assert not allowed(engine, "alice", "nope")
    assert not allowed(engine, "nobody", "enterprise_tax")


def test_authenticate_only_approved_accounts(engine: Engine) -> None:
    with session_scope(engine) as s:
        user = registry.authenticate(s, "alice", "alice-pass-1")
        assert user is not None and user.username == "alice"
        assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
        assert registry.authenticate(s, "alice", "wrong-password") is None
        assert registry.authenticate(s, "nobody", "alice-pass-1") is None
    with session_scope(engine, immediate=True) as s:
        registry.set_status(s, "alice", "suspended", actor="admin")
    with session_scope(engine) as s:
        assert registry.authenticate(s, "alice", "alice-pass-1") is None


def test_every_change_is_audited_without_secrets(engine: Engine) -> None:
    with session_scope(engine) as s:
        entries = s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        assert store.verify(s).ok
    kinds = [e.kind for e in entries]
    assert kinds.count("user.created") == 5
    assert kinds.count("project.created") == 1
    assert kinds.count("project.member_added") == 2
    assert kinds.count("grant.added") == 1
    for entry in entries:
        assert "pass" not in entry.data and "argon2" not in entry.data


def test_unchanged_status_and_existing_member_write_nothing(engine: Engine) -> None:
    with session_scope(engine, immediate=True) as s:
        before = store.head(s).seq
        assert not registry.set_status(s, "alice", "approved", actor="admin")
        assert not registry.add_member(s, "fin-lab", "bob", actor="admin")
        assert store.head(s).seq == before


def test_invalid_requests_are_refused(engine: Engine) -> None:
    with session_scope(engine, immediate=True) as s:
        with pytest.raises(AlreadyExists):
            registry.create_user(s, "alice", "researcher", actor="admin")
        with pytest.raises(InvalidRequest, match="department"):
            registry.create_user(s, "sam", "steward", actor="admin")
        with pytest.raises(InvalidRequest, match="social credit"):
            registry.create_user(s, "ent", "enterprise", actor="admin")
        with pytest.raises(InvalidRequest, match="username"):
            registry.create_user(s, "Bad Name", "researcher", actor="admin")
        with pytest.raises(InvalidRequest, match="role"):
            registry.create_user(s, "zed", "wizard", actor="admin")
        with pytest.raises(InvalidRequest, match="too short"):
            registry.create_user(s, "zed", "researcher", password="short", actor="admin")
        with pytest.raises(AlreadyExists):
            registry.grant_dataset(s, "fin-lab", "enterprise_tax", actor="admin")
        with pytest.raises(UnknownDataset):
            registry.grant_dataset(s, "fin-lab", "nope", actor="admin", catalog=CATALOG)
        with pytest.raises(InvalidRequest, match="past"):
            registry.grant_dataset(
                s, "fin-lab", "sme_loans", actor="admin", expires_at=utcnow() - timedelta(1)
            )
        with pytest.raises(InvalidRequest, match="leads"):
            registry.remove_member(s, "fin-lab", "alice", actor="admin")
