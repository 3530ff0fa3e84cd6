"""Enterprise authorisations and the bank look-up (SR-16) through the service functions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import MetaData, func, select
from test_governance_world import World, build_world

from sandbox.access.errors import InvalidRequest
from sandbox.catalog.warehouse import RANK_COLUMN, dataset_table
from sandbox.control.db import session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import AccessDenied, ConsentRequired, InvalidTransition
from sandbox.governance import consent
from sandbox.governance.demo import DEMO_ENTERPRISE, demo_enterprise_uscc, seed_demo_enterprise

DATASETS = ["enterprise_tax", "social_insurance"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("gov-consent"))
    yield w
    w.ctx.close()


def last_entries(world: World, n: int) -> list[AuditEntry]:
    with session_scope(world.ctx.control_engine) as s:
        return list(reversed(s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(n)).all()))


def test_the_demo_enterprise_is_a_synthetic_enterprise_with_tax_rows(world: World) -> None:
    assert demo_enterprise_uscc(world.ctx.catalog, world.ctx.warehouse_engine) == world.uscc
    again = seed_demo_enterprise(world.ctx, world.ctx.warehouse_engine)
    assert again.created == [] and (again.username, again.uscc) == (DEMO_ENTERPRISE, world.uscc)
    registry = dataset_table(world.ctx.catalog.dataset("enterprise_registry"), MetaData())
    with world.ctx.warehouse_engine.connect() as conn:
        assert conn.execute(select(func.count()).where(registry.c.uscc == world.uscc)).scalar_one() == 1


def test_only_the_enterprise_itself_authorises(world: World) -> None:
    for other in ("admin", "bob", "carol", "erin", "alice"):
        with pytest.raises(AccessDenied):
            consent.grant(
                world.ctx, actor=other, bank="BANK_A", datasets=DATASETS, days=30, enterprise_uscc=world.uscc
            )
    with pytest.raises(AccessDenied, match="own enterprise record"):
        consent.grant(
            world.ctx,
            actor="ent",
            bank="BANK_A",
            datasets=DATASETS,
            days=30,
            enterprise_uscc=world.other_uscc,
        )
    with pytest.raises(InvalidRequest, match="bank organisation"):
        consent.grant(world.ctx, actor="ent", bank="NO_SUCH_BANK", datasets=DATASETS, days=30)
    with pytest.raises(InvalidRequest, match="no 'uscc' column"):
        consent.grant(world.ctx, actor="ent", bank="BANK_A", datasets=["sme_loans"], days=30)
    with pytest.raises(InvalidRequest, match="days"):
        consent.grant(world.ctx, actor="ent", bank="BANK_A", datasets=DATASETS, days=0)


def test_lookup_reads_that_enterprise_only_until_revoked(world: World) -> None:
    with pytest.raises(ConsentRequired, match="not recorded"):
        consent.lookup(world.ctx, user="bob", dataset="enterprise_tax", uscc=world.uscc)
    record = consent.grant(world.ctx, actor="ent", bank="BANK_A", datasets=DATASETS, days=30)
    granted = last_entries(world, 1)[0]
    assert granted.kind == "consent.granted" and record.audit_hash == granted.hash
    assert record.status == "active" and record.uscc == world.uscc

    result = consent.lookup(world.ctx, user="bob", dataset="enterprise_tax", uscc=world.uscc.lower())
    assert result.consent_id == record.id and RANK_COLUMN not in result.columns
    uscc_at = result.columns.index("uscc")
    assert result.rows and {row[uscc_at] for row in result.rows} == {world.uscc}
    assert len(result.rows) == world.rows_of("enterprise_tax", world.uscc)
    used = last_entries(world, 1)[0]
    assert used.kind == "consent.used" and used.actor == "bob"
    assert used.payload()["enterprise"] == "ent" and used.payload()["rows"] == len(result.rows)
    assert world.uscc not in used.data  # the chain names the enterprise's account, not its code

    # Never another enterprise, never another bank, never another dataset, never another role.
    with pytest.raises(ConsentRequired):
        consent.lookup(world.ctx, user="bob", dataset="enterprise_tax", uscc=world.other_uscc)
    with pytest.raises(ConsentRequired):
        consent.lookup(world.ctx, user="bea", dataset="enterprise_tax", uscc=world.uscc)
    with pytest.raises(ConsentRequired):
        consent.lookup(world.ctx, user="bob", dataset="penalties", uscc=world.uscc)
    with pytest.raises(AccessDenied, match="row-targeted"):
        consent.lookup(world.ctx, user="alice", dataset="enterprise_tax", uscc=world.uscc)
    with pytest.raises(InvalidRequest, match="18 characters"):
        consent.lookup(world.ctx, user="bob", dataset="enterprise_tax", uscc="' OR 1=1 --")

    # Never after expiry.
    later = record.expires_at + timedelta(seconds=1)
    with pytest.raises(ConsentRequired, match="expired"):
        consent.lookup(world.ctx, user="bob", dataset="enterprise_tax", uscc=world.uscc, now=later)

    # Revocation: by the enterprise only; stops look-ups at once.
    with pytest.raises(AccessDenied):
        consent.revoke(world.ctx, actor="bob", consent_id=record.id)
    revoked = consent.revoke(world.ctx, actor="ent", consent_id=record.id, reason="Loan decided.")
    assert revoked.status == "revoked"
    with pytest.raises(ConsentRequired, match="revoked"):
        consent.lookup(world.ctx, user="bob", dataset="social_insurance", uscc=world.uscc)
    with pytest.raises(InvalidTransition):
        consent.revoke(world.ctx, actor="ent", consent_id=record.id)


def test_the_enterprise_sees_every_lookup_and_refusal(world: World) -> None:
    log = consent.consent_log(world.ctx, user="ent")
    kinds = [e.kind for e in log]
    assert "consent.granted" in kinds and "consent.used" in kinds and "consent.revoked" in kinds
    refused = [e for e in log if e.kind == "lookup.refused"]
    assert refused and all(e.data["enterprise"] == "ent" for e in refused)
    assert {e.actor for e in log if e.kind == "consent.used"} == {"bob"}
    # Other enterprises' look-ups are not in it; others see it only as admin or auditor.
    assert all(e.data.get("enterprise") == "ent" for e in log)
    assert consent.consent_log(world.ctx, user="erin", enterprise="ent") == log
    with pytest.raises(AccessDenied):
        consent.consent_log(world.ctx, user="bob", enterprise="ent")


def test_who_sees_which_authorisations(world: World) -> None:
    mine = consent.list_consents(world.ctx, user="ent")
    assert mine and all(c.enterprise == "ent" for c in mine)
    assert {c.bank for c in consent.list_consents(world.ctx, user="bob")} <= {"BANK_A"}
    assert consent.list_consents(world.ctx, user="bea") == [] or all(
        c.bank == "BANK_B" for c in consent.list_consents(world.ctx, user="bea")
    )
    assert len(consent.list_consents(world.ctx, user="admin")) >= len(mine)
    with pytest.raises(AccessDenied):
        consent.list_consents(world.ctx, user="alice")
