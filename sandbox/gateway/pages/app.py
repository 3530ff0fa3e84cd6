"""``create_pages_app(settings, ctx=None, oauth=None)``: the browser pages, on their own listener.

Two listeners run in the gateway process (``sandbox gateway serve``):

* the **JSON API** (:func:`sandbox.gateway.app.create_app`) on 127.0.0.1:``SANDBOX_GATEWAY_PORT``,
  which the hub does **not** route: kernels reach it on loopback, nobody reaches it from outside;
* these **pages** (HTML only, no ``/api`` path at all) on 127.0.0.1:``SANDBOX_PAGES_PORT``, which
  the hub routes publicly at ``/services/sandbox/`` (the ``sandbox`` service's ``url``) and for
  which it creates the OAuth client used for browser sign-in.

So ``http://<hub>/services/sandbox/api/v1/...`` reaches this app and gets its 404 page: the API is
not behind the public proxy, whatever path is tried.

What the app holds: export review for stewards (``routes``), the expert committee's
workbench (``committee``), the governance pages of
``sandbox.gateway.routes.governance`` (its page routes only, never its API routes; their
``Caller`` is resolved from the session cookie here), the public disclosure list, a home page
by role, one HTML error page, CSRF protection on every form, and security headers.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.config import Settings
from sandbox.export.quarantine import QuarantineStore
from sandbox.export.service import ExportContext
from sandbox.gateway.app import service_prefix
from sandbox.gateway.deps import get_caller
from sandbox.gateway.pages import committee, routes
from sandbox.gateway.pages.auth import BrowserAuth, CookieSigner, HubBrowserAuth, page_caller
from sandbox.gateway.pages.csrf import FIELD, CsrfFormMiddleware, check_csrf, csrf_token_for
from sandbox.gateway.pages.errors import CrashPage, install_error_pages

TEMPLATES_DIR = FsPath(__file__).resolve().parent.parent / "templates"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'none'; "
    "object-src 'none'; frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
)
"""No scripts at all; styles from us (the governance layout inlines its own)."""


def _default_context(settings: Settings) -> Any:
    from sandbox.services.queries import ServiceContext

    return ServiceContext.from_settings(settings)


def governance_page_router() -> APIRouter:
    """The governance *page* routes (every path not under ``/api``), public disclosures included."""
    from sandbox.gateway.routes import governance

    pages = APIRouter(include_in_schema=False)
    for route in governance.router.routes:
        if isinstance(route, APIRoute) and not route.path.lstrip("/").startswith("api"):
            pages.routes.append(route)
    return pages


def create_pages_app(
    settings: Settings,
    ctx: Any = None,
    oauth: BrowserAuth | None = None,
    *,
    prefix: str | None = None,
    cookie_secret: bytes | None = None,
) -> FastAPI:
    """Build the pages app. Without ``oauth`` it signs browsers in with the hub (HubOAuth)."""
    base = service_prefix(prefix)
    app = FastAPI(
        title="Data sandbox pages",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(check_csrf)],
    )
    state = app.state
    state.settings = settings
    state.ctx = ctx if ctx is not None else _default_context(settings)
    state.oauth = oauth if oauth is not None else HubBrowserAuth()
    state.signer = CookieSigner(cookie_secret)
    state.prefix = base
    state.export_ctx = ExportContext(
        catalog=state.ctx.catalog,
        control_engine=state.ctx.control_engine,
        quarantine=QuarantineStore(getattr(state.ctx, "settings", settings).quarantine_dir),
    )
    templates = Jinja2Templates(
        env=jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
    )
    mounted = {"exports", "disclosures", "committee"}

    app.include_router(routes.router, prefix=base.rstrip("/"))
    app.include_router(committee.router, prefix=base.rstrip("/"))
    governance = governance_page_router()
    app.include_router(governance, prefix=base.rstrip("/"))
    app.dependency_overrides[get_caller] = page_caller  # cookie session, not a token header
    mounted.update(
        route.path.removeprefix("/").rstrip("/") or "governance"
        for route in governance.routes
        if isinstance(route, APIRoute) and "{" not in route.path and "GET" in (route.methods or ())
    )
    state.mounted = frozenset(mounted)

    platform = state.ctx.catalog.platform

    def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
        page_user = getattr(request.state, "page_user", None)
        full = {
            "prefix": base,
            "platform": platform.name,
            "user": page_user,
            "csrf_field": FIELD,
            "csrf": csrf_token_for(request) if page_user is not None else None,
            "mounted": state.mounted,
            **context,
        }
        return templates.TemplateResponse(request, name, full, status_code=status_code)

    state.render = render
    install_error_pages(app)
    app.add_middleware(CsrfFormMiddleware)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(CrashPage)
    return app


class SecurityHeaders:
    """Pure ASGI: no framing by other sites, no sniffing, no caching of pages, a strict CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "SAMEORIGIN")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cache-Control", "no-store")
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, with_headers)
