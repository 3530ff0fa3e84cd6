"""``GET datasets/{dataset_id}/rows``: paged rows of open-tier datasets only (SR-10)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from sandbox.gateway import backend
from sandbox.gateway.deps import Caller, Ctx
from sandbox.gateway.models import RowsPage
from sandbox.gateway.routes.catalog import DatasetId

router = APIRouter(tags=["open data"])

MAX_PAGE = 10_000


@router.get(
    "/datasets/{dataset_id}/rows",
    response_model=RowsPage,
    summary="Rows of an open dataset, one page at a time (other tiers: access_denied)",
)
async def get_rows(
    dataset_id: DatasetId,
    caller: Caller,
    ctx: Ctx,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="First row (0-based).")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page.")] = 1000,
) -> RowsPage:
    return await run_in_threadpool(backend.open_rows, ctx, caller.account, dataset_id, offset, limit)
