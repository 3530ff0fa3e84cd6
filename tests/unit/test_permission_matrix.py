"""The permission matrix of REQUIREMENTS §4, table-driven.

``MATRIX_TEXT`` is the matrix exactly as REQUIREMENTS §4 prints it. Each cell's words are
read into an expectation (allow / limited with conditions / deny / view-only, and a scope),
independently of ``sandbox.governance.permissions``; then every role × action pair is probed
with own and foreign resources, with and without the conditions, row-targeted or not, to do
or to view, and ``can`` must answer as the matrix says. Matrix columns map to our roles:
provider→steward, operator→admin, supervisor→auditor, enterprise user and enterprise as
subject→enterprise (allowed when either column allows), expert committee→expert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import require

from sandbox.control.models import UserRole
from sandbox.errors import AccessDenied, AccountInactive
from sandbox.governance import permissions as P
from sandbox.governance.permissions import Action, Condition, MatrixRole, Resource, Scope

# REQUIREMENTS §4, word for word (one row per line).
MATRIX_ROWS = (
    "| Register dataset, set type, conditions and grade | ✔ own data | ◐ technical fields | ✖ | ✖ | ✖ | ✖ | ◐ opinion | view |",  # noqa: E501
    "| Move 非开放→有条件 | ◐ with 脱敏 record or consent plus committee opinion | ✖ | ✖ | ✖ | ✖ | ◐ consent | ◐ opinion | view |",  # noqa: E501
    "| Browse catalogue, T0 download/API | ✔ | ✔ | ✔ | ✔ | ✔ | ✔ | ✔ | ✔ |",
    "| Apply for 有条件 access | ✖ | ✖ | ✔ | ✔ | ✔ | ✖ | ✖ | view |",
    "| Approve application and sign agreement | ✔ own data | ◐ countersign | ✖ | ✖ | ✖ | ✖ | ◐ high-risk | view |",  # noqa: E501
    "| Grant or revoke per-enterprise authorisation | ✖ | ✖ | ✖ | ✖ | ✖ | ✔ own record | ✖ | view |",
    "| Query T1 in sandbox | ✖ (not as user) | ✖ | ✔ per agreement | ✔ | ✔ | ✖ | ✖ | ✖ |",
    "| DP query on T2/T3 | ✖ | ✖ | ◐ agreement, budget | ◐ also needs authorisation for row-targeted enterprise queries | ◐ | ✖ | ✖ | ✖ |",  # noqa: E501
    "| See raw rows of T2/T3 | ◐ own data, outside the sandbox | ◐ break-glass, logged | ✖ | ✖ | ✖ | ✖ | ✖ | ✖ |",  # noqa: E501
    "| Request export | ✖ | ✖ | ✔ | ✔ | ✔ | ✖ | ✖ | ✖ |",
    "| Approve export (T2/T3) | ✔ own data | ✔ review desk | ✖ | ✖ | ✖ | ✖ | ◐ escalations | view |",
    "| Set DP budget caps | ✔ own data | ◐ platform-wide ceilings | ✖ | ✖ | ✖ | ✖ | ◐ advise | view |",
    "| File demand, correction, 举报 | ✔ | ✔ | ✔ | ✔ | ✔ | ✔ | ✔ | ✔ |",
    "| Record violation, restrict or close access | ✔ own data | ✔ platform-wide | ✖ | ✖ | ✖ | ✖ | ◐ opinion | ◐ direct |",  # noqa: E501
    "| Publish disclosure list | ◐ | ✔ | ✖ | ✖ | ✖ | ✖ | ✖ | ✔ |",
    "| Read audit logs | own datasets | ✔ | own activity | own | own | own authorisations | case files | ✔ all |",  # noqa: E501
)
MATRIX_TEXT = "\n".join(MATRIX_ROWS)

COLUMNS = [
    MatrixRole.PROVIDER,
    MatrixRole.OPERATOR,
    MatrixRole.RESEARCHER,
    MatrixRole.BANK,
    MatrixRole.ENTERPRISE_USER,
    MatrixRole.ENTERPRISE_SUBJECT,
    MatrixRole.EXPERT_COMMITTEE,
    MatrixRole.SUPERVISOR,
]

ROWS = {title: action for action, title in P.ACTION_TITLES.items()}

OUR_ROLES = {
    UserRole.STEWARD: (MatrixRole.PROVIDER,),
    UserRole.ADMIN: (MatrixRole.OPERATOR,),
    UserRole.RESEARCHER: (MatrixRole.RESEARCHER,),
    UserRole.BANK: (MatrixRole.BANK,),
    UserRole.ENTERPRISE: (MatrixRole.ENTERPRISE_USER, MatrixRole.ENTERPRISE_SUBJECT),
    UserRole.AUDITOR: (MatrixRole.SUPERVISOR,),
    UserRole.EXPERT: (MatrixRole.EXPERT_COMMITTEE,),
}

C = Condition
# What each qualifier in the matrix means: (scope, conditions for population requests,
# conditions for row-targeted requests or None when those are refused).
QUALIFIERS: dict[str, tuple[Scope, frozenset[Condition]]] = {
    "": (Scope.ANY, frozenset()),
    "own data": (Scope.OWN_DATA, frozenset()),
    "technical fields": (Scope.ANY, frozenset({C.TECHNICAL_FIELDS})),
    "opinion": (Scope.ANY, frozenset({C.OPINION})),
    "advise": (Scope.ANY, frozenset({C.OPINION})),
    # A provider reclassifies its own data (as it registers only its own data).
    "with 脱敏 record or consent plus committee opinion": (
        Scope.OWN_DATA,
        frozenset({C.DEID_OR_CONSENT, C.COMMITTEE_OPINION}),
    ),
    "consent": (Scope.OWN_RECORD, frozenset({C.CONSENT})),
    "countersign": (Scope.ANY, frozenset({C.COUNTERSIGN})),
    "high-risk": (Scope.ANY, frozenset({C.HIGH_RISK})),
    "own record": (Scope.OWN_RECORD, frozenset()),
    "per agreement": (Scope.ANY, frozenset({C.AGREEMENT})),
    "agreement, budget": (Scope.ANY, frozenset({C.AGREEMENT, C.BUDGET})),
    "also needs authorisation for row-targeted enterprise queries": (
        Scope.ANY,
        frozenset({C.AGREEMENT, C.BUDGET}),
    ),
    "own data, outside the sandbox": (Scope.OWN_DATA, frozenset({C.OUTSIDE_SANDBOX})),
    "break-glass, logged": (Scope.ANY, frozenset({C.BREAK_GLASS})),
    "review desk": (Scope.ANY, frozenset()),
    "escalations": (Scope.ANY, frozenset({C.ESCALATED})),
    "platform-wide ceilings": (Scope.ANY, frozenset({C.PLATFORM_CEILING})),
    "platform-wide": (Scope.ANY, frozenset()),
    "direct": (Scope.ANY, frozenset({C.DIRECTIVE})),
    "own datasets": (Scope.OWN_DATA, frozenset()),
    "own activity": (Scope.OWN_ACTIVITY, frozenset()),
    "own": (Scope.OWN_ACTIVITY, frozenset()),
    "own authorisations": (Scope.OWN_AUTHORISATIONS, frozenset()),
    "case files": (Scope.ANY, frozenset({C.CASE_FILE})),
    "all": (Scope.ANY, frozenset()),
}

# A bare ◐ says "limited" without saying how; these are the conditions we chose.
BARE_LIMITED = {
    (Action.DP_QUERY, MatrixRole.ENTERPRISE_USER): frozenset({C.AGREEMENT, C.BUDGET}),
    (Action.PUBLISH_DISCLOSURE, MatrixRole.PROVIDER): frozenset({C.OPERATOR_APPROVAL}),
}
# Row-targeted requests (one enterprise's rows): only where the matrix says so.
TARGETED = {(Action.DP_QUERY, MatrixRole.BANK): frozenset({C.AUTHORISATION})}


@dataclass(frozen=True)
class Expect:
    kind: str  # allow / deny / view
    scope: Scope = Scope.ANY
    requires: frozenset[Condition] = frozenset()
    targeted: frozenset[Condition] | None = None


def parse_matrix() -> dict[Action, dict[MatrixRole, Expect]]:
    out: dict[Action, dict[MatrixRole, Expect]] = {}
    for line in MATRIX_TEXT.strip().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        action = ROWS[cells[0]]
        out[action] = {col: expect(action, col, text) for col, text in zip(COLUMNS, cells[1:], strict=True)}
    return out


def expect(action: Action, column: MatrixRole, text: str) -> Expect:
    if text.startswith("✖"):
        return Expect("deny")
    if text == "view":
        return Expect("view")
    qualifier = text.removeprefix("✔").removeprefix("◐").strip()
    scope, requires = QUALIFIERS[qualifier]
    if text == "◐":
        requires = BARE_LIMITED[(action, column)]
    return Expect("allow", scope, requires, TARGETED.get((action, column)))


EXPECTED = parse_matrix()


def test_the_matrix_has_every_row_and_column() -> None:
    assert set(EXPECTED) == set(Action)
    for action in Action:
        assert set(P.MATRIX[action]) == set(MatrixRole)


def test_requirements_text_is_copied_exactly() -> None:
    """When the shared spec is at hand, the copy above is its §4 matrix, word for word."""
    spec = Path(__file__).resolve().parents[3] / "shared" / "REQUIREMENTS.md"
    require(spec.exists(), f"{spec} not present (CI lays shared/ beside the clone)")
    source = spec.read_text(encoding="utf-8")
    for line in MATRIX_TEXT.strip().splitlines():
        assert line in source


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("column", COLUMNS)
def test_matrix_data_says_what_the_requirements_say(action: Action, column: MatrixRole) -> None:
    want = EXPECTED[action][column]
    cell = P.MATRIX[action][column]
    if want.kind == "deny":
        assert cell.mark is P.Mark.DENY
    elif want.kind == "view":
        assert cell.mark is P.Mark.VIEW
    else:
        assert cell.performs
        assert (cell.scope, cell.requires, cell.targeted) == (want.scope, want.requires, want.targeted)


def test_every_role_of_ours_maps_onto_the_matrix() -> None:
    assert {r.value for r in UserRole} == set(P.ROLE_COLUMNS)
    for role, columns in OUR_ROLES.items():
        assert P.ROLE_COLUMNS[role.value] == columns


# --------------------------------------------------------------------------- behaviour


def make_actor(role: UserRole, status: str = "approved") -> SimpleNamespace:
    return SimpleNamespace(
        username="u",
        role=role.value,
        department="dept_a" if role is UserRole.STEWARD else None,
        uscc="91310000MA00000001" if role is UserRole.ENTERPRISE else None,
        status=status,
    )


def probes(actor: SimpleNamespace) -> list[tuple[str, Resource, bool]]:
    out = []
    for own in (True, False):
        for conditions in (frozenset(), frozenset(Condition)):
            for targeted in (False, True):
                resource = Resource.of(
                    departments={"dept_a"} if own else {"dept_b"},
                    owner=actor.username if own else "someone-else",
                    uscc=(actor.uscc or "91310000MA00000001") if own else "91310000MA00000009",
                    conditions=conditions,
                    row_targeted=targeted,
                )
                label = f"{'own' if own else 'foreign'}/{'all' if conditions else 'no'} conditions/" + (
                    "targeted" if targeted else "population"
                )
                for view in (False, True):
                    out.append((label + ("/view" if view else "/do"), resource, view))
    return out


def _scope_ok(scope: Scope, actor: SimpleNamespace, resource: Resource) -> bool:
    if scope is Scope.ANY:
        return True
    if scope is Scope.OWN_DATA:
        return actor.department is not None and actor.department in resource.departments
    if scope is Scope.OWN_ACTIVITY:
        return resource.owner == actor.username
    return actor.uscc is not None and resource.uscc == actor.uscc


def expected_answer(want: Expect, actor: SimpleNamespace, resource: Resource, view: bool) -> bool:
    if want.kind == "deny":
        return False
    if want.kind == "view":
        return view
    if not _scope_ok(want.scope, actor, resource):
        return False
    if view:
        return True
    if resource.row_targeted:
        return want.targeted is not None and want.targeted <= resource.conditions
    return want.requires <= resource.conditions


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("role", list(OUR_ROLES))
def test_every_role_action_pair_is_allowed_or_refused_as_the_matrix_says(
    role: UserRole, action: Action
) -> None:
    actor = make_actor(role)
    for label, resource, view in probes(actor):
        want = any(expected_answer(EXPECTED[action][col], actor, resource, view) for col in OUR_ROLES[role])
        assert P.can(actor, action, resource, view=view) is want, f"{role.value} {action.value} {label}"
        if not want:
            with pytest.raises(AccessDenied) as info:
                P.check_can(actor, action, resource, view=view)
            assert info.value.message  # the reason pages show


@pytest.mark.parametrize("role", list(OUR_ROLES))
def test_inactive_accounts_may_do_nothing(role: UserRole) -> None:
    actor = make_actor(role, status="revoked")
    with pytest.raises(AccountInactive):
        P.check_can(actor, Action.BROWSE_CATALOG)
    assert not P.can(actor, Action.FILE_REPORT)


def test_refusals_say_why() -> None:
    steward = make_actor(UserRole.STEWARD)
    with pytest.raises(AccessDenied, match="department 'dept_a'"):
        P.check_can(steward, Action.APPROVE_APPLICATION, Resource.of(departments={"dept_b"}))
    admin = make_actor(UserRole.ADMIN)
    with pytest.raises(AccessDenied, match="countersign"):
        P.check_can(admin, Action.APPROVE_APPLICATION)
    auditor = make_actor(UserRole.AUDITOR)
    with pytest.raises(AccessDenied, match="only view"):
        P.check_can(auditor, Action.APPROVE_APPLICATION)
    researcher = make_actor(UserRole.RESEARCHER)
    with pytest.raises(AccessDenied, match="row-targeted"):
        P.check_can(researcher, Action.DP_QUERY, Resource.of(row_targeted=True, conditions=set(Condition)))


def test_rendered_matrix_lists_every_action_for_our_roles() -> None:
    table = P.render_matrix()
    for title in P.ACTION_TITLES.values():
        assert re.search(rf"^\| {re.escape(title)} \|", table, re.MULTILINE)
    assert table.splitlines()[0] == "| Action | " + " | ".join(P.ROLE_COLUMNS) + " |"


def test_listing_scopes_count_only_unconditional_cells() -> None:
    """The committee reads "case files" (◐): not the whole audit log through ``check_scopes``."""
    expert = make_actor(UserRole.EXPERT)
    assert P.scopes(expert, Action.READ_AUDIT) == frozenset()
    with pytest.raises(AccessDenied, match="case_file"):
        P.check_scopes(expert, Action.READ_AUDIT)
    assert P.check_scopes(make_actor(UserRole.AUDITOR), Action.READ_AUDIT) == {Scope.ANY}
    assert P.check_scopes(make_actor(UserRole.STEWARD), Action.READ_AUDIT) == {Scope.OWN_DATA}
