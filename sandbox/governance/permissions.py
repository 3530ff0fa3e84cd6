"""The permission matrix of REQUIREMENTS §4, as data, and ``check_can`` / ``can``.

Pure: no I/O. Every cell of the matrix is a :class:`Cell` in :data:`MATRIX`, keyed by
the matrix's own columns (:class:`MatrixRole`). Our account roles map onto those
columns (:data:`ROLE_COLUMNS`):

==============  ==================================================
our role        matrix column(s)
==============  ==================================================
``steward``     provider (数据开放主体)
``admin``       operator (平台运营方)
``researcher``  researcher
``bank``        bank
``enterprise``  enterprise user **and** enterprise as data subject
``auditor``     supervisor
``expert``      expert committee (专家委员会, SR-37)
==============  ==================================================

The committee's cells are all ◐ *opinion* (or *high-risk*, *escalations*, *advise*, *case
files*): an expert gives opinions, the provider decides. Its workbench is
``sandbox.governance.committee``.

A cell has a *mark* (✔ allow, ◐ limited, ✖ deny, ``view``), an optional *scope* (own
data, own record, own activity, ...) and, for ◐, the *conditions* a request must show
(a countersignature, an agreement, a break-glass record, ...). An enterprise holds both
of its columns: a request is allowed when either column allows it.

``check_can(actor, action, resource)`` raises :class:`~sandbox.errors.AccessDenied`
(or ``AccountInactive``) with the reason, which is also what pages show;
``can(...)`` answers yes or no. ``view=True`` asks whether the actor may *see* the
records of an action (the matrix's ``view`` cells) rather than perform it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from sandbox.errors import AccessDenied, AccountInactive


class MatrixRole(StrEnum):
    """The columns of the REQUIREMENTS §4 permission matrix."""

    PROVIDER = "provider"
    OPERATOR = "operator"
    RESEARCHER = "researcher"
    BANK = "bank"
    ENTERPRISE_USER = "enterprise_user"
    ENTERPRISE_SUBJECT = "enterprise_subject"
    EXPERT_COMMITTEE = "expert_committee"
    SUPERVISOR = "supervisor"


class Action(StrEnum):
    """The rows of the matrix."""

    REGISTER_DATASET = "register_dataset"
    RECLASSIFY_TO_CONDITIONAL = "reclassify_to_conditional"
    BROWSE_CATALOG = "browse_catalog"
    APPLY = "apply_for_access"
    APPROVE_APPLICATION = "approve_application"
    MANAGE_AUTHORISATION = "manage_authorisation"
    QUERY_T1 = "query_t1"
    DP_QUERY = "dp_query"
    SEE_RAW_ROWS = "see_raw_rows"
    REQUEST_EXPORT = "request_export"
    APPROVE_EXPORT = "approve_export"
    SET_BUDGET_CAPS = "set_budget_caps"
    FILE_REPORT = "file_report"
    RECORD_VIOLATION = "record_violation"
    PUBLISH_DISCLOSURE = "publish_disclosure"
    READ_AUDIT = "read_audit"


ACTION_TITLES: dict[Action, str] = {
    Action.REGISTER_DATASET: "Register dataset, set type, conditions and grade",
    Action.RECLASSIFY_TO_CONDITIONAL: "Move 非开放→有条件",
    Action.BROWSE_CATALOG: "Browse catalogue, T0 download/API",
    Action.APPLY: "Apply for 有条件 access",
    Action.APPROVE_APPLICATION: "Approve application and sign agreement",
    Action.MANAGE_AUTHORISATION: "Grant or revoke per-enterprise authorisation",
    Action.QUERY_T1: "Query T1 in sandbox",
    Action.DP_QUERY: "DP query on T2/T3",
    Action.SEE_RAW_ROWS: "See raw rows of T2/T3",
    Action.REQUEST_EXPORT: "Request export",
    Action.APPROVE_EXPORT: "Approve export (T2/T3)",
    Action.SET_BUDGET_CAPS: "Set DP budget caps",
    Action.FILE_REPORT: "File demand, correction, 举报",
    Action.RECORD_VIOLATION: "Record violation, restrict or close access",
    Action.PUBLISH_DISCLOSURE: "Publish disclosure list",
    Action.READ_AUDIT: "Read audit logs",
}


class Mark(StrEnum):
    ALLOW = "✔"
    LIMITED = "◐"
    DENY = "✖"
    VIEW = "view"


class Scope(StrEnum):
    """Whose records a cell covers."""

    ANY = "any"
    OWN_DATA = "own_data"  # datasets of the actor's provider department
    OWN_RECORD = "own_record"  # the enterprise's own record (its USCC)
    OWN_ACTIVITY = "own_activity"  # what the actor did
    OWN_AUTHORISATIONS = "own_authorisations"  # authorisations about the enterprise


class Condition(StrEnum):
    """What a request must show to pass a ◐ cell (or a qualified ✔ cell)."""

    TECHNICAL_FIELDS = "technical_fields"  # the operator edits technical fields only
    DEID_OR_CONSENT = "deid_or_consent"  # a 脱敏/脱密 record or a rights-holder consent (SR-05)
    COMMITTEE_OPINION = "committee_opinion"  # the expert committee's opinion is attached
    CONSENT = "consent"  # the data subject's consent
    OPINION = "opinion"  # the act is an opinion or advice, not the decision
    COUNTERSIGN = "countersign"  # a countersignature to a provider's decision
    HIGH_RISK = "high_risk"  # a high-risk case referred to the committee
    AGREEMENT = "agreement"  # an active data-use agreement (grant)
    BUDGET = "budget"  # privacy budget left
    AUTHORISATION = "authorisation"  # the enterprise's authorisation (SR-16)
    OUTSIDE_SANDBOX = "outside_sandbox"  # the provider's own systems, not the sandbox
    BREAK_GLASS = "break_glass"  # an emergency access, logged
    ESCALATED = "escalated"  # an escalated export review
    PLATFORM_CEILING = "platform_ceiling"  # platform-wide ceilings, not per-dataset caps
    DIRECTIVE = "directive"  # the supervisor directs the measure
    OPERATOR_APPROVAL = "operator_approval"  # published together with the operator
    CASE_FILE = "case_file"  # part of a case file referred to the committee


@dataclass(frozen=True)
class Cell:
    """One cell: what a matrix role may do for one action.

    ``requires`` must all be present for the request to pass. For a row-targeted request
    (one enterprise's rows, SR-16) ``targeted`` replaces ``requires``; ``None`` there means
    row-targeted requests are refused.
    """

    mark: Mark
    scope: Scope = Scope.ANY
    requires: frozenset[Condition] = frozenset()
    targeted: frozenset[Condition] | None = None
    text: str = ""

    @property
    def performs(self) -> bool:
        return self.mark in (Mark.ALLOW, Mark.LIMITED)


def _c(mark: Mark, text: str = "", scope: Scope = Scope.ANY, *requires: Condition) -> Cell:
    return Cell(mark, scope, frozenset(requires), None, text)


Y = Mark.ALLOW
L = Mark.LIMITED
N = Mark.DENY
V = Mark.VIEW
R = MatrixRole
C = Condition
S = Scope

_DENY = _c(N)
_VIEW = _c(V, "view")

#: The matrix, row by row (REQUIREMENTS §4; the cell texts are the matrix's own words).
MATRIX: dict[Action, dict[MatrixRole, Cell]] = {
    Action.REGISTER_DATASET: {
        R.PROVIDER: _c(Y, "own data", S.OWN_DATA),
        R.OPERATOR: _c(L, "technical fields", S.ANY, C.TECHNICAL_FIELDS),
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _c(L, "opinion", S.ANY, C.OPINION),
        R.SUPERVISOR: _VIEW,
    },
    Action.RECLASSIFY_TO_CONDITIONAL: {
        # A provider reclassifies its own datasets only (as in the row above).
        R.PROVIDER: _c(
            L,
            "with 脱敏 record or consent plus committee opinion",
            S.OWN_DATA,
            C.DEID_OR_CONSENT,
            C.COMMITTEE_OPINION,
        ),
        R.OPERATOR: _DENY,
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _c(L, "consent", S.OWN_RECORD, C.CONSENT),
        R.EXPERT_COMMITTEE: _c(L, "opinion", S.ANY, C.OPINION),
        R.SUPERVISOR: _VIEW,
    },
    Action.BROWSE_CATALOG: {role: _c(Y) for role in MatrixRole},
    Action.APPLY: {
        R.PROVIDER: _DENY,
        R.OPERATOR: _DENY,
        R.RESEARCHER: _c(Y),
        R.BANK: _c(Y),
        R.ENTERPRISE_USER: _c(Y),
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _DENY,
        R.SUPERVISOR: _VIEW,
    },
    Action.APPROVE_APPLICATION: {
        R.PROVIDER: _c(Y, "own data", S.OWN_DATA),
        R.OPERATOR: _c(L, "countersign", S.ANY, C.COUNTERSIGN),
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _c(L, "high-risk", S.ANY, C.HIGH_RISK),
        R.SUPERVISOR: _VIEW,
    },
    Action.MANAGE_AUTHORISATION: {
        R.PROVIDER: _DENY,
        R.OPERATOR: _DENY,
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _c(Y, "own record", S.OWN_RECORD),
        R.EXPERT_COMMITTEE: _DENY,
        R.SUPERVISOR: _VIEW,
    },
    Action.QUERY_T1: {
        R.PROVIDER: _c(N, "not as user"),
        R.OPERATOR: _DENY,
        R.RESEARCHER: _c(Y, "per agreement", S.ANY, C.AGREEMENT),
        R.BANK: _c(Y),
        R.ENTERPRISE_USER: _c(Y),
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _DENY,
        R.SUPERVISOR: _DENY,
    },
    Action.DP_QUERY: {
        R.PROVIDER: _DENY,
        R.OPERATOR: _DENY,
        R.RESEARCHER: _c(L, "agreement, budget", S.ANY, C.AGREEMENT, C.BUDGET),
        R.BANK: Cell(
            L,
            S.ANY,
            frozenset({C.AGREEMENT, C.BUDGET}),
            frozenset({C.AUTHORISATION}),
            "also needs authorisation for row-targeted enterprise queries",
        ),
        # The matrix gives the enterprise user a bare ◐: the researcher's conditions.
        R.ENTERPRISE_USER: _c(L, "", S.ANY, C.AGREEMENT, C.BUDGET),
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _DENY,
        R.SUPERVISOR: _DENY,
    },
    Action.SEE_RAW_ROWS: {
        R.PROVIDER: _c(L, "own data, outside the sandbox", S.OWN_DATA, C.OUTSIDE_SANDBOX),
        R.OPERATOR: _c(L, "break-glass, logged", S.ANY, C.BREAK_GLASS),
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _DENY,
        R.SUPERVISOR: _DENY,
    },
    Action.REQUEST_EXPORT: {
        R.PROVIDER: _DENY,
        R.OPERATOR: _DENY,
        R.RESEARCHER: _c(Y),
        R.BANK: _c(Y),
        R.ENTERPRISE_USER: _c(Y),
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _DENY,
        R.SUPERVISOR: _DENY,
    },
    Action.APPROVE_EXPORT: {
        R.PROVIDER: _c(Y, "own data", S.OWN_DATA),
        R.OPERATOR: _c(Y, "review desk"),
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _c(L, "escalations", S.ANY, C.ESCALATED),
        R.SUPERVISOR: _VIEW,
    },
    Action.SET_BUDGET_CAPS: {
        R.PROVIDER: _c(Y, "own data", S.OWN_DATA),
        R.OPERATOR: _c(L, "platform-wide ceilings", S.ANY, C.PLATFORM_CEILING),
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _c(L, "advise", S.ANY, C.OPINION),
        R.SUPERVISOR: _VIEW,
    },
    Action.FILE_REPORT: {role: _c(Y) for role in MatrixRole},
    Action.RECORD_VIOLATION: {
        R.PROVIDER: _c(Y, "own data", S.OWN_DATA),
        R.OPERATOR: _c(Y, "platform-wide"),
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _c(L, "opinion", S.ANY, C.OPINION),
        R.SUPERVISOR: _c(L, "direct", S.ANY, C.DIRECTIVE),
    },
    Action.PUBLISH_DISCLOSURE: {
        R.PROVIDER: _c(L, "", S.ANY, C.OPERATOR_APPROVAL),
        R.OPERATOR: _c(Y),
        R.RESEARCHER: _DENY,
        R.BANK: _DENY,
        R.ENTERPRISE_USER: _DENY,
        R.ENTERPRISE_SUBJECT: _DENY,
        R.EXPERT_COMMITTEE: _DENY,
        R.SUPERVISOR: _c(Y),
    },
    Action.READ_AUDIT: {
        R.PROVIDER: _c(Y, "own datasets", S.OWN_DATA),
        R.OPERATOR: _c(Y),
        R.RESEARCHER: _c(Y, "own activity", S.OWN_ACTIVITY),
        R.BANK: _c(Y, "own", S.OWN_ACTIVITY),
        R.ENTERPRISE_USER: _c(Y, "own", S.OWN_ACTIVITY),
        R.ENTERPRISE_SUBJECT: _c(Y, "own authorisations", S.OWN_AUTHORISATIONS),
        R.EXPERT_COMMITTEE: _c(Y, "case files", S.ANY, C.CASE_FILE),
        R.SUPERVISOR: _c(Y, "all"),
    },
}

#: Our account roles (``sandbox.control.models.UserRole``) → the matrix columns they hold.
ROLE_COLUMNS: dict[str, tuple[MatrixRole, ...]] = {
    "steward": (R.PROVIDER,),
    "admin": (R.OPERATOR,),
    "researcher": (R.RESEARCHER,),
    "bank": (R.BANK,),
    "enterprise": (R.ENTERPRISE_USER, R.ENTERPRISE_SUBJECT),
    "auditor": (R.SUPERVISOR,),
    "expert": (R.EXPERT_COMMITTEE,),
}


class ActorLike(Protocol):
    """What the rules read of an account (``sandbox.control.models.User`` fits)."""

    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def department(self) -> str | None: ...
    @property
    def uscc(self) -> str | None: ...
    @property
    def status(self) -> str: ...


@dataclass(frozen=True)
class Resource:
    """What an action is about.

    * ``departments``: provider departments of the dataset(s) concerned (for *own data*);
    * ``owner``: the username whose activity or request it is (for *own activity*);
    * ``uscc``: the enterprise the record is about (for *own record* / *own authorisations*);
    * ``conditions``: what the request shows (countersignature, agreement, ...);
    * ``row_targeted``: the request reads one enterprise's rows (SR-16).
    """

    departments: frozenset[str] = frozenset()
    owner: str | None = None
    uscc: str | None = None
    conditions: frozenset[Condition] = frozenset()
    row_targeted: bool = False
    label: str = field(default="", compare=False)

    @classmethod
    def of(
        cls,
        *,
        departments: Iterable[str] = (),
        owner: str | None = None,
        uscc: str | None = None,
        conditions: Iterable[Condition] = (),
        row_targeted: bool = False,
        label: str = "",
    ) -> Resource:
        return cls(frozenset(departments), owner, uscc, frozenset(conditions), row_targeted, label)


ANYTHING = Resource()


def columns_of(role: str) -> tuple[MatrixRole, ...]:
    return ROLE_COLUMNS.get(role, ())


def cell(column: MatrixRole, action: Action) -> Cell:
    return MATRIX[action][column]


def scope_matches(actor: ActorLike, scope: Scope, resource: Resource) -> bool:
    """Whether ``resource`` falls within ``scope`` for ``actor``."""
    if scope is Scope.ANY:
        return True
    if scope is Scope.OWN_DATA:
        return bool(actor.department) and actor.department in resource.departments
    if scope is Scope.OWN_ACTIVITY:
        return resource.owner is not None and resource.owner == actor.username
    # OWN_RECORD, OWN_AUTHORISATIONS: about the enterprise the actor is.
    return bool(actor.uscc) and resource.uscc == actor.uscc


def _missing(c: Cell, resource: Resource) -> frozenset[Condition] | None:
    """Conditions still missing for ``c`` (None: row-targeted requests are refused)."""
    needed = c.requires
    if resource.row_targeted:
        if c.targeted is None:
            return None
        needed = c.targeted
    return needed - resource.conditions


def _cell_allows(actor: ActorLike, c: Cell, resource: Resource, view: bool) -> bool:
    if view:
        return c.mark is Mark.VIEW or (c.performs and scope_matches(actor, c.scope, resource))
    if not c.performs or not scope_matches(actor, c.scope, resource):
        return False
    missing = _missing(c, resource)
    return missing is not None and not missing


def _reason(actor: ActorLike, action: Action, resource: Resource, view: bool) -> tuple[str, str]:
    """Message and hint for a refusal (the first column's view of it)."""
    title = ACTION_TITLES[action]
    verb = "see" if view else "do"
    cols = columns_of(actor.role)
    if not cols:
        return f"Role {actor.role!r} has no permissions in the sandbox.", "Ask the operator for a role."
    cells = [cell(col, action) for col in cols]
    what = f" ({resource.label})" if resource.label else ""
    if all(c.mark is Mark.DENY for c in cells):
        return (f"Role {actor.role!r} may not {verb} “{title}”{what} (REQUIREMENTS §4).", "")
    if not view and all(c.mark is Mark.VIEW for c in cells):
        return (
            f"Role {actor.role!r} may only view “{title}”{what}, not do it (REQUIREMENTS §4).",
            "Supervisors read; they change nothing (SR-38).",
        )
    for c in cells:
        if not c.performs:
            continue
        if not scope_matches(actor, c.scope, resource):
            return _scope_reason(actor, c.scope, title, what)
        missing = _missing(c, resource)
        if missing is None:
            return (
                f"Role {actor.role!r} may not make row-targeted requests for “{title}”{what}.",
                "Population-level questions go through DP queries.",
            )
        if missing:
            names = ", ".join(sorted(m.value for m in missing))
            return (
                f"Role {actor.role!r} may “{title}”{what} only with: {names} (REQUIREMENTS §4: ◐ {c.text}).",
                "Provide what is missing, or ask someone whose role allows it outright.",
            )
    return (f"Role {actor.role!r} may not {verb} “{title}”{what}.", "")


def _scope_reason(actor: ActorLike, scope: Scope, title: str, what: str) -> tuple[str, str]:
    if scope is Scope.OWN_DATA:
        dept = actor.department or "none"
        return (
            f"“{title}”{what}: {actor.username!r} acts only for datasets of department {dept!r}.",
            "Ask a steward of the providing department.",
        )
    if scope is Scope.OWN_ACTIVITY:
        return (f"“{title}”{what}: {actor.username!r} may see only their own activity.", "")
    return (
        f"“{title}”{what}: {actor.username!r} acts only for its own enterprise record.",
        "Only the enterprise itself grants or revokes its authorisations.",
    )


def check_can(actor: ActorLike, action: Action, resource: Resource = ANYTHING, *, view: bool = False) -> None:
    """Raise ``AccessDenied`` (``AccountInactive`` for a suspended or revoked account) unless allowed."""
    if actor.status != "approved":
        raise AccountInactive(f"Account {actor.username!r} is {actor.status}.")
    for column in columns_of(actor.role):
        if _cell_allows(actor, cell(column, action), resource, view):
            return
    message, hint = _reason(actor, action, resource, view)
    raise AccessDenied(message, hint=hint or None)


def can(actor: ActorLike, action: Action, resource: Resource = ANYTHING, *, view: bool = False) -> bool:
    """True when ``check_can`` would pass."""
    try:
        check_can(actor, action, resource, view=view)
    except AccessDenied:
        return False
    return True


def scopes(actor: ActorLike, action: Action) -> frozenset[Scope]:
    """The scopes under which ``actor`` may perform ``action`` without conditions (empty: never).

    A cell that needs conditions does not count: the committee's "Read audit logs" is ◐ *case
    files* (the files of its own items, shown by the committee workbench), not the whole log.
    """
    return frozenset(
        c.scope
        for c in (cell(col, action) for col in columns_of(actor.role))
        if c.performs and not c.requires
    )


def check_scopes(actor: ActorLike, action: Action) -> frozenset[Scope]:
    """The scopes under which ``actor`` may perform ``action``; ``AccessDenied`` when there are none.

    For listing views ("Read audit logs": own datasets / own activity / all), where each record
    is then filtered by the scopes returned.
    """
    if actor.status != "approved":
        raise AccountInactive(f"Account {actor.username!r} is {actor.status}.")
    allowed = scopes(actor, action)
    if not allowed:
        check_can(actor, action)  # raises with the reason
    return allowed


def render_matrix() -> str:
    """The matrix as a Markdown table in our roles' terms (docs/governance.md)."""
    roles = list(ROLE_COLUMNS)
    lines = ["| Action | " + " | ".join(roles) + " |", "| --- |" + " --- |" * len(roles)]
    for action in Action:
        cells = []
        for role in roles:
            parts = []
            for col in ROLE_COLUMNS[role]:
                c = cell(col, action)
                parts.append(f"{c.mark.value} {c.text}".strip() if c.mark is not Mark.VIEW else "view")
            cells.append(" / ".join(parts))
        lines.append(f"| {ACTION_TITLES[action]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "ACTION_TITLES",
    "ANYTHING",
    "MATRIX",
    "ROLE_COLUMNS",
    "Action",
    "ActorLike",
    "Cell",
    "Condition",
    "Mark",
    "MatrixRole",
    "Resource",
    "Scope",
    "can",
    "cell",
    "check_can",
    "check_scopes",
    "columns_of",
    "render_matrix",
    "scope_matches",
    "scopes",
]
