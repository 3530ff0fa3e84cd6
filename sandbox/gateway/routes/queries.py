"""``POST query``, ``POST preview`` and ``GET budget``: the DP path, through the services layer.

The services authorise (membership, grant, tier), validate against public metadata,
compile, reserve, execute and commit the charge with its audit event. Database work
runs in the threadpool so the event loop keeps serving other notebooks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from sandbox.gateway import backend
from sandbox.gateway.deps import Caller, Ctx
from sandbox.gateway.models import Budgets, Preview, QueryRequest, Release

router = APIRouter(tags=["queries"])

ProjectParam = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="Project; omit for all of the caller's projects."),
]


@router.post("/query", response_model=Release, summary="Run a DP query and spend its epsilon")
async def post_query(body: QueryRequest, caller: Caller, ctx: Ctx) -> Release:
    return await run_in_threadpool(backend.run_query, ctx, caller.account, body)


@router.post("/preview", response_model=Preview, summary="Expected accuracy and cost; spends nothing")
async def post_preview(body: QueryRequest, caller: Caller, ctx: Ctx) -> Preview:
    return await run_in_threadpool(backend.preview, ctx, caller.account, body)


@router.get("/budget", response_model=Budgets, summary="Spent and remaining budget per dataset")
async def get_budget(caller: Caller, ctx: Ctx, project: ProjectParam = None) -> Budgets:
    return await run_in_threadpool(backend.budgets, ctx, caller.account, project)
