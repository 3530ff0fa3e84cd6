"""The export request state machine: one table of valid transitions.

Pure, no I/O. Modelled on OpenSAFELY Airlock (STYLE.md): the states and the
moves between them live in :data:`TRANSITIONS`, and every caller asks
:func:`check_can_transition` (raises with a readable reason, which is also the
UI's reason) or :func:`can_transition` (yes/no). Nothing else decides whether
a move is allowed.

Who may make a move is an :class:`ExportActor`, a role *relative to the
request*, not a platform role: the service works out whether the caller is the
requester, a reviewer (a steward of a provider department whose data the file
derives from, DESIGN §5), the system (automatic checks) or an admin.
Auditors read only, so they are no actor here (SR-38).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sandbox.errors import InvalidTransition


class ExportStatus(StrEnum):
    SUBMITTED = "submitted"
    CHECKED = "checked"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    RELEASED = "released"
    WITHDRAWN = "withdrawn"


class ExportActor(StrEnum):
    """Who acts on a request, relative to that request."""

    REQUESTER = "requester"
    REVIEWER = "reviewer"
    SYSTEM = "system"
    ADMIN = "admin"


@dataclass(frozen=True)
class Transition:
    source: ExportStatus
    target: ExportStatus
    actors: frozenset[ExportActor]
    meaning: str


def _t(source: ExportStatus, target: ExportStatus, actors: set[ExportActor], meaning: str) -> Transition:
    return Transition(source, target, frozenset(actors), meaning)


S = ExportStatus
A = ExportActor

#: Every valid move. Anything not listed here is refused.
TRANSITIONS: tuple[Transition, ...] = (
    _t(S.SUBMITTED, S.CHECKED, {A.SYSTEM}, "automatic checks ran and none failed"),
    _t(S.SUBMITTED, S.REJECTED, {A.SYSTEM}, "an automatic check failed"),
    _t(S.SUBMITTED, S.WITHDRAWN, {A.REQUESTER, A.ADMIN}, "withdrawn before the checks finished"),
    _t(S.CHECKED, S.UNDER_REVIEW, {A.SYSTEM}, "a steward must review (SR-26)"),
    _t(S.CHECKED, S.APPROVED, {A.SYSTEM}, "auto-approved: open data only and every check passed"),
    _t(S.CHECKED, S.WITHDRAWN, {A.REQUESTER, A.ADMIN}, "withdrawn by the requester"),
    _t(S.UNDER_REVIEW, S.APPROVED, {A.REVIEWER}, "the required stewards approved"),
    _t(S.UNDER_REVIEW, S.REJECTED, {A.REVIEWER}, "a steward rejected it"),
    _t(S.UNDER_REVIEW, S.WITHDRAWN, {A.REQUESTER, A.ADMIN}, "withdrawn during review"),
    _t(S.APPROVED, S.RELEASED, {A.REQUESTER, A.SYSTEM}, "file handed out with its manifest"),
    _t(S.APPROVED, S.WITHDRAWN, {A.REQUESTER, A.ADMIN}, "withdrawn before release"),
)

#: States with no way out.
FINAL_STATES: frozenset[ExportStatus] = frozenset({S.REJECTED, S.RELEASED, S.WITHDRAWN})


def _find(current: ExportStatus, target: ExportStatus) -> Transition | None:
    for transition in TRANSITIONS:
        if transition.source == current and transition.target == target:
            return transition
    return None


def allowed_targets(current: ExportStatus, actor: ExportActor | None = None) -> list[ExportStatus]:
    """Statuses reachable from ``current`` in one move (by ``actor`` when given)."""
    return [t.target for t in TRANSITIONS if t.source == current and (actor is None or actor in t.actors)]


def check_can_transition(
    current: ExportStatus | str, target: ExportStatus | str, actor_role: ExportActor | str | None
) -> Transition:
    """Return the transition, or raise :class:`InvalidTransition` saying why not.

    ``actor_role`` is ``None`` for someone with no role on this request (an
    auditor, or a steward of an unrelated department).
    """
    cur = ExportStatus(current)
    tgt = ExportStatus(target)
    actor = ExportActor(actor_role) if actor_role is not None else None
    if cur in FINAL_STATES:
        raise InvalidTransition(
            f"This export request is {cur.value}, which is final; it cannot become {tgt.value}.",
            hint="Submit a new export request instead.",
            current=cur.value,
            target=tgt.value,
        )
    transition = _find(cur, tgt)
    if transition is None:
        options = ", ".join(s.value for s in allowed_targets(cur)) or "none"
        raise InvalidTransition(
            f"An export request cannot go from {cur.value} to {tgt.value}.",
            hint=f"From {cur.value} it can only become: {options}.",
            current=cur.value,
            target=tgt.value,
        )
    if actor is None or actor not in transition.actors:
        who = " or ".join(sorted(a.value for a in transition.actors))
        acting = actor.value if actor is not None else "someone with no role on this request"
        raise InvalidTransition(
            f"Only the {who} may move an export request from {cur.value} to {tgt.value}; "
            f"you are acting as {acting}.",
            hint=_hint_for(transition),
            current=cur.value,
            target=tgt.value,
        )
    return transition


def can_transition(
    current: ExportStatus | str, target: ExportStatus | str, actor_role: ExportActor | str | None
) -> bool:
    try:
        check_can_transition(current, target, actor_role)
    except InvalidTransition:
        return False
    return True


def _hint_for(transition: Transition) -> str:
    if transition.actors == {ExportActor.REVIEWER}:
        return (
            "A steward of a department whose data the file derives from must decide; "
            "nobody reviews their own request."
        )
    if transition.actors == {ExportActor.SYSTEM}:
        return "This step is taken by the export gate itself after its checks."
    return "Ask the requester (or an admin) to do this."


def mermaid() -> str:
    """The state diagram as a Mermaid ``stateDiagram-v2`` (kept in docs/export-states.md)."""
    lines = ["stateDiagram-v2", f"    [*] --> {ExportStatus.SUBMITTED.value}"]
    for t in TRANSITIONS:
        who = ", ".join(a.value for a in ExportActor if a in t.actors)
        lines.append(f"    {t.source.value} --> {t.target.value} : {who}")
    for final in ExportStatus:
        if final in FINAL_STATES:
            lines.append(f"    {final.value} --> [*]")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The transitions as a Markdown table (from | to | who | meaning)."""
    rows = ["| from | to | who may | meaning |", "| --- | --- | --- | --- |"]
    for t in TRANSITIONS:
        who = ", ".join(a.value for a in ExportActor if a in t.actors)
        rows.append(f"| {t.source.value} | {t.target.value} | {who} | {t.meaning} |")
    return "\n".join(rows) + "\n"


def render_doc() -> str:
    """The full text of docs/export-states.md (a test keeps the file equal to this)."""
    return (
        "# Export request states\n\n"
        "Generated from `sandbox/export/states.py` (`states.render_doc()`); "
        "a unit test fails when this file and the table differ. Regenerate with\n"
        "`python -c 'from sandbox.export import states; print(states.render_doc(), end=\"\")' "
        "> docs/export-states.md`.\n\n"
        "```mermaid\n"
        f"{mermaid()}"
        "```\n\n"
        f"{markdown_table()}\n"
        "Final states: " + ", ".join(s.value for s in ExportStatus if s in FINAL_STATES) + ".\n\n"
        "Roles are relative to the request: *requester* submitted it; *reviewer* is a steward of a "
        "provider department whose data the file derives from (never the requester); *system* is the "
        "gate's automatic checks; *admin* may withdraw. Auditors only read.\n"
    )
