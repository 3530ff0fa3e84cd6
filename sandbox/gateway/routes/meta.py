"""``GET health`` (no authentication) and ``GET whoami``."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from sandbox.gateway.deps import Caller
from sandbox.gateway.models import ProjectPublic, WhoAmI

router = APIRouter(tags=["meta"])


class Health(BaseModel):
    status: str


@router.get("/health", response_model=Health, summary="Liveness (no token needed)")
async def health() -> Health:
    return Health(status="ok")


@router.get("/whoami", response_model=WhoAmI, summary="The caller as the sandbox knows them")
async def whoami(caller: Caller) -> WhoAmI:
    account = caller.account
    return WhoAmI(
        name=caller.name,
        groups=list(caller.identity.groups),
        role=account.role,
        status=account.status,
        organisation=account.organisation,
        projects=[ProjectPublic(name=p.name, title=p.title, role=p.role) for p in account.projects],
    )
