"""``GET catalog`` and ``GET datasets/{dataset_id}``: public metadata only (policy, not data)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from sandbox.gateway import backend
from sandbox.gateway.deps import Caller, Ctx
from sandbox.gateway.models import CatalogPublic, DatasetPublic

router = APIRouter(tags=["catalogue"])

DatasetId = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]*$", max_length=64, description="Dataset id.")]


@router.get("/catalog", response_model=CatalogPublic, summary="Every dataset of the catalogue")
async def get_catalog(caller: Caller, ctx: Ctx) -> CatalogPublic:
    return backend.catalog(ctx)


@router.get("/datasets/{dataset_id}", response_model=DatasetPublic, summary="Public metadata of one dataset")
async def get_dataset(dataset_id: DatasetId, caller: Caller, ctx: Ctx) -> DatasetPublic:
    return backend.dataset(ctx, dataset_id)
