"""The home page's "what you may do": the permission matrix (REQUIREMENTS §4) for one role.

Read from ``sandbox.governance.permissions`` (the one copy of the matrix), so the page
cannot drift from what the services enforce. Each row links to the page where the action
is done, when that page is mounted here; actions done from the notebook say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.governance.permissions import ACTION_TITLES, Action, Mark, MatrixRole, cell, columns_of

PAGE_OF: dict[Action, str] = {
    Action.APPROVE_EXPORT: "exports",
    Action.REQUEST_EXPORT: "exports",
    Action.APPLY: "governance/applications",
    Action.APPROVE_APPLICATION: "governance/applications",
    Action.MANAGE_AUTHORISATION: "governance/consents",
    Action.FILE_REPORT: "governance/requests",
    Action.RECORD_VIOLATION: "governance/violations",
    Action.PUBLISH_DISCLOSURE: "disclosures",
    Action.READ_AUDIT: "governance/audit",
}
"""Where each action is done in these pages (relative to the prefix)."""

COMMITTEE_PAGE = "committee"
"""Where the expert committee gives every opinion of its column (SR-37)."""

IN_NOTEBOOK: dict[Action, str] = {
    Action.BROWSE_CATALOG: "sb.catalog()",
    Action.QUERY_T1: "sb.table(...)",
    Action.DP_QUERY: "sb.query(...)",
    Action.REQUEST_EXPORT: "sb.export(...)",
}
"""Actions done from the notebook client, with the call to use."""

MARK_WORDS = {Mark.ALLOW: "yes", Mark.LIMITED: "limited", Mark.VIEW: "view only"}


@dataclass(frozen=True)
class Capability:
    action: str
    title: str
    mark: str
    words: str
    detail: str
    href: str | None
    notebook: str | None


def for_role(role: str, mounted: frozenset[str]) -> list[Capability]:
    """Every action the role may perform or view, in matrix order (denied ones left out).

    ``mounted``: page paths available in this app (a link is drawn only to those).
    """
    out: list[Capability] = []
    for action in Action:
        cells = [cell(column, action) for column in columns_of(role)]
        kept = [c for c in cells if c.mark is not Mark.DENY]
        if not kept:
            continue
        best = next((c for c in kept if c.mark is Mark.ALLOW), None) or next(
            (c for c in kept if c.mark is Mark.LIMITED), kept[0]
        )
        page = PAGE_OF.get(action)
        if MatrixRole.EXPERT_COMMITTEE in columns_of(role) and best.mark is Mark.LIMITED:
            page = COMMITTEE_PAGE
        out.append(
            Capability(
                action=action.value,
                title=ACTION_TITLES[action],
                mark=best.mark.value,
                words=MARK_WORDS[best.mark],
                detail="; ".join(dict.fromkeys(c.text for c in kept if c.text and c.text != "view")),
                href=page if page is not None and page in mounted else None,
                notebook=IN_NOTEBOOK.get(action) if best.mark is not Mark.VIEW else None,
            )
        )
    return out
