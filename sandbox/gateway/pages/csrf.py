"""CSRF protection for every form the pages app serves.

* The token is a keyed digest of the session token (:meth:`CookieSigner.derive`): bound to
  one signed-in session, never stored, useless to another browser.
* :func:`check_csrf` runs on **every** route of the pages app (an app-level dependency):
  a POST (or any unsafe method) needs the token in the form field ``_csrf`` (or the
  ``X-CSRF-Token`` header) and a valid session; otherwise it is refused with 403 before
  the route runs.
* :class:`CsrfFormMiddleware` adds the hidden ``_csrf`` field to every
  ``<form method="post">`` of an HTML page that lacks one, so pages rendered by other
  routers mounted here (the governance pages) are protected without knowing about it.
  Our own templates write the field themselves.

The session cookie is also ``SameSite=Lax``: a cross-site form post does not carry it.
"""

from __future__ import annotations

import hmac
import re
from typing import Any, ClassVar

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.errors import AccessDenied
from sandbox.gateway.pages.auth import session_token

FIELD = "_csrf"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(AccessDenied):
    code: ClassVar[str] = "csrf_refused"
    default_hint: ClassVar[str] = "Reload the page and submit the form again; if it persists, sign in again."


def csrf_token_for(request: Request) -> str | None:
    """The CSRF token of the request's session, or None when nobody is signed in."""
    token = session_token(request)
    if token is None:
        return None
    value: str = request.app.state.signer.derive("csrf", token)
    return value


async def check_csrf(request: Request) -> None:
    """App-level dependency: refuse an unsafe request without the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    expected = csrf_token_for(request)
    sent = request.headers.get(HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(FIELD)
            sent = value if isinstance(value, str) else None
    if expected is None:
        raise CsrfRefused(
            "This form needs a signed-in session, and yours has ended.",
            hint="Open the page again (you will be signed in through the hub), then resubmit.",
        )
    if not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRefused("The form was refused: its security token is missing or does not match.")


_FORM_OPEN = re.compile(rb"<form\b[^>]*\bmethod\s*=\s*[\"']?post\b[^>]*>", re.IGNORECASE)
_FORM_CLOSE = re.compile(rb"</form\s*>", re.IGNORECASE)
_HAS_FIELD = re.compile(rb"name\s*=\s*[\"']?" + FIELD.encode() + rb"\b")


def inject_field(html: bytes, token: str) -> bytes:
    """Add ``<input type="hidden" name="_csrf">`` to each POST form of ``html`` that lacks it."""
    hidden = f'<input type="hidden" name="{FIELD}" value="{token}">'.encode()
    out: list[bytes] = []
    pos = 0
    for match in _FORM_OPEN.finditer(html):
        if match.start() < pos:
            continue
        end = _FORM_CLOSE.search(html, match.end())
        body = html[match.end() : end.start() if end else len(html)]
        out.append(html[pos : match.end()])
        if not _HAS_FIELD.search(body):
            out.append(hidden)
        pos = match.end()
    out.append(html[pos:])
    return b"".join(out)


class CsrfFormMiddleware:
    """Pure ASGI: rewrite HTML responses so every POST form carries the session's token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token: str | None = None
        try:
            token = csrf_token_for(request)
        except Exception:  # app state not ready (startup): leave the page alone
            token = None
        if token is None:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                if headers.get("content-type", "").startswith("text/html"):
                    start = dict(message)
                    return
                await send(message)
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = inject_field(b"".join(chunks), token)
                headers = MutableHeaders(raw=list(start.get("headers", [])))
                headers["content-length"] = str(len(body))
                await send({**start, "headers": headers.raw})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, capture)
