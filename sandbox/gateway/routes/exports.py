"""The export gate's API (DESIGN §5): submit, dry-run check, list, show, download, manifest.

A submitted file goes to quarantine (stored by content hash), through the automatic checks,
then to the stewards (``sandbox.export.service``). ``POST exports/check`` runs the same checks
and stores no file (only an ``export.dry_run`` audit entry). The caller sees only requests
they may read; only the requester and the project's members download, and only approved or
released files.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Path, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool

from sandbox.errors import ExportRejected
from sandbox.gateway import backend
from sandbox.gateway.deps import Caller, Ctx
from sandbox.gateway.models import ErrorResponse, ExportDryRun, ExportManifest, ExportPublic, Exports

router = APIRouter(tags=["export gate"])

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
"""Hard cap while reading an upload; the policy's ``max_file_bytes`` is usually smaller."""

FileField = Annotated[UploadFile, File(description="The file to export (CSV, XLSX, PNG, PDF, ...).")]
Purpose = Annotated[str, Form(min_length=1, max_length=2000, description="Why the file must leave.")]
Description = Annotated[str, Form(max_length=4000, description="What the file contains (optional).")]
ProjectField = Annotated[
    str | None, Form(min_length=1, max_length=64, description="Project (omit if you have only one).")
]
DatasetsField = Annotated[
    str | None,
    Form(
        max_length=2000,
        description="Comma-separated dataset ids the file derives from (default: the project's grants "
        "and its DP releases).",
    ),
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


ExportId = Annotated[int, Path(ge=1, le=2**62, description="Export request id.")]

SHA256_HEADER = "X-Export-SHA256"
STATUS_HEADER = "X-Export-Status"

_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "invalid_transition: the request is not approved (under review, rejected, withdrawn).",
    }
}
_DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The released file, exactly the bytes whose SHA-256 the gate re-checked.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            SHA256_HEADER: {"description": "SHA-256 of the body (hex).", "schema": {"type": "string"}},
            STATUS_HEADER: {"description": "The request's status (released).", "schema": {"type": "string"}},
            "Content-Disposition": {
                "description": "attachment, with the file's name.",
                "schema": {"type": "string"},
            },
        },
    },
    **_CONFLICT,
}


def _datasets(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [part.strip() for part in value.split(",") if part.strip()] or None


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
    datasets: DatasetsField = None,
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
        datasets=_datasets(datasets),
    )


@router.post(
    "/exports/check",
    response_model=ExportDryRun,
    summary="Dry run: the automatic checks of a file, with the project's context, storing nothing",
)
async def post_export_check(
    caller: Caller,
    ctx: Ctx,
    file: FileField,
    project: ProjectField = None,
    datasets: DatasetsField = None,
) -> ExportDryRun:
    upload = await _read(file)
    return await run_in_threadpool(
        backend.check_export, ctx, caller.account, upload, project=project, datasets=_datasets(datasets)
    )


@router.get("/exports", response_model=Exports, summary="The export requests you may see, newest first")
async def get_exports(caller: Caller, ctx: Ctx) -> Exports:
    return await run_in_threadpool(backend.list_exports, ctx, caller.account)


@router.get("/exports/{export_id}", response_model=ExportPublic, summary="One export request")
async def get_export(export_id: ExportId, caller: Caller, ctx: Ctx) -> ExportPublic:
    return await run_in_threadpool(backend.get_export, ctx, caller.account, export_id)


def _disposition(filename: str) -> str:
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback or 'export'}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get(
    "/exports/{export_id}/download",
    response_class=Response,
    responses=_DOWNLOAD_RESPONSES,
    summary="Download an approved file (the first download releases it with its manifest)",
)
async def get_export_download(export_id: ExportId, caller: Caller, ctx: Ctx) -> Response:
    released = await run_in_threadpool(backend.download_export, ctx, caller.account, export_id)
    return Response(
        content=released.content,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": _disposition(released.filename),
            SHA256_HEADER: released.sha256,
            STATUS_HEADER: released.status,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get(
    "/exports/{export_id}/manifest",
    response_model=ExportManifest,
    summary="The manifest of a released file: sources, DP releases, reviewers, SHA-256, citation",
)
async def get_export_manifest(export_id: ExportId, caller: Caller, ctx: Ctx) -> ExportManifest:
    return await run_in_threadpool(backend.export_manifest, ctx, caller.account, export_id)
