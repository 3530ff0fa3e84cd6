"""The gateway's one error renderer: every failure leaves as ``{"error": {"code", "message", "hint"}}``.

* A :class:`~sandbox.errors.SandboxError` is rendered with its own status, code, message and hint.
* FastAPI's request validation errors become ``invalid_request`` (400, the class of
  ``sandbox.access.errors``); the message names the offending fields but never echoes the
  submitted values.
* Starlette's HTTP errors (unknown path, wrong method) become ``not_found`` / ``method_not_allowed``.
* Anything else is a bug: 500 ``internal_error`` carrying only the request id; the traceback goes
  to the gateway's log under that id.

The ``details`` a domain error may carry are never rendered: they are for the audit log and
the CLI, and could hold more than a researcher may see (STYLE.md, DP rule).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    SandboxError,
)

log = logging.getLogger("sandbox.gateway")

REQUEST_ID_HEADER = "X-Request-ID"
VALIDATION_HINT = "Check the request against the gateway's OpenAPI description (<prefix>api/v1/openapi.json)."


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else "-"


def error_body(code: str, message: str, hint: str) -> dict[str, Any]:
    """The one documented error shape."""
    return {"error": {"code": code, "message": message, "hint": hint}}


def render_error(err: SandboxError, request_id: str) -> JSONResponse:
    """Render a SandboxError: the only place that turns an error into HTTP."""
    message = err.message
    if err.status >= 500 and "request id" not in message:
        message = f"{message} (request id {request_id})"
    return JSONResponse(
        error_body(err.code, message, err.hint),
        status_code=err.status,
        headers={REQUEST_ID_HEADER: request_id},
    )


def _validation_message(errors: Sequence[Any]) -> str:
    """Name the fields that failed and why; never the submitted values (they may hold secrets)."""
    parts: list[str] = []
    for item in errors[:5]:
        if not isinstance(item, dict):
            continue
        loc = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body",)) or "request"
        parts.append(f"{loc}: {item.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "Invalid request: " + ("; ".join(parts) if parts else "malformed input") + more


def translate(exc: Exception, request_id: str) -> SandboxError:
    """Map any exception raised while handling a request to the SandboxError that is rendered."""
    if isinstance(exc, SandboxError):
        return exc
    if isinstance(exc, RequestValidationError):
        return InvalidRequest(_validation_message(exc.errors()), hint=VALIDATION_HINT)
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return NotFound("No such API path.", hint="The API lives under <prefix>api/v1/; see its OpenAPI.")
        if exc.status_code == 405:
            return MethodNotAllowed("This path does not accept that method.")
        if 400 <= exc.status_code < 500:
            return InvalidRequest(f"The request was refused (HTTP {exc.status_code}).", hint=VALIDATION_HINT)
    log.error("unhandled error, request id %s", request_id, exc_info=exc)
    return InternalError(f"Internal error (request id {request_id}).")


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id_of(request)
    return render_error(translate(exc, rid), rid)


class RequestIdMiddleware:
    """Give every request an id (header ``X-Request-ID`` on the response) and turn a crash into a 500.

    Pure ASGI, outermost: an exception that escapes every handler is logged with the id and
    answered with ``internal_error`` (only if no response has started), never re-raised into
    the server's log as a bare traceback without the id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                log.error("error after the response started, request id %s", rid, exc_info=exc)
                return
            response = render_error(translate(exc, rid), rid)
            await response(scope, receive, send)


def install_error_handling(app: FastAPI) -> None:
    """Register the single handler for every error type, and the request-id middleware."""
    app.add_exception_handler(SandboxError, _handle)
    app.add_exception_handler(RequestValidationError, _handle)
    app.add_exception_handler(StarletteHTTPException, _handle)
    app.add_middleware(RequestIdMiddleware)
