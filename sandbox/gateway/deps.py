"""Typed dependencies: the service context and the authenticated, registered caller.

``Caller`` runs on every API request except ``health``: the token is checked by the
:class:`~sandbox.gateway.auth.Authenticator` (the hub), then the sandbox's registry
decides whether that person may use the sandbox at all (known, approved, not suspended
or revoked). Finer rules (project, grant, tier, budget) are applied by the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from sandbox.gateway import backend
from sandbox.gateway.auth import Authenticator, HubIdentity, token_from_header

# Declared for OpenAPI (security scheme); parsed by token_from_header, which accepts "token" and "Bearer".
_authorization = APIKeyHeader(
    name="Authorization",
    auto_error=False,
    scheme_name="HubToken",
    description="`token <JupyterHub API token>` (or `Bearer <token>`): the kernel's $JUPYTERHUB_API_TOKEN.",
)


@dataclass(frozen=True)
class CallerInfo:
    """Who is calling: the hub identity and the sandbox account it maps to."""

    identity: HubIdentity
    account: backend.Account

    @property
    def name(self) -> str:
        return self.identity.name


def get_ctx(request: Request) -> Any:
    return request.app.state.ctx


async def get_caller(
    request: Request, authorization: Annotated[str | None, Depends(_authorization)] = None
) -> CallerInfo:
    token = token_from_header(authorization)
    authenticator: Authenticator = request.app.state.authenticator
    identity = await authenticator.authenticate(token)
    ctx = request.app.state.ctx
    account = await run_in_threadpool(backend.active_account, ctx, identity.name)
    await run_in_threadpool(backend.note_login, ctx, account.name, token)
    return CallerInfo(identity=identity, account=account)


Ctx = Annotated[Any, Depends(get_ctx)]
Caller = Annotated[CallerInfo, Depends(get_caller)]
