"""Routes of the pages app: home, sign-in hand-over, export review, the file of a request.

Paths are relative to the service prefix (``/services/sandbox/``):

=================================  ==================================================
``GET  /``                         what the signed-in user may do (by role); public links
``GET  /login``                    start the hub OAuth sign-in (``?next=<path>``)
``GET  /oauth_callback``           finish it (state checked, token stored in a cookie)
``POST /logout``                   drop the session, then the hub's sign-out
``GET  /exports``                  requests awaiting the steward, then the others visible
``GET  /exports/{id}``             one request: preview, checks, project, decision form
``POST /exports/{id}/review``      approve / reject with a reason (``sandbox.export.service``)
``GET  /exports/{id}/file``        the quarantined file, for its reviewers, admins, auditors
``GET  /static/pages.css``         the stylesheet (no CDN)
=================================  ==================================================
"""

from __future__ import annotations

import hmac
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from sandbox.access.errors import InvalidRequest
from sandbox.errors import AuthenticationFailed
from sandbox.export.readers import EXTENSIONS, FileKind
from sandbox.gateway import backend
from sandbox.gateway.pages import capabilities, views
from sandbox.gateway.pages.auth import (
    STATE_MAX_AGE,
    PageUser,
    current_user,
    local_next,
    require_user,
)
from sandbox.gateway.pages.errors import STATE_COOKIE_SUFFIX, is_https, start_login

router = APIRouter(include_in_schema=False)

STYLESHEET = FsPath(__file__).resolve().parent.parent / "templates" / "pages" / "pages.css"

User = Annotated[PageUser, Depends(require_user)]
ExportId = Annotated[int, Path(ge=1, le=2**62, description="Export request id.")]


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    response: Response = request.app.state.render(request, name, context, status_code=status_code)
    return response


# ------------------------------------------------------------------------------ home, sign-in


@router.get("/")
async def home(request: Request) -> Response:
    user = await current_user(request)
    items = capabilities.for_role(user.role, request.app.state.mounted) if user else []
    return _render(request, "pages/index.html", {"items": items})


@router.get("/login")
async def login(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    return start_login(request, local_next(request.app.state.prefix, next))


@router.get("/oauth_callback")
async def oauth_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=4000)] = None,
    state: Annotated[str | None, Query(max_length=4000)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    app = request.app.state
    if error:
        raise AuthenticationFailed(
            "The hub did not sign you in to the sandbox pages.",
            hint="Your account may lack access to the sandbox service; ask the platform operator.",
        )
    if not code or not state:
        raise InvalidRequest("The sign-in hand-over is incomplete (no code or state).")
    state_cookie = app.oauth.cookie_name + STATE_COOKIE_SUFFIX
    expected = app.signer.unsign("state", request.cookies.get(state_cookie), max_age=STATE_MAX_AGE)
    if expected is None or not hmac.compare_digest(expected, state):
        raise AuthenticationFailed(
            "This sign-in was not started by this browser, or took too long.",
            hint="Open the page again to sign in afresh.",
        )
    token, next_url = await app.oauth.finish(code, state)
    identity = await app.oauth.identify(token)
    account = await run_in_threadpool(backend.active_account, app.ctx, identity.name)
    await run_in_threadpool(backend.note_login, app.ctx, account.name, token)
    response = RedirectResponse(local_next(app.prefix, next_url), status_code=302)
    response.set_cookie(
        app.oauth.cookie_name,
        app.signer.sign("session", token),
        path=app.prefix,
        httponly=True,
        secure=is_https(request),
        samesite="lax",
    )
    response.delete_cookie(state_cookie, path=app.prefix)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    app = request.app.state
    response = RedirectResponse(app.oauth.hub_logout_url, status_code=303)
    response.delete_cookie(app.oauth.cookie_name, path=app.prefix)
    return response


# ------------------------------------------------------------------------------ export review


@router.get("/exports")
async def exports_page(request: Request, user: User) -> Response:
    overview = await run_in_threadpool(views.exports_overview, request.app.state.export_ctx, user.name)
    return _render(request, "pages/exports.html", {"overview": overview})


@router.get("/exports/{export_id}")
async def export_page(
    request: Request,
    user: User,
    export_id: ExportId,
    decided: Annotated[Literal["approve", "reject"] | None, Query()] = None,
) -> Response:
    app = request.app.state
    view = await run_in_threadpool(views.request_view, app.ctx, app.export_ctx, user.name, export_id)
    return _render(request, "pages/export.html", {"view": view, "decided": decided})


@router.post("/exports/{export_id}/review")
async def post_review(
    request: Request,
    user: User,
    export_id: ExportId,
    decision: Annotated[Literal["approve", "reject"], Form()],
    reason: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    app = request.app.state
    await run_in_threadpool(
        views.review, app.export_ctx, user.name, export_id, approve=decision == "approve", reason=reason
    )
    return RedirectResponse(f"{app.prefix}exports/{export_id}?decided={decision}", status_code=303)


FILE_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
"""The raw file is displayed, never run: no scripts, no plugins, a sandboxed document."""

_INLINE = {FileKind.PNG: "image/png", FileKind.PDF: "application/pdf"}
_TEXT = {FileKind.CSV, FileKind.JSON, FileKind.TEXT, FileKind.MARKDOWN}


@router.get("/exports/{export_id}/file")
async def export_file(request: Request, user: User, export_id: ExportId) -> Response:
    """The quarantined bytes for a reviewer's eyes: images and PDF inline, text as text, XLSX as a file."""
    record, data = await run_in_threadpool(
        views.file_for_reviewer, request.app.state.export_ctx, user.name, export_id
    )
    suffix = FsPath(record.filename).suffix.lower()
    kind = EXTENSIONS.get(suffix)
    if kind in _INLINE:
        media, disposition = _INLINE[kind], "inline"
    elif kind in _TEXT:
        media, disposition = "text/plain; charset=utf-8", "inline"
    else:
        media, disposition = "application/octet-stream", "attachment"
    return Response(
        data,
        media_type=media,
        headers={
            "Content-Disposition": f'{disposition}; filename="export-{record.id}{suffix}"',
            "Content-Security-Policy": FILE_POLICY,
        },
    )


@router.get("/static/pages.css")
async def stylesheet() -> Response:
    return Response(
        STYLESHEET.read_text(encoding="utf-8"),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )
