"""Rules of the expert-committee workbench (SR-37): states, who raises, who sees, who records, quorum."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sandbox.errors import AccessDenied, AccountInactive, InvalidRequest, InvalidTransition
from sandbox.governance import committee_rules as R
from sandbox.governance.committee_rules import ItemFacts, ItemKind, ItemStatus, Opinion


def actor(
    name: str, role: str, *, department: str | None = None, status: str = "approved"
) -> SimpleNamespace:
    return SimpleNamespace(username=name, role=role, department=department, uscc=None, status=status)


KAI, LIN, MEI = actor("kai", "expert"), actor("lin", "expert"), actor("mei", "expert")
CAROL = actor("carol", "steward", department="tax_bureau")
DAVE = actor("dave", "steward", department="health_commission")
ADMIN, ERIN, ALICE = actor("admin", "admin"), actor("erin", "auditor"), actor("alice", "researcher")


def item(
    kind: ItemKind = ItemKind.HIGH_RISK_APPLICATION,
    status: ItemStatus = ItemStatus.OPEN,
    raised_by: str = "alice",
    departments: frozenset[str] = frozenset({"tax_bureau"}),
) -> ItemFacts:
    return ItemFacts(kind=kind, status=status, raised_by=raised_by, departments=departments, id=7)


# --------------------------------------------------------------------------- states


def test_only_an_open_item_moves_and_the_end_states_are_final() -> None:
    assert R.TRANSITIONS[ItemStatus.OPEN] == {ItemStatus.OPINION_RECORDED, ItemStatus.WITHDRAWN}
    for end in (ItemStatus.OPINION_RECORDED, ItemStatus.WITHDRAWN):
        assert R.TRANSITIONS[end] == frozenset()
        for target in ItemStatus:
            with pytest.raises(InvalidTransition, match=end.value):
                R.check_transition(item(status=end), target)
    R.check_transition(item(), ItemStatus.OPINION_RECORDED)


def test_every_kind_maps_to_a_matrix_row_where_the_committee_gives_opinions() -> None:
    assert set(R.KIND_ACTION) == set(ItemKind) == set(R.KIND_TITLES)
    assert {Opinion.APPROVE, Opinion.APPROVE_WITH_CONDITIONS} == R.FAVOURABLE


# --------------------------------------------------------------------------- subjects, raising


def test_each_queue_needs_its_subject() -> None:
    with pytest.raises(InvalidRequest, match="names the dataset"):
        R.check_subject(ItemKind.CLASSIFICATION_DISPUTE, dataset=None, application_id=3, tier=None)
    with pytest.raises(InvalidRequest, match="restricted"):
        R.check_subject(
            ItemKind.DECLASSIFICATION_PROPOSAL,
            dataset="enterprise_tax",
            application_id=None,
            tier="conditional",
        )
    R.check_subject(
        ItemKind.DECLASSIFICATION_PROPOSAL, dataset="sme_loans", application_id=None, tier="restricted"
    )
    with pytest.raises(InvalidRequest, match="application and the dataset"):
        R.check_subject(
            ItemKind.HIGH_RISK_APPLICATION, dataset="sme_loans", application_id=None, tier="restricted"
        )
    with pytest.raises(InvalidRequest, match="application or a dataset"):
        R.check_subject(ItemKind.SCENARIO_EVALUATION, dataset=None, application_id=None, tier=None)
    R.check_subject(ItemKind.SCENARIO_EVALUATION, dataset=None, application_id=4, tier=None)


def test_who_may_raise_which_kind() -> None:
    tax = {"tax_bureau"}
    assert R.can_raise(CAROL, ItemKind.DECLASSIFICATION_PROPOSAL, departments=tax)
    assert not R.can_raise(DAVE, ItemKind.DECLASSIFICATION_PROPOSAL, departments=tax)  # not his data
    assert not R.can_raise(ADMIN, ItemKind.DECLASSIFICATION_PROPOSAL, departments=tax)  # operator ✖ in §4
    assert not R.can_raise(KAI, ItemKind.DECLASSIFICATION_PROPOSAL, departments=tax)  # the provider proposes
    assert R.can_raise(ADMIN, ItemKind.HIGH_RISK_APPLICATION, departments=tax)
    assert not R.can_raise(KAI, ItemKind.HIGH_RISK_APPLICATION, departments=tax)
    assert R.can_raise(KAI, ItemKind.CLASSIFICATION_DISPUTE, departments=tax)
    for kind in ItemKind:
        assert not R.can_raise(ALICE, kind, departments=tax)
        assert not R.can_raise(ERIN, kind, departments=tax)  # supervisors read, they change nothing
    with pytest.raises(AccountInactive):
        R.check_can_raise(
            actor("x", "steward", department="tax_bureau", status="suspended"),
            ItemKind.CLASSIFICATION_DISPUTE,
            departments=tax,
        )


# --------------------------------------------------------------------------- seeing


def test_members_supervisors_raiser_and_the_providers_concerned_see_an_item() -> None:
    facts = item()
    for who in (KAI, ERIN, ADMIN, CAROL, ALICE):
        assert R.can_see(who, facts), who.username
    assert not R.can_see(DAVE, facts)  # another department's data
    assert not R.can_see(actor("ivy", "researcher"), facts)
    assert not R.can_see(actor("bob", "bank"), facts)
    declass = item(kind=ItemKind.DECLASSIFICATION_PROPOSAL, raised_by="carol")
    assert not R.can_see(ADMIN, declass)  # the operator's cell of "Move 非开放→有条件" is ✖
    assert R.can_see(ERIN, declass) and R.can_see(KAI, declass) and R.can_see(CAROL, declass)


# --------------------------------------------------------------------------- opinions


def test_members_of_the_quorum_record_an_opinion() -> None:
    R.check_can_record_opinion(KAI, item(), [KAI, LIN])
    assert R.QUORUM == 2
    with pytest.raises(InvalidRequest, match="at least 2 members"):
        R.check_can_record_opinion(KAI, item(), [KAI])
    with pytest.raises(InvalidRequest, match="among the members"):
        R.check_can_record_opinion(KAI, item(), [LIN, MEI])
    with pytest.raises(InvalidRequest, match="twice"):
        R.check_can_record_opinion(KAI, item(), [KAI, KAI])


@pytest.mark.parametrize("who", [CAROL, ADMIN, ERIN, ALICE])
def test_nobody_but_a_committee_member_records_an_opinion(who: SimpleNamespace) -> None:
    with pytest.raises(AccessDenied, match="Only members of the expert committee"):
        R.check_can_record_opinion(who, item(), [who, KAI, LIN])
    assert not R.can_record_opinion(who, item(), [who, KAI, LIN])


def test_a_non_member_cannot_be_named_among_the_members() -> None:
    with pytest.raises(InvalidRequest, match="carol"):
        R.check_can_record_opinion(KAI, item(), [KAI, CAROL])
    suspended = actor("sus", "expert", status="suspended")
    with pytest.raises(InvalidRequest, match="sus"):
        R.check_can_record_opinion(KAI, item(), [KAI, suspended])


def test_the_raiser_neither_records_nor_counts_for_the_quorum() -> None:
    raised_by_kai = item(kind=ItemKind.CLASSIFICATION_DISPUTE, raised_by="kai")
    with pytest.raises(AccessDenied, match="raised"):
        R.check_can_record_opinion(KAI, raised_by_kai, [KAI, LIN, MEI])
    with pytest.raises(InvalidRequest, match="besides the one who raised"):
        R.check_can_record_opinion(LIN, raised_by_kai, [KAI, LIN])  # kai alone would make the quorum
    R.check_can_record_opinion(LIN, raised_by_kai, [KAI, LIN, MEI])
    R.check_can_record_opinion(LIN, raised_by_kai, [LIN, MEI])
    # even a quorum of one never lets the raiser be the only member
    with pytest.raises(InvalidRequest):
        R.check_can_record_opinion(LIN, raised_by_kai, [KAI], quorum=1)


@pytest.mark.parametrize("end", [ItemStatus.WITHDRAWN, ItemStatus.OPINION_RECORDED])
def test_a_closed_item_takes_no_opinion(end: ItemStatus) -> None:
    with pytest.raises(InvalidTransition):
        R.check_can_record_opinion(KAI, item(status=end), [KAI, LIN])


def test_conditions_go_with_approve_with_conditions_only() -> None:
    with pytest.raises(InvalidRequest, match="states the conditions"):
        R.check_opinion_text(Opinion.APPROVE_WITH_CONDITIONS, "  ")
    R.check_opinion_text(Opinion.APPROVE_WITH_CONDITIONS, "Only district-level aggregates.")
    with pytest.raises(InvalidRequest, match="not reject"):
        R.check_opinion_text(Opinion.REJECT, "some conditions")
    R.check_opinion_text(Opinion.NEEDS_MORE_INFO, None)


def test_the_raiser_or_the_operator_withdraws_an_open_item() -> None:
    facts = item(raised_by="carol")
    assert R.can_withdraw(CAROL, facts) and R.can_withdraw(ADMIN, facts)
    for who in (KAI, ERIN, DAVE, ALICE):
        assert not R.can_withdraw(who, facts)
    assert not R.can_withdraw(CAROL, item(raised_by="carol", status=ItemStatus.OPINION_RECORDED))
