"""Rules of the expert-committee workbench (SR-37), pure: kinds, states, opinions, quorum, who may what.

The committee (专家委员会, Data Regs Art. 7) researches and evaluates; it does not decide in the
providers' place. Its four queues (``ItemKind``) and what an opinion concerns in the permission
matrix (REQUIREMENTS §4; the committee's column is ◐ *opinion* / *high-risk* throughout):

================================  ====================================================  ==========
kind                              matrix row the opinion concerns                       condition
================================  ====================================================  ==========
``classification_dispute``        Register dataset, set type, conditions and grade      opinion
``declassification_proposal``     Move 非开放→有条件                                       opinion
``high_risk_application``         Approve application and sign agreement                high_risk
``scenario_evaluation``           Approve application and sign agreement (Art. 45)      high_risk
================================  ====================================================  ==========

States (a table of valid transitions, as the export gate's)::

    open ──record opinion──► opinion_recorded      (terminal)
      └────withdraw────────► withdrawn             (terminal)

Rules come in pairs: ``check_can_*`` raises with the reason pages show, ``can_*`` answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sandbox.errors import AccessDenied, AccountInactive, InvalidRequest, InvalidTransition
from sandbox.governance.permissions import (
    Action,
    ActorLike,
    Condition,
    MatrixRole,
    Resource,
    check_can,
    columns_of,
)

QUORUM = 2
"""[D] The default number of members who must take part in an opinion, not counting the member
who raised the item. The platform policy sets the real one (``committee.quorum`` in
platform.yaml, read by ``sandbox.governance.committee``); two keeps the demo (three experts)
workable and still means no expert speaks for the committee alone."""


class ItemKind(StrEnum):
    CLASSIFICATION_DISPUTE = "classification_dispute"
    DECLASSIFICATION_PROPOSAL = "declassification_proposal"  # 非开放 → 有条件
    HIGH_RISK_APPLICATION = "high_risk_application"
    SCENARIO_EVALUATION = "scenario_evaluation"  # 应用场景合规性和安全风险评估


KIND_TITLES: dict[ItemKind, tuple[str, str]] = {
    ItemKind.CLASSIFICATION_DISPUTE: ("分级分类争议", "Classification disputes"),
    ItemKind.DECLASSIFICATION_PROPOSAL: ("非开放→有条件开放建议", "Proposals to move 非开放 to 有条件"),
    ItemKind.HIGH_RISK_APPLICATION: ("高风险申请", "High-risk applications"),
    ItemKind.SCENARIO_EVALUATION: ("应用场景合规与风险评估", "Scenario compliance and risk evaluations"),
}


class ItemStatus(StrEnum):
    OPEN = "open"
    OPINION_RECORDED = "opinion_recorded"
    WITHDRAWN = "withdrawn"


TRANSITIONS: dict[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.OPEN: frozenset({ItemStatus.OPINION_RECORDED, ItemStatus.WITHDRAWN}),
    ItemStatus.OPINION_RECORDED: frozenset(),
    ItemStatus.WITHDRAWN: frozenset(),
}


class Opinion(StrEnum):
    APPROVE = "approve"
    APPROVE_WITH_CONDITIONS = "approve_with_conditions"
    REJECT = "reject"
    NEEDS_MORE_INFO = "needs_more_info"


FAVOURABLE = frozenset({Opinion.APPROVE, Opinion.APPROVE_WITH_CONDITIONS})
"""Opinions under which a provider may approve what the item is about."""

KIND_ACTION: dict[ItemKind, tuple[Action, Condition]] = {
    ItemKind.CLASSIFICATION_DISPUTE: (Action.REGISTER_DATASET, Condition.OPINION),
    ItemKind.DECLASSIFICATION_PROPOSAL: (Action.RECLASSIFY_TO_CONDITIONAL, Condition.OPINION),
    ItemKind.HIGH_RISK_APPLICATION: (Action.APPROVE_APPLICATION, Condition.HIGH_RISK),
    ItemKind.SCENARIO_EVALUATION: (Action.APPROVE_APPLICATION, Condition.HIGH_RISK),
}

_RAISERS: dict[ItemKind, frozenset[str]] = {
    # Who may put a matter to the committee by hand (stewards: for their own department's data).
    ItemKind.CLASSIFICATION_DISPUTE: frozenset({"steward", "admin", "expert"}),
    ItemKind.DECLASSIFICATION_PROPOSAL: frozenset({"steward"}),  # the provider proposes (§4)
    ItemKind.HIGH_RISK_APPLICATION: frozenset({"steward", "admin"}),
    ItemKind.SCENARIO_EVALUATION: frozenset({"steward", "admin", "expert"}),
}


@dataclass(frozen=True)
class ItemFacts:
    """What the rules read of an item."""

    kind: ItemKind
    status: ItemStatus
    raised_by: str
    departments: frozenset[str] = frozenset()
    dataset: str | None = None
    application_id: int | None = None
    id: int | None = None

    @property
    def label(self) -> str:
        return f"committee item {self.id}" if self.id is not None else "committee item"


def is_committee_member(actor: ActorLike) -> bool:
    """Whether the account's role holds the expert committee's column of the matrix."""
    return MatrixRole.EXPERT_COMMITTEE in columns_of(actor.role)


def _active(actor: ActorLike) -> None:
    if actor.status != "approved":
        raise AccountInactive(f"Account {actor.username!r} is {actor.status}.")


def check_transition(item: ItemFacts, target: ItemStatus) -> None:
    """``InvalidTransition`` unless ``target`` may follow the item's status."""
    if target not in TRANSITIONS[item.status]:
        raise InvalidTransition(
            f"{item.label.capitalize()} is {item.status.value}; it cannot become {target.value}.",
            hint="Only an open item takes an opinion or a withdrawal; raise a new item if needed.",
        )


