"""Applications, decisions and data-use agreements through the service functions (SR-11…SR-13).

A module-scoped sandbox (``test_governance_world``); each test makes its own project and
accounts through ``sandbox.access.registry`` so the tests do not depend on each other.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from test_governance_world import APPLICATION, World, build_world

from sandbox.access import registry
from sandbox.access.errors import InvalidRequest
from sandbox.access.rules import check_can_query
from sandbox.audit import store as audit_store
from sandbox.control.db import session_scope
from sandbox.control.models import AuditEntry, utcnow
from sandbox.errors import AccessDenied, InvalidTransition, NoGrant, UnknownDataset
from sandbox.governance import agreements, applications, usage_reports
from sandbox.services.queries import run_query

_names = itertools.count(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("gov-apps"))
    yield w
    w.ctx.close()


def housing_steward(world: World) -> str:
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        if registry.find_user(s, "hal") is None:
            registry.create_user(s, "hal", "steward", department="housing_fund", actor="admin")
    return "hal"


def new_project(world: World, *, members: tuple[str, ...] = ()) -> tuple[str, str]:
    """A fresh project led by a fresh researcher; returns (project, lead)."""
    n = next(_names)
    lead, project = f"lead{n}", f"lab-{n}"
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        registry.create_user(s, lead, "researcher", organisation="Test institute", actor="admin")
        registry.create_project(s, project, title=f"Lab {n}", lead=lead, actor="admin")
        for member in members:
            registry.add_member(s, project, member, actor=lead)
    return project, lead


def submit(world: World, project: str, lead: str, datasets: list[str], **overrides: Any) -> Any:
    fields = {**APPLICATION, **overrides}
    return applications.submit(world.ctx, applicant=lead, project=project, datasets=datasets, **fields)


def can_query(world: World, user: str, project: str, dataset: str, **kw: Any) -> None:
    with session_scope(world.ctx.control_engine) as s:
        check_can_query(s, user, project, dataset, world.ctx.catalog, **kw)


def kinds(world: World) -> list[str]:
    with session_scope(world.ctx.control_engine) as s:
        return list(s.scalars(select(AuditEntry.kind).order_by(AuditEntry.seq)))


# --------------------------------------------------------------------------- SR-11


def test_conditions_are_published_for_every_dataset_that_needs_an_application(world: World) -> None:
    published = {c.dataset: c for c in applications.published_conditions(world.ctx.catalog)}
    catalog = world.ctx.catalog
    assert set(published) == {d for d in catalog.datasets if catalog.tier_rules(d).needs_grant}
    tax = published["enterprise_tax"]
    assert tax.conditions == catalog.dataset("enterprise_tax").conditions
    assert tax.providers == ["tax_bureau"]
    assert Decimal(tax.budgets["per_project"]) == catalog.budgets("enterprise_tax").per_project
    assert "enterprise_registry" not in published  # open data


# --------------------------------------------------------------------------- submit


def test_only_the_lead_applies_with_a_signed_undertaking(world: World) -> None:
    project, lead = new_project(world, members=("hugo",))
    with pytest.raises(AccessDenied, match="lead"):
        submit(world, project, "hugo", ["enterprise_tax"])
    with pytest.raises(AccessDenied, match="Apply"):
        submit(world, project, "carol", ["enterprise_tax"])  # a steward never applies (§4)
    with pytest.raises(InvalidRequest, match="undertaking"):
        submit(world, project, lead, ["enterprise_tax"], undertaking=False)
    with pytest.raises(InvalidRequest, match="open data"):
        submit(world, project, lead, ["enterprise_registry"])
    with pytest.raises(UnknownDataset):
        submit(world, project, lead, ["no_such_dataset"])
    with pytest.raises(InvalidRequest, match="duration"):
        submit(world, project, lead, ["enterprise_tax"], duration_days=0)
    with pytest.raises(InvalidRequest, match="team member"):
        submit(world, project, lead, ["enterprise_tax"], members=["carol"])
    record = submit(world, project, lead, ["enterprise_tax"], columns={"enterprise_tax": ["credit_grade"]})
    assert record.status == "submitted"
    assert [(i.dataset, i.departments, i.columns, i.status) for i in record.items] == [
        ("enterprise_tax", ["tax_bureau"], ["credit_grade"], "pending")
    ]


# --------------------------------------------------------------------------- decide


def test_a_steward_decides_only_for_their_own_department(world: World) -> None:
    project, lead = new_project(world)
    app = submit(world, project, lead, ["enterprise_tax"])
    with pytest.raises(AccessDenied, match="department 'health_commission'"):
        applications.decide(world.ctx, steward="dave", application_id=app.id, approve=True, reason="ok")
    with pytest.raises(AccessDenied, match="countersign"):
        applications.decide(world.ctx, steward="admin", application_id=app.id, approve=True, reason="ok")
    with pytest.raises(AccessDenied, match="only view"):
        applications.decide(world.ctx, steward="erin", application_id=app.id, approve=True, reason="ok")
    with pytest.raises(InvalidRequest, match="reason"):
        applications.decide(world.ctx, steward="carol", application_id=app.id, approve=True, reason="  ")
    assert applications.show(world.ctx, user=lead, application_id=app.id).status == "submitted"


def test_the_requester_never_decides(world: World) -> None:
    project, lead = new_project(world)
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        registry.create_user(s, "stewie", "steward", department="tax_bureau", actor="admin")
        registry.add_member(s, project, "stewie", actor=lead)  # a steward inside the applying project
    app = submit(world, project, lead, ["enterprise_tax"])
    with pytest.raises(AccessDenied, match="separation of duties"):
        applications.decide(world.ctx, steward="stewie", application_id=app.id, approve=True, reason="mine")


def test_approval_signs_an_agreement_and_grants_that_expire_with_it(world: World) -> None:
    project, lead = new_project(world, members=("hugo",))
    with pytest.raises(NoGrant):
        can_query(world, lead, project, "enterprise_tax")
    app = submit(world, project, lead, ["enterprise_tax", "social_insurance"], members=["ivy"])
    after_tax = applications.decide(
        world.ctx,
        steward="carol",
        application_id=app.id,
        approve=True,
        reason="Scenario fits the conditions.",
    )
    assert after_tax.status == "submitted" and after_tax.agreement is None  # social_insurance still pending
    with pytest.raises(NoGrant):
        can_query(world, lead, project, "enterprise_tax")
    applications.decide(
        world.ctx, steward="sam", application_id=app.id, approve=True, reason="Measures are adequate."
    )
    decided = applications.decide(
        world.ctx, steward=housing_steward(world), application_id=app.id, approve=True, reason="Agreed."
    )
    assert decided.status == "approved"
    agreement = decided.agreement
    assert agreement is not None and agreement.status == "active" and agreement.version == 1
    assert agreement.term_end - agreement.term_start == timedelta(days=30)
    doc = agreement.document
    assert doc["scenario"] == APPLICATION["scenario"] and doc["purpose"] == APPLICATION["purpose"]
    assert {p["department"] for p in doc["parties"]["providers"]} == {
        "tax_bureau",
        "hr_social_security",
        "housing_fund",
    }
    assert doc["parties"]["user"]["members"] == sorted([lead, "hugo", "ivy"])
    caps = world.ctx.catalog.budgets("enterprise_tax")
    assert doc["budgets"]["enterprise_tax"]["per_project"] == str(caps.per_project)
    assert doc["citation_duty"] == world.ctx.catalog.platform.citation
    assert "disclosure" in doc["sanctions_clause"] and doc["obligations"]
    assert doc["signatories"] == {"applicant": lead, "providers": ["carol", "hal", "sam"]}
    # The grants the DP engine checks: one per dataset, expiring with the agreement.
    with session_scope(world.ctx.control_engine) as s:
        grants = registry.list_grants(s, project=project, active_only=True)
        assert registry.is_member(s, project, "ivy")  # the named team joins the project
    assert {g.dataset for g in grants} == {"enterprise_tax", "social_insurance"}
    assert all(g.expires_at == agreement.term_end and g.source == f"agreement {agreement.id}" for g in grants)
    can_query(world, lead, project, "enterprise_tax")
    can_query(world, "hugo", project, "social_insurance")
    # Expiry stops queries by itself: the grant is not active after the term.
    later = agreement.term_end + timedelta(seconds=1)
    with pytest.raises(NoGrant, match="expired"):
        can_query(world, lead, project, "enterprise_tax", now=later)
    assert (
        agreements.get_agreement(world.ctx, user=lead, agreement_id=agreement.id, now=later).status
        == "expired"
    )
    tail = kinds(world)[-12:]
    assert "agreement.signed" in tail and tail.count("grant.added") >= 2


def test_a_real_dp_query_runs_under_the_agreement(world: World) -> None:
    project, lead = new_project(world)
    app = submit(world, project, lead, ["enterprise_tax"])
    applications.decide(world.ctx, steward="carol", application_id=app.id, approve=True, reason="fine")
    record = run_query(
        world.ctx,
        user=lead,
        project=project,
        sql="SELECT credit_grade, COUNT(*) AS n FROM enterprise_tax GROUP BY credit_grade",
        epsilon=Decimal("0.1"),
    )
    assert record.dataset == "enterprise_tax" and record.rows


def test_refusal_by_every_department_signs_nothing(world: World) -> None:
    project, lead = new_project(world)
    app = submit(world, project, lead, ["enterprise_tax"])
    record = applications.decide(
        world.ctx, steward="carol", application_id=app.id, approve=False, reason="Purpose too broad."
    )
    assert record.status == "refused" and record.agreement is None
    assert record.items[0].reason == "Purpose too broad."
    with pytest.raises(InvalidTransition):
        applications.decide(world.ctx, steward="carol", application_id=app.id, approve=True, reason="changed")


def test_partial_approval_covers_the_approved_datasets_only(world: World) -> None:
    project, lead = new_project(world)
    app = submit(world, project, lead, ["enterprise_tax", "social_insurance"])
    applications.decide(world.ctx, steward="carol", application_id=app.id, approve=True, reason="ok")
    record = applications.decide(world.ctx, steward="sam", application_id=app.id, approve=False, reason="no")
    assert record.status == "partially_approved"
    assert record.agreement is not None and record.agreement.datasets == ["enterprise_tax"]
    with pytest.raises(NoGrant):
        can_query(world, lead, project, "social_insurance")


def test_a_jointly_provided_dataset_needs_every_provider(world: World) -> None:
    """penalties comes from three departments: each approves; one refusal refuses it."""
    departments = world.ctx.catalog.dataset("penalties").provider
    stewards = {dept: f"st-{dept}" for dept in departments}
    with session_scope(world.ctx.control_engine, immediate=True) as s:
        for dept, name in stewards.items():
            if registry.find_user(s, name) is None:
                registry.create_user(s, name, "steward", department=dept, actor="admin")
    project, lead = new_project(world)
    app = submit(world, project, lead, ["penalties"])
    first, *others = departments
    record = applications.decide(
        world.ctx, steward=stewards[first], application_id=app.id, approve=True, reason="a"
    )
    assert record.status == "submitted" and set(record.items[0].decisions) == {first}
    with pytest.raises(InvalidTransition, match="awaiting"):
        applications.decide(
            world.ctx, steward=stewards[first], application_id=app.id, approve=True, reason="b"
        )
    for dept in others:
        record = applications.decide(
            world.ctx, steward=stewards[dept], application_id=app.id, approve=True, reason="ok"
        )
    assert record.status == "approved" and record.agreement is not None
    assert record.agreement.document["signatories"]["providers"] == sorted(stewards.values())
    refused_project, refused_lead = new_project(world)
    other = submit(world, refused_project, refused_lead, ["penalties"])
    applications.decide(world.ctx, steward=stewards[first], application_id=other.id, approve=True, reason="a")
    refused = applications.decide(
        world.ctx, steward=stewards[others[0]], application_id=other.id, approve=False, reason="court records"
    )
    assert refused.status == "refused" and refused.items[0].status == "refused"


def test_a_standing_grant_is_replaced_by_the_agreement(world: World) -> None:
    """fin-lab holds demo-seed grants without expiry; an agreement replaces them with its own."""
    app = applications.submit(
        world.ctx, applicant="alice", project="fin-lab", datasets=["enterprise_tax"], **APPLICATION
    )
    final = applications.decide(world.ctx, steward="carol", application_id=app.id, approve=True, reason="ok")
    assert final.agreement is not None
    with session_scope(world.ctx.control_engine) as s:
        grants = registry.grants_for(s, registry.get_project(s, "fin-lab"), "enterprise_tax")
    assert grants[0].source == f"agreement {final.agreement.id}" and grants[0].is_active()
    assert grants[0].expires_at == final.agreement.term_end
    assert any(g.source == "demo seed" and g.revoked_at is not None for g in grants)


# --------------------------------------------------------------------------- withdraw, renew


def test_withdrawal_stops_queries_at_once(world: World) -> None:
    project, lead = new_project(world)
    app = submit(world, project, lead, ["enterprise_tax"])
    agreement = applications.decide(
        world.ctx, steward="carol", application_id=app.id, approve=True, reason="ok"
    ).agreement
    assert agreement is not None
    with pytest.raises(AccessDenied):
        agreements.withdraw_agreement(world.ctx, actor="dave", agreement_id=agreement.id, reason="not mine")
    withdrawn = agreements.withdraw_agreement(
        world.ctx, actor="carol", agreement_id=agreement.id, reason="Security incident reported."
    )
    assert withdrawn.status == "withdrawn"
    with pytest.raises(NoGrant, match="revoked"):
        can_query(world, lead, project, "enterprise_tax")
    with pytest.raises(InvalidTransition):
        agreements.withdraw_agreement(world.ctx, actor="admin", agreement_id=agreement.id, reason="again")


def test_a_change_of_purpose_needs_a_new_application(world: World) -> None:
    project, lead = new_project(world)
    app = submit(world, project, lead, ["enterprise_tax"])
    first = applications.decide(world.ctx, steward="carol", application_id=app.id, approve=True, reason="ok")
    assert first.agreement is not None
    with pytest.raises(InvalidTransition, match="already holds"):
        submit(world, project, lead, ["enterprise_tax"])  # a second agreement for the same data
    with pytest.raises(InvalidRequest, match="change of purpose needs a new application"):
        submit(
            world, project, lead, ["enterprise_tax"], renews=first.agreement.id, purpose="Marketing lists."
        )
    renewal = submit(world, project, lead, ["enterprise_tax"], renews=first.agreement.id, duration_days=60)
    second = applications.decide(
        world.ctx, steward="carol", application_id=renewal.id, approve=True, reason="ok"
    )
    assert second.agreement is not None
    assert (second.agreement.number, second.agreement.version) == (first.agreement.number, 2)
    assert second.agreement.document["supersedes"] == f"{first.agreement.number} v1"
    old = agreements.get_agreement(world.ctx, user=lead, agreement_id=first.agreement.id)
    assert old.status == "superseded"
    with session_scope(world.ctx.control_engine) as s:
        active = registry.list_grants(s, project=project, active_only=True)
    assert [g.source for g in active] == [f"agreement {second.agreement.id}"]
    can_query(world, lead, project, "enterprise_tax")


def test_an_overdue_usage_report_blocks_renewal(world: World) -> None:
    project, lead = new_project(world)
    app = submit(world, project, lead, ["enterprise_tax"], duration_days=365)
    agreement = applications.decide(
        world.ctx, steward="carol", application_id=app.id, approve=True, reason="ok"
    ).agreement
    assert agreement is not None
    late = utcnow() + timedelta(days=91)
    due = {d.agreement_id: d for d in usage_reports.reporting_status(world.ctx, now=late)}
    assert due[agreement.id].overdue
    assert not {d.agreement_id: d for d in usage_reports.reporting_status(world.ctx)}[agreement.id].overdue
    with pytest.raises(InvalidTransition, match="overdue"):
        submit(world, project, lead, ["enterprise_tax"], renews=agreement.id, now=late)
    usage_reports.file_usage_report(
        world.ctx, user=lead, project=project, papers=1, outputs=["Working paper 1"], now=late
    )
    renewal = submit(world, project, lead, ["enterprise_tax"], renews=agreement.id, now=late)
    assert renewal.renews == agreement.id


def test_two_pending_applications_for_the_same_data_cannot_both_be_signed(world: World) -> None:
    project, lead = new_project(world)
    first = submit(world, project, lead, ["enterprise_tax"])
    second = submit(world, project, lead, ["enterprise_tax"], purpose="A second, different purpose of use.")
    applications.decide(world.ctx, steward="carol", application_id=first.id, approve=True, reason="ok")
    with pytest.raises(InvalidTransition, match="meanwhile holds"):
        applications.decide(world.ctx, steward="carol", application_id=second.id, approve=True, reason="ok")
    assert applications.show(world.ctx, user=lead, application_id=second.id).status == "submitted"
    refused = applications.decide(
        world.ctx, steward="carol", application_id=second.id, approve=False, reason="dup"
    )
    assert refused.status == "refused"
    can_query(world, lead, project, "enterprise_tax")


def test_visibility_of_applications(world: World) -> None:
    project, lead = new_project(world)
    app = submit(world, project, lead, ["enterprise_tax"])
    for viewer in (lead, "carol", "admin", "erin"):
        assert applications.show(world.ctx, user=viewer, application_id=app.id).id == app.id
    for outsider in ("dave", "bob", "ent"):
        with pytest.raises(AccessDenied):
            applications.show(world.ctx, user=outsider, application_id=app.id)
    assert app.id in {r.id for r in applications.pending_for(world.ctx, steward="carol")}
    assert app.id not in {r.id for r in applications.pending_for(world.ctx, steward="dave")}


def test_every_step_is_in_a_verified_chain(world: World) -> None:
    with session_scope(world.ctx.control_engine) as s:
        result = audit_store.verify(s)
    assert result.ok, result
    seen = set(kinds(world))
    assert {"application.submitted", "application.decided", "agreement.signed", "agreement.withdrawn"} <= seen
    assert {"agreement.superseded", "grant.added", "grant.revoked", "usage_report.filed"} <= seen
