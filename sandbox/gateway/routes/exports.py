"""``POST exports``, ``GET exports`` and ``GET exports/{export_id}``: the export gate (DESIGN §5).

A submitted file goes to quarantine (stored by content hash), through the automatic checks,
then to the stewards (``sandbox.export.service``). The caller sees only requests they may read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, UploadFile, status
from starlette.concurrency import run_in_threadpool

from sandbox.errors import ExportRejected
from sandbox.gateway import backend
from sandbox.gateway.deps import Caller, Ctx
from sandbox.gateway.models import ExportPublic, Exports

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


@router.get("/exports", response_model=Exports, summary="The export requests you may see, newest first")
async def get_exports(caller: Caller, ctx: Ctx) -> Exports:
    return await run_in_threadpool(backend.list_exports, ctx, caller.account)


@router.get("/exports/{export_id}", response_model=ExportPublic, summary="One export request")
async def get_export(
    export_id: Annotated[int, Path(ge=1, le=2**62, description="Export request id.")],
    caller: Caller,
    ctx: Ctx,
) -> ExportPublic:
    return await run_in_threadpool(backend.get_export, ctx, caller.account, export_id)