def check_subject(
    kind: ItemKind, *, dataset: str | None, application_id: int | None, tier: str | None
) -> None:
    """The subject each queue needs (``InvalidRequest`` otherwise)."""
    if kind in (ItemKind.CLASSIFICATION_DISPUTE, ItemKind.DECLASSIFICATION_PROPOSAL) and not dataset:
        raise InvalidRequest(f"A {kind.value} names the dataset it is about.", hint="Pass --dataset.")
    if kind is ItemKind.DECLASSIFICATION_PROPOSAL and tier != "restricted":
        raise InvalidRequest(
            f"Only a restricted (非开放) dataset can be proposed for 有条件开放; {dataset!r} is {tier}.",
            hint="Raise a classification_dispute for other changes of classification.",
        )
    if kind is ItemKind.HIGH_RISK_APPLICATION and (application_id is None or not dataset):
        raise InvalidRequest(
            "A high_risk_application names the application and the dataset of it that is high-risk.",
            hint="Pass --application and --dataset.",
        )
    if kind is ItemKind.SCENARIO_EVALUATION and application_id is None and not dataset:
        raise InvalidRequest("A scenario_evaluation names an application or a dataset.")


def check_can_raise(actor: ActorLike, kind: ItemKind, *, departments: Iterable[str]) -> None:
    """Raise ``AccessDenied`` unless ``actor`` may put a ``kind`` item about ``departments``' data."""
    _active(actor)
    allowed = _RAISERS[kind]
    if actor.role not in allowed:
        raise AccessDenied(
            f"Role {actor.role!r} may not raise a {kind.value} with the expert committee.",
            hint=f"Raised by: {', '.join(sorted(allowed))}.",
        )
    concerned = frozenset(departments)
    if actor.role == "steward" and (not actor.department or actor.department not in concerned):
        raise AccessDenied(
            f"{actor.username!r} raises committee items only about datasets of department "
            f"{actor.department or 'none'!r}.",
            hint="Ask a steward of the providing department.",
        )


def can_raise(actor: ActorLike, kind: ItemKind, *, departments: Iterable[str]) -> bool:
    try:
        check_can_raise(actor, kind, departments=departments)
    except AccessDenied:
        return False
    return True


def check_can_see(actor: ActorLike, item: ItemFacts) -> None:
    """Members, the raiser, and whoever may do or view the matrix row the item concerns.

    So: experts, supervisors (``view``, SR-38), stewards of the departments concerned (*own
    data*), the operator for everything but 非开放→有条件 (its matrix cell is ✖).
    """
    _active(actor)
    if actor.username == item.raised_by or is_committee_member(actor):
        return
    action, _ = KIND_ACTION[item.kind]
    try:
        check_can(actor, action, Resource.of(departments=item.departments, label=item.label), view=True)
    except AccessDenied as err:
        raise AccessDenied(
            f"{actor.username!r} may not see {item.label}.",
            hint="Committee members, the raiser, stewards of the data concerned and supervisors can.",
        ) from err


