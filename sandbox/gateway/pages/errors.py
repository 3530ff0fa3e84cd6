"""The pages' one error renderer: an HTML page with the SandboxError's message and hint.

Exceptions are mapped exactly as the JSON API maps them (``sandbox.gateway.errors.translate``:
the same codes, statuses, messages and hints); only the rendering differs. A page that needs
a signed-in user and has none is not an error: GET requests are sent to the hub's sign-in
(:class:`~sandbox.gateway.pages.auth.LoginRequired`), other methods get 401.

Tracebacks never reach a page: an unexpected exception is logged with a request id and the
page shows only that id.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.errors import AuthenticationFailed, NotFound, SandboxError
from sandbox.gateway.errors import translate
from sandbox.gateway.pages.auth import STATE_MAX_AGE, LoginRequired, local_next

log = logging.getLogger("sandbox.gateway.pages")

STATE_COOKIE_SUFFIX = "-oauth-state"


def _request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if not isinstance(rid, str):
        rid = uuid.uuid4().hex
        request.state.request_id = rid
    return rid


def error_page(request: Request, err: SandboxError, request_id: str) -> HTMLResponse:
    """Render ``err`` with the base layout (status, code, message, hint)."""
    message = err.message
    if err.status >= 500 and "request id" not in message:
        message = f"{message} (request id {request_id})"
    render = request.app.state.render
    response: HTMLResponse = render(
        request,
        "pages/error.html",
        {"error": err, "message": message, "hint": err.hint, "request_id": request_id},
        status_code=err.status,
    )
    response.headers["X-Request-ID"] = request_id
    return response


def start_login(request: Request, next_url: str) -> Response:
    """302 to the hub's authorize URL with a fresh state, kept in a signed cookie."""
    state = request.app.state
    prefix: str = state.prefix
    start = state.oauth.start(local_next(prefix, next_url))
    response = RedirectResponse(start.url, status_code=302)
    response.set_cookie(
        state.oauth.cookie_name + STATE_COOKIE_SUFFIX,
        state.signer.sign("state", start.state),
        max_age=STATE_MAX_AGE,
        path=prefix,
        httponly=True,
        secure=is_https(request),
        samesite="lax",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def is_https(request: Request) -> bool:
    """The browser's scheme: the proxy's X-Forwarded-Proto (the listener is on loopback)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return (forwarded or request.url.scheme) == "https"


async def _handle(request: Request, exc: Exception) -> Response:
    if isinstance(exc, LoginRequired):
        if request.method in ("GET", "HEAD"):
            return start_login(request, exc.next_url)
        exc = AuthenticationFailed(
            "You are not signed in (your session has ended).",
            hint="Open the page again to sign in through the hub, then resubmit.",
        )
    rid = _request_id(request)
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 404:
        err: SandboxError = NotFound(
            "There is no such page.", hint="Start from the sandbox home page (the link at the top)."
        )
    else:
        err = translate(exc, rid)
    return error_page(request, err, rid)


class CrashPage:
    """Pure ASGI, outermost: an exception no handler took becomes the HTML 500 page (logged with an id)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            rid = uuid.uuid4().hex
            if started:
                log.error("page error after the response started, request id %s", rid, exc_info=exc)
                return
            request = Request(scope, receive)
            try:
                response: Response = error_page(request, translate(exc, rid), rid)
            except Exception:  # the layout itself failed: plain text, still no traceback
                response = HTMLResponse(f"Internal error (request id {rid}).", status_code=500)
            await response(scope, receive, send)


def install_error_pages(app: FastAPI) -> None:
    for kind in (SandboxError, RequestValidationError, StarletteHTTPException, LoginRequired):
        app.add_exception_handler(kind, _handle)
