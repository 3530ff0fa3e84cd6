"""The expert committee's workbench pages (SR-37), on the pages listener.

Paths are relative to the service prefix:

====================================  ===============================================
``GET  /committee``                   the four queues with counts; the items you may see
``GET  /committee/{id}``              one item: case file, opinion, the forms you may use
``POST /committee/{id}/opinion``      record the committee's opinion (a member)
``POST /committee/{id}/withdraw``     withdraw an open item (its raiser, the operator)
====================================  ===============================================

Members read and decide; supervisors, the operator and stewards of the data concerned read
(SR-38); the raiser follows its own items. Every read and decision goes through
``sandbox.governance.committee``, which decides who may; the pages only draw the forms it
would accept. Every form carries the session's CSRF field (checked by the app for every POST).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sandbox.gateway.pages.auth import PageUser, require_user
from sandbox.governance import committee
from sandbox.governance.committee_rules import KIND_TITLES, ItemKind, ItemStatus, Opinion

router = APIRouter(include_in_schema=False)

User = Annotated[PageUser, Depends(require_user)]
ItemId = Annotated[int, Path(ge=1, le=2_147_483_647, description="Committee item id.")]
OPINION_WORDS = {
    Opinion.APPROVE: "同意 Approve",
    Opinion.APPROVE_WITH_CONDITIONS: "附条件同意 Approve with conditions",
    Opinion.REJECT: "不同意 Reject",
    Opinion.NEEDS_MORE_INFO: "补充材料 Needs more information",
}


def _render(request: Request, name: str, context: dict[str, Any]) -> Response:
    response: Response = request.app.state.render(request, name, context)
    return response


@router.get("/committee")
async def committee_page(
    request: Request,
    user: User,
    kind: Annotated[ItemKind | None, Query()] = None,
    status: Annotated[ItemStatus | None, Query()] = None,
) -> Response:
    ctx = request.app.state.ctx
    queues = await run_in_threadpool(committee.queues, ctx, user=user.name)
    items = await run_in_threadpool(
        committee.list_items,
        ctx,
        user=user.name,
        kind=kind.value if kind else None,
        status=status.value if status else None,
    )
    return _render(
        request,
        "pages/committee.html",
        {
            "queues": queues,
            "items": items,
            "kind": kind.value if kind else "",
            "status": status.value if status else "",
            "titles": {k.value: t for k, t in KIND_TITLES.items()},
            "member": user.role == "expert",
        },
    )


@router.get("/committee/{item_id}")
async def committee_item_page(
    request: Request,
    user: User,
    item_id: ItemId,
    done: Annotated[Literal["opinion", "withdrawn"] | None, Query()] = None,
) -> Response:
    ctx = request.app.state.ctx
    record = await run_in_threadpool(committee.show, ctx, user=user.name, item_id=item_id)
    actions = await run_in_threadpool(committee.actions_for, ctx, user=user.name, item_id=item_id)
    return _render(
        request,
        "pages/committee_item.html",
        {
            "item": record,
            "actions": actions,
            "done": done,
            "titles": {k.value: t for k, t in KIND_TITLES.items()},
            "opinions": [(o.value, OPINION_WORDS[o]) for o in Opinion],
            "words": {o.value: w for o, w in OPINION_WORDS.items()},
        },
    )


@router.post("/committee/{item_id}/opinion")
async def post_opinion(
    request: Request,
    user: User,
    item_id: ItemId,
    opinion: Annotated[Opinion, Form()],
    reason: Annotated[str, Form(max_length=10_000)] = "",
    members: Annotated[list[str] | None, Form()] = None,
    conditions: Annotated[str, Form(max_length=10_000)] = "",
    decided_on: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    app = request.app.state
    await run_in_threadpool(
        committee.record_opinion,
        app.ctx,
        actor=user.name,
        item_id=item_id,
        opinion=opinion,
        members=members or [],
        reason=reason,
        conditions=conditions or None,
        decided_on=decided_on or None,
    )
    return RedirectResponse(f"{app.prefix}committee/{item_id}?done=opinion", status_code=303)


@router.post("/committee/{item_id}/withdraw")
async def post_withdraw(
    request: Request,
    user: User,
    item_id: ItemId,
    reason: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    app = request.app.state
    await run_in_threadpool(committee.withdraw, app.ctx, actor=user.name, item_id=item_id, reason=reason)
    return RedirectResponse(f"{app.prefix}committee/{item_id}?done=withdrawn", status_code=303)


__all__ = ["router"]