def can_see(actor: ActorLike, item: ItemFacts) -> bool:
    try:
        check_can_see(actor, item)
    except AccessDenied:
        return False
    return True


def check_can_record_opinion(
    actor: ActorLike, item: ItemFacts, members: Sequence[ActorLike], *, quorum: int = QUORUM
) -> None:
    """Raise unless ``actor`` may record the committee's opinion on ``item`` with ``members``.

    * only a committee member records, and the matrix agrees (◐ opinion / high-risk);
    * the item is open (a withdrawn or decided item takes no opinion);
    * the member who raised the item does not record its opinion, and does not count for the
      quorum: at least ``quorum`` *other* members took part;
    * every member named is an active committee member, the recorder among them.
    """
    _active(actor)
    if not is_committee_member(actor):
        raise AccessDenied(
            f"Only members of the expert committee record its opinions; {actor.username!r} is "
            f"{actor.role!r} (REQUIREMENTS §4).",
            hint="The provider decides; the committee gives its opinion.",
        )
    action, condition = KIND_ACTION[item.kind]
    check_can(actor, action, Resource.of(conditions={condition}, label=item.label))
    check_transition(item, ItemStatus.OPINION_RECORDED)
    if actor.username == item.raised_by:
        raise AccessDenied(
            f"{actor.username!r} raised {item.label} and does not record its opinion.",
            hint="Another member of the committee records it.",
        )
    names = [m.username for m in members]
    if len(set(names)) != len(names):
        raise InvalidRequest("A member is named twice.", hint="Name each member once.")
    not_members = sorted(m.username for m in members if not is_committee_member(m) or m.status != "approved")
    if not_members:
        raise InvalidRequest(
            f"Not active members of the expert committee: {', '.join(not_members)}.",
            hint="Name the experts (role expert) who took part.",
        )
    if actor.username not in names:
        raise InvalidRequest(
            f"{actor.username!r} records the opinion and must be among the members who took part.",
            hint="Add yourself to the members.",
        )
    counted = [n for n in names if n != item.raised_by]
    if len(counted) < quorum:
        raise InvalidRequest(
            f"An opinion needs at least {quorum} members besides the one who raised the item; "
            f"{len(counted)} named ({', '.join(counted) or 'none'}).",
            hint="Record the opinion once the quorum has deliberated.",
        )


def can_record_opinion(
    actor: ActorLike, item: ItemFacts, members: Sequence[ActorLike], *, quorum: int = QUORUM
) -> bool:
    try:
        check_can_record_opinion(actor, item, members, quorum=quorum)
    except (AccessDenied, InvalidRequest, InvalidTransition):
        return False
    return True


def check_opinion_text(opinion: Opinion, conditions: str | None) -> None:
    """``approve_with_conditions`` states its conditions; the other opinions carry none."""
    if opinion is Opinion.APPROVE_WITH_CONDITIONS and not (conditions or "").strip():
        raise InvalidRequest(
            "An approval with conditions states the conditions.", hint="Pass the conditions text."
        )
    if opinion is not Opinion.APPROVE_WITH_CONDITIONS and (conditions or "").strip():
        raise InvalidRequest(
            f"Conditions go with approve_with_conditions, not {opinion.value}.",
            hint="Choose approve_with_conditions, or put the text in the reason.",
        )


def check_can_withdraw(actor: ActorLike, item: ItemFacts) -> None:
    """The raiser or the operator withdraws an open item."""
    _active(actor)
    if actor.username != item.raised_by and actor.role != "admin":
        raise AccessDenied(
            f"Only whoever raised {item.label} or the operator withdraws it.",
            hint=f"It was raised by {item.raised_by!r}.",
        )
    check_transition(item, ItemStatus.WITHDRAWN)


def can_withdraw(actor: ActorLike, item: ItemFacts) -> bool:
    try:
        check_can_withdraw(actor, item)
    except (AccessDenied, InvalidTransition):
        return False
    return True


__all__ = [
    "FAVOURABLE",
    "KIND_ACTION",
    "KIND_TITLES",
    "QUORUM",
    "TRANSITIONS",
    "ItemFacts",
    "ItemKind",
    "ItemStatus",
    "Opinion",
    "can_raise",
    "can_record_opinion",
    "can_see",
    "can_withdraw",
    "check_can_raise",
    "check_can_record_opinion",
    "check_can_see",
    "check_can_withdraw",
    "check_opinion_text",
    "check_subject",
    "check_transition",
    "is_committee_member",
]
