"""The gateway's FastAPI app factory: ``create_app(settings, ctx=None, auth=None)``.

Every route lives under ``<prefix>api/v1/`` where ``prefix`` is the hub service prefix
(``$JUPYTERHUB_SERVICE_PREFIX``, default ``/services/sandbox/``). The OpenAPI
description is served at ``<prefix>api/v1/openapi.json``.

``ctx`` (a ``sandbox.services.queries.ServiceContext``) and ``auth`` (an
:class:`~sandbox.gateway.auth.Authenticator`) are injected by tests; by default they
are built from ``settings`` and from the hub service environment.

While the app runs (its lifespan), ``sandbox.gateway.sweeper`` marks budget reservations
left in flight by dead processes as abandoned, at start-up and every 5 minutes.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from sandbox.config import Settings
from sandbox.gateway import sweeper
from sandbox.gateway.auth import Authenticator, HubAuthenticator
from sandbox.gateway.errors import install_error_handling
from sandbox.gateway.models import ErrorResponse
from sandbox.gateway.routes import catalog, exports, governance, meta, queries, rows

DEFAULT_PREFIX = "/services/sandbox/"
API_VERSION = "v1"

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Invalid query or request: invalid_query (and its sub-codes), invalid_request, ...",
        401: "Missing, malformed or unknown token (authentication_failed).",
        403: "Not allowed: account, project, grant, tier or budget (code says which).",
        404: "Unknown dataset or resource.",
        500: "Internal error; the message carries a request id.",
        503: "JupyterHub did not answer the identity check (hub_unavailable).",
    }.items()
}


def service_prefix(value: str | None = None) -> str:
    """The URL prefix, normalised to ``/.../`` (from ``$JUPYTERHUB_SERVICE_PREFIX`` by default)."""
    prefix = value or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or DEFAULT_PREFIX
    return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"


def _default_context(settings: Settings) -> Any:
    from sandbox.services.queries import ServiceContext

    return ServiceContext.from_settings(settings)


def create_app(
    settings: Settings,
    ctx: Any = None,
    auth: Authenticator | None = None,
    *,
    prefix: str | None = None,
) -> FastAPI:
    """Build the gateway app. Without ``auth`` it validates tokens with JupyterHub (HubAuth)."""
    base = service_prefix(prefix)
    api = f"{base}api/{API_VERSION}"
    app = FastAPI(
        title="Data sandbox gateway",
        version=API_VERSION,
        summary="Differentially private queries, open data and the export gate, for sandbox notebooks.",
        description=(
            "Every request carries the caller's JupyterHub API token "
            "(`Authorization: token <token>`). Every error has the shape "
            '`{"error": {"code", "message", "hint"}}`; see docs/gateway-api.md.'
        ),
        openapi_url=f"{api}/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses=_ERROR_RESPONSES,
        lifespan=sweeper.lifespan,  # sweeps abandoned budget reservations (sandbox.gateway.sweeper)
    )
    app.state.settings = settings
    app.state.authenticator = auth if auth is not None else HubAuthenticator()
    app.state.ctx = ctx if ctx is not None else _default_context(settings)
    app.state.prefix = base
    install_error_handling(app)
    for module in (meta, catalog, queries, rows, exports):
        app.include_router(module.router, prefix=api)
    app.include_router(governance.router, prefix=base.rstrip("/"))  # governance API and pages
    _document_errors_only_in_our_shape(app)
    return app


def _document_errors_only_in_our_shape(app: FastAPI) -> None:
    """Drop FastAPI's default 422 ``HTTPValidationError`` from the OpenAPI description.

    Validation failures are answered with 400 ``invalid_request`` in the one error shape,
    which every operation documents already.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            for path_item in schema.get("paths", {}).values():
                for operation in path_item.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
