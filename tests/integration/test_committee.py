"""The expert-committee workbench (SR-37) through the service functions, and its gate on applications.

A module-scoped sandbox (``test_governance_world``: ``sandbox init --demo`` seeds the experts
kai, lin and mei); each test makes its own project through ``sandbox.access.registry``.
``sme_loans`` is restricted (非开放) and provided by the pilot bank, whose stewards pia and pete
are added here. One flow also runs on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update
from test_governance_world import APPLICATION, World, build_world

from sandbox.access import registry
from sandbox.access.demo import seed_demo
from sandbox.audit import store as audit_store
from sandbox.config import REPO_ROOT
from sandbox.control.db import make_engine, migrate, session_scope
from sandbox.control.models import AuditEntry, utcnow
from sandbox.errors import AccessDenied, InvalidRequest, InvalidTransition, NotFound
from sandbox.governance import applications, committee
from sandbox.governance.committee_models import CommitteeItem, CommitteeOpinionMember
from sandbox.policy.loader import load_policies

_names = itertools.count(1)
RESTRICTED = "sme_loans"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("committee"))
    with session_scope(w.ctx.control_engine, immediate=True) as s:
        for name in ("pia", "pete"):
            registry.create_user(s, name, "steward", department="pilot_bank", actor="admin")
    yield w
    w.ctx.close()


def new_project(ctx: Any) -> tuple[str, str]:
    n = next(_names)
    lead, project = f"clead{n}", f"clab-{n}"
    with session_scope(ctx.control_engine, immediate=True) as s:
        registry.create_user(s, lead, "researcher", organisation="Test institute", actor="admin")
        registry.create_project(s, project, title=f"Lab {n}", lead=lead, actor="admin")
    return project, lead


def apply(ctx: Any, datasets: list[str]) -> tuple[Any, str]:
    project, lead = new_project(ctx)
    record = applications.submit(ctx, applicant=lead, project=project, datasets=datasets, **APPLICATION)
    return record, lead


def items_of(ctx: Any, application_id: int) -> list[committee.ItemRecord]:
    return [i for i in committee.list_items(ctx, user="erin") if i.application_id == application_id]


def audit(ctx: Any) -> list[AuditEntry]:
    with session_scope(ctx.control_engine) as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def opinion(
    ctx: Any, item_id: int, value: str = "approve", members: tuple[str, ...] = ("kai", "lin"), **kw: Any
) -> Any:
    kw.setdefault("reason", "Scenario and measures are proportionate; DP aggregates only.")
    return committee.record_opinion(
        ctx, actor=kw.pop("actor", members[0]), item_id=item_id, opinion=value, members=list(members), **kw
    )


# --------------------------------------------------------------------------- referral on submission


def test_a_restricted_dataset_is_referred_to_the_committee_on_submission(world: World) -> None:
    project, lead = new_project(world.ctx)
    before = audit(world.ctx)[-1].seq
    app = applications.submit(
        world.ctx, applicant=lead, project=project, datasets=["enterprise_tax", RESTRICTED], **APPLICATION
    )
    items = items_of(world.ctx, app.id)
    assert [(i.kind, i.dataset, i.status, i.automatic, i.raised_by) for i in items] == [
        ("high_risk_application", RESTRICTED, "open", True, lead)
    ]
    assert items[0].departments == ["pilot_bank"]
    new = [e for e in audit(world.ctx) if e.seq > before]
    assert [e.kind for e in new] == ["application.submitted", "committee.raised"]  # one transaction
    raised = new[1].payload()
    assert raised["item_id"] == items[0].id and raised["automatic"] is True
    assert raised["description_sha256"] and "description" not in raised  # free text pinned, not copied
    # conditional only: nothing to refer
    other, _ = apply(world.ctx, ["enterprise_tax"])
    assert items_of(world.ctx, other.id) == []
    assert [i.committee for i in other.items] == [None]


def test_approval_waits_for_a_favourable_opinion_and_carries_its_conditions(world: World) -> None:
    app, _ = apply(world.ctx, [RESTRICTED])
    (item,) = items_of(world.ctx, app.id)
    with pytest.raises(InvalidTransition, match="awaits the expert committee"):
        applications.decide(world.ctx, steward="pia", application_id=app.id, approve=True, reason="fine")
    waiting = applications.show(world.ctx, user=app.applicant, application_id=app.id)
    assert waiting.status == "submitted"
    # the applicant sees where the dataset stands, not the committee's deliberation
    assert waiting.items[0].committee == {
        "item_id": item.id,
        "status": "open",
        "opinion": None,
        "conditions": None,
        "decided_on": None,
    }

    done = opinion(
        world.ctx,
        item.id,
        "approve_with_conditions",
        conditions="District-level aggregates only; no export of loan amounts below 100 firms.",
        decided_on=date.today() - timedelta(days=1),
    )
    assert done.status == "opinion_recorded"
    assert done.opinion is not None and done.opinion.members == ["kai", "lin"]
    assert done.opinion.decided_on == date.today() - timedelta(days=1)

    pia = applications.decide(world.ctx, steward="pia", application_id=app.id, approve=True, reason="ok")
    assert pia.status == "approved" and pia.agreement is not None
    referral = applications.show(world.ctx, user=app.applicant, application_id=app.id).items[0].committee
    assert referral is not None and referral["status"] == "opinion_recorded"
    assert referral["opinion"] == "approve_with_conditions" and "District-level" in referral["conditions"]
    assert referral["decided_on"] == (date.today() - timedelta(days=1)).isoformat()
    assert set(referral) == {"item_id", "status", "opinion", "conditions", "decided_on"}  # no members
    decision = pia.items[0].decisions["pilot_bank"]
    assert decision["committee"]["item_id"] == item.id
    assert decision["committee"]["opinion"] == "approve_with_conditions"
    assert "District-level" in decision["committee"]["conditions"]
    decided = [e for e in audit(world.ctx) if e.kind == "application.decided"][-1].payload()
    assert decided["committee_items"] == {RESTRICTED: item.id}


@pytest.mark.parametrize("value", ["reject", "needs_more_info"])
def test_an_unfavourable_opinion_blocks_approval_but_not_refusal(world: World, value: str) -> None:
    app, _ = apply(world.ctx, [RESTRICTED])
    (item,) = items_of(world.ctx, app.id)
    opinion(world.ctx, item.id, value, members=("lin", "mei"))
    with pytest.raises(InvalidTransition, match=f"is {value}"):
        applications.decide(world.ctx, steward="pia", application_id=app.id, approve=True, reason="fine")
    refused = applications.decide(
        world.ctx, steward="pia", application_id=app.id, approve=False, reason="As the committee advised."
    )
    assert refused.status == "refused"


def test_a_withdrawn_referral_neither_takes_an_opinion_nor_opens_the_gate(world: World) -> None:
    app, lead = apply(world.ctx, [RESTRICTED])
    (item,) = items_of(world.ctx, app.id)
    with pytest.raises(AccessDenied, match="raised"):
        committee.withdraw(world.ctx, actor="kai", item_id=item.id, reason="not mine")
    gone = committee.withdraw(
        world.ctx, actor=lead, item_id=item.id, reason="Will resubmit with more detail."
    )
    assert (gone.status, gone.withdrawn_by) == ("withdrawn", lead)
    with pytest.raises(InvalidTransition, match="withdrawn"):
        opinion(world.ctx, item.id)
    with pytest.raises(InvalidTransition, match="withdrawn"):
        committee.withdraw(world.ctx, actor="admin", item_id=item.id, reason="again")
    with pytest.raises(InvalidTransition, match="not referred"):
        applications.decide(world.ctx, steward="pia", application_id=app.id, approve=True, reason="fine")
    # the operator refers it again; the new item's opinion opens the gate
    again = committee.raise_item(
        world.ctx,
        actor="admin",
        kind="high_risk_application",
        title="Referred again",
        description="The applicant added the data-protection impact assessment.",
        dataset=RESTRICTED,
        application_id=app.id,
    )
    opinion(world.ctx, again.id)
    assert (
        applications.decide(world.ctx, steward="pia", application_id=app.id, approve=True, reason="ok").status
        == "approved"
    )


def test_a_steward_may_refer_a_conditional_dataset_and_then_it_waits_too(world: World) -> None:
    app, _ = apply(world.ctx, ["enterprise_tax"])
    with pytest.raises(AccessDenied, match="health_commission"):  # dave: not his department's data
        committee.raise_item(
            world.ctx,
            actor="dave",
            kind="high_risk_application",
            title="x",
            description="Not my department's data at all.",
            dataset="enterprise_tax",
            application_id=app.id,
        )
    item = committee.raise_item(
        world.ctx,
        actor="carol",
        kind="high_risk_application",
        title="Firm-level tax grades for a novel scoring model",
        description="The scenario profiles single enterprises; please evaluate the re-identification risk.",
        dataset="enterprise_tax",
        application_id=app.id,
    )
    with pytest.raises(InvalidTransition, match="still open"):
        committee.raise_item(
            world.ctx,
            actor="admin",
            kind="high_risk_application",
            title="dup",
            description="The same matter a second time.",
            dataset="enterprise_tax",
            application_id=app.id,
        )
    with pytest.raises(InvalidTransition, match="awaits"):
        applications.decide(world.ctx, steward="carol", application_id=app.id, approve=True, reason="fine")
    opinion(world.ctx, item.id, members=("mei", "kai"), actor="mei")
    assert (
        applications.decide(
            world.ctx, steward="carol", application_id=app.id, approve=True, reason="ok"
        ).status
        == "approved"
    )


# --------------------------------------------------------------------------- who may


def test_nobody_but_members_records_an_opinion_and_nothing_changes(world: World) -> None:
    app, lead = apply(world.ctx, [RESTRICTED])
    (item,) = items_of(world.ctx, app.id)
    before = len(audit(world.ctx))
    for who in ("pia", "admin", "erin", lead):
        with pytest.raises(AccessDenied, match="Only members of the expert committee"):
            opinion(world.ctx, item.id, members=(who, "kai", "lin"), actor=who)
    with pytest.raises(InvalidRequest, match="at least 2"):
        opinion(world.ctx, item.id, members=("kai",))
    with pytest.raises(InvalidRequest, match="Not active members"):
        opinion(world.ctx, item.id, members=("kai", "pia"))
    with pytest.raises(InvalidRequest, match="No account"):
        opinion(world.ctx, item.id, members=("kai", "nobody"))
    with pytest.raises(InvalidRequest, match="future"):
        opinion(world.ctx, item.id, decided_on=date.today() + timedelta(days=2))
    with pytest.raises(InvalidRequest, match="states the conditions"):
        opinion(world.ctx, item.id, "approve_with_conditions")
    with pytest.raises(InvalidRequest, match="Unknown opinion"):
        opinion(world.ctx, item.id, "maybe")
    assert len(audit(world.ctx)) == before
    assert committee.show(world.ctx, user="kai", item_id=item.id).status == "open"
    opinion(world.ctx, item.id)
    with pytest.raises(InvalidTransition, match="opinion_recorded"):
        opinion(world.ctx, item.id, members=("lin", "mei"))


def test_the_raiser_of_an_item_is_not_the_only_member(world: World) -> None:
    item = committee.raise_item(
        world.ctx,
        actor="kai",
        kind="classification_dispute",
        title="penalties graded 一般数据 level 2?",
        description="Court penalty records may reach level 3 once joined with the registry.",
        dataset="penalties",
    )
    with pytest.raises(AccessDenied, match="raised"):
        opinion(world.ctx, item.id, members=("kai", "lin", "mei"), actor="kai")
    with pytest.raises(InvalidRequest, match="besides the one who raised"):
        opinion(world.ctx, item.id, members=("lin", "kai"), actor="lin")
    done = opinion(world.ctx, item.id, "reject", members=("lin", "kai", "mei"), actor="lin")
    assert done.opinion is not None and done.opinion.members == ["kai", "lin", "mei"]
    with session_scope(world.ctx.control_engine) as s:
        rows = s.scalars(select(CommitteeOpinionMember)).all()
        assert len([r for r in rows if r.opinion_id]) >= 3


def test_raising_checks_kind_subject_and_role(world: World) -> None:
    def raise_(actor: str, kind: str, **kw: Any) -> Any:
        return committee.raise_item(
            world.ctx, actor=actor, kind=kind, title="t", description="A matter for the committee.", **kw
        )

    with pytest.raises(InvalidRequest, match="restricted"):
        raise_("carol", "declassification_proposal", dataset="enterprise_tax")
    with pytest.raises(AccessDenied, match="may not raise"):
        raise_("admin", "declassification_proposal", dataset=RESTRICTED)
    with pytest.raises(AccessDenied, match="may not raise"):
        raise_("alice", "classification_dispute", dataset="enterprise_tax")
    with pytest.raises(InvalidRequest, match="Unknown committee queue"):
        raise_("admin", "gossip", dataset="enterprise_tax")
    with pytest.raises(NotFound):
        raise_("admin", "scenario_evaluation", application_id=999_999)
    proposal = raise_("pia", "declassification_proposal", dataset=RESTRICTED)
    assert proposal.departments == ["pilot_bank"]
    opinion(
        world.ctx,
        proposal.id,
        "approve_with_conditions",
        conditions="After k-anonymity 10 on district x sector.",
    )
    with session_scope(world.ctx.control_engine) as s:
        found = committee.latest_opinion(s, committee.ItemKind.DECLASSIFICATION_PROPOSAL, dataset=RESTRICTED)
    assert found is not None and found.favourable


def test_who_sees_which_items(world: World) -> None:
    app, lead = apply(world.ctx, [RESTRICTED])
    (item,) = items_of(world.ctx, app.id)
    for user in ("kai", "erin", "admin", "pia", lead):
        assert item.id in {i.id for i in committee.list_items(world.ctx, user=user)}, user
        assert committee.show(world.ctx, user=user, item_id=item.id).application is not None
    for user in ("dave", "bob", "ivy"):
        assert item.id not in {i.id for i in committee.list_items(world.ctx, user=user)}, user
        with pytest.raises(AccessDenied):
            committee.show(world.ctx, user=user, item_id=item.id)
    queues = {q.kind: q for q in committee.queues(world.ctx, user="kai")}
    assert set(queues) == {
        "classification_dispute",
        "declassification_proposal",
        "high_risk_application",
        "scenario_evaluation",
    }
    open_items = committee.list_items(world.ctx, user="kai", kind="high_risk_application", status="open")
    assert queues["high_risk_application"].open == len(open_items) >= 1
    assert queues["high_risk_application"].open <= len(
        committee.list_items(world.ctx, user="kai", kind="high_risk_application")
    )


# --------------------------------------------------------------------------- audit


def test_every_step_is_in_the_chain_and_the_chain_verifies_and_detects_edits(world: World) -> None:
    app, _lead = apply(world.ctx, [RESTRICTED])
    (item,) = items_of(world.ctx, app.id)
    opinion(world.ctx, item.id, members=("kai", "lin", "mei"), actor="mei")
    full = committee.show(world.ctx, user="erin", item_id=item.id)
    assert [h["kind"] for h in full.history] == ["committee.raised", "committee.opinion_recorded"]
    entry = next(e for e in audit(world.ctx) if e.seq == full.history[-1]["seq"])
    data = entry.payload()
    assert entry.actor == "mei"
    assert data["members"] == ["kai", "lin", "mei"] and data["opinion"] == "approve"
    assert data["reason_sha256"] and "reason" not in data
    with session_scope(world.ctx.control_engine) as s:
        assert audit_store.verify(s).ok
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        s.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == entry.seq)
            .values(data=entry.data.replace("mei", "kai", 1))
        )
    with session_scope(world.ctx.control_engine) as s:
        result = audit_store.verify(s)
    assert not result.ok and result.first_bad == entry.seq
    with session_scope(world.ctx.control_engine, immediate=True) as s:  # put it back for the other tests
        s.execute(update(AuditEntry).where(AuditEntry.seq == entry.seq).values(data=entry.data))
    with session_scope(world.ctx.control_engine) as s:
        assert audit_store.verify(s).ok


def test_a_failed_step_leaves_neither_row_nor_entry(world: World) -> None:
    app, _ = apply(world.ctx, [RESTRICTED])
    (item,) = items_of(world.ctx, app.id)
    before = len(audit(world.ctx))
    with pytest.raises(InvalidRequest):
        opinion(world.ctx, item.id, members=("kai",))
    with session_scope(world.ctx.control_engine) as s:
        row = s.get(CommitteeItem, item.id)
        assert row is not None and row.status == "open"
    assert len(audit(world.ctx)) == before


# --------------------------------------------------------------------------- PostgreSQL


def test_the_referral_and_the_gate_on_postgres(pg_database_url: str) -> None:
    migrate(pg_database_url)
    engine = make_engine(pg_database_url)
    try:
        ctx = SimpleNamespace(catalog=load_policies(REPO_ROOT / "policies"), control_engine=engine)
        with session_scope(engine, immediate=True) as s:
            seed_demo(s, ctx.catalog, password="committee-pg-password")
            registry.create_user(s, "pia", "steward", department="pilot_bank", actor="admin")
        app, _lead = apply(ctx, [RESTRICTED])
        (item,) = items_of(ctx, app.id)
        with pytest.raises(InvalidTransition, match="awaits"):
            applications.decide(ctx, steward="pia", application_id=app.id, approve=True, reason="fine")
        with pytest.raises(AccessDenied):
            opinion(ctx, item.id, members=("pia", "kai", "lin"), actor="pia")
        opinion(ctx, item.id, now=utcnow())
        assert (
            applications.decide(ctx, steward="pia", application_id=app.id, approve=True, reason="ok").status
            == "approved"
        )
        with session_scope(engine) as s:
            assert audit_store.verify(s).ok
    finally:
        engine.dispose()


def test_the_quorum_comes_from_the_platform_policy(world: World) -> None:
    assert world.ctx.catalog.platform.committee.quorum == 2  # policies/platform.yaml
    item = committee.raise_item(
        world.ctx,
        actor="kai",
        kind="scenario_evaluation",
        title="Bank look-ups for a micro-loan scenario",
        description="Risk evaluation of the look-up scenario.",
        dataset="penalties",
    )
    catalog = world.ctx.catalog

    def with_quorum(n: int) -> Any:
        committee_rules = catalog.platform.committee.model_copy(update={"quorum": n})
        return dataclasses.replace(
            catalog, platform=catalog.platform.model_copy(update={"committee": committee_rules})
        )

    try:
        world.ctx.catalog = with_quorum(3)
        with pytest.raises(InvalidRequest, match="at least 3 members"):
            opinion(world.ctx, item.id, members=("lin", "mei"), actor="lin")
        assert committee.actions_for(world.ctx, user="lin", item_id=item.id).quorum == 3
        world.ctx.catalog = with_quorum(1)
        done = opinion(world.ctx, item.id, members=("lin",), actor="lin")
        assert done.opinion is not None and done.opinion.members == ["lin"]
    finally:
        world.ctx.catalog = catalog
