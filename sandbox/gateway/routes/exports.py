"""``POST exports``, ``POST exports/check`` and ``GET exports/{export_id}``: the export gate.

A submitted file goes to quarantine (stored by content hash) and through the automatic
checks; a steward then decides. ``exports/check`` runs the checks only and stores nothing.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, UploadFile, status
from starlette.concurrency import run_in_threadpool

from sandbox.errors import ExportRejected
from sandbox.gateway import backend
from sandbox.gateway.deps import Caller, Ctx
from sandbox.gateway.models import ExportChecks, ExportPublic

router = APIRouter(tags=["export gate"])

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
"""Hard cap while reading an upload; the policy's ``max_file_bytes`` is usually smaller."""

FileField = Annotated[UploadFile, File(description="The file to export (CSV, XLSX, PNG, PDF, ...).")]
Purpose = Annotated[str, Form(min_length=1, max_length=2000, description="Why the file must leave.")]
OptionalPurpose = Annotated[str, Form(max_length=2000, description="Why the file must leave.")]
Description = Annotated[str, Form(max_length=4000, description="What the file contains.")]
ProjectField = Annotated[
    str | None, Form(min_length=1, max_length=64, description="Project (omit if you have only one).")
]
ReleaseIds = Annotated[
    str | None,
    Form(max_length=20_000, description='JSON list of DP release ids the file derives from, e.g. ["r1"].'),
]


async def _read(upload: UploadFile) -> backend.Upload:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ExportRejected(
            f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.",
            hint="Export aggregates, not data; split or summarise the file.",
        )
    name = (upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1][:200] or "upload"
    return backend.Upload(filename=name, content=data, content_type=upload.content_type or "")


def _release_ids(value: str | None) -> list[str]:
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
        raise ExportRejected(
            "release_ids must be a JSON list of release id strings.",
            hint='For example ["7f3c...", "a9d1..."].',
        )
    return parsed


@router.post(
    "/exports",
    response_model=ExportPublic,
    status_code=status.HTTP_201_CREATED,
    summary="Submit a file to the export gate (quarantine, checks, steward review)",
)
async def post_export(
    caller: Caller,
    ctx: Ctx,
    file: FileField,
    purpose: Purpose,
    description: Description = "",
    project: ProjectField = None,
    release_ids: ReleaseIds = None,
) -> ExportPublic:
    upload = await _read(file)
    return await run_in_threadpool(
        backend.submit_export,
        ctx,
        caller.account,
        upload,
        purpose=purpose,
        description=description,
        project=project,
        release_ids=_release_ids(release_ids),
    )


@router.post(
    "/exports/check",
    response_model=ExportChecks,
    summary="Run the export gate's automatic checks only; nothing is stored",
)
async def post_export_check(
    caller: Caller,
    ctx: Ctx,
    file: FileField,
    purpose: OptionalPurpose = "",
    project: ProjectField = None,
    release_ids: ReleaseIds = None,
) -> ExportChecks:
    upload = await _read(file)
    return await run_in_threadpool(
        backend.check_export,
        ctx,
        caller.account,
        upload,
        project=project,
        release_ids=_release_ids(release_ids),
    )


@router.get("/exports/{export_id}", response_model=ExportPublic, summary="One of your export requests")
async def get_export(
    export_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    caller: Caller,
    ctx: Ctx,
) -> ExportPublic:
    return await run_in_threadpool(backend.get_export, ctx, caller.account, export_id)
