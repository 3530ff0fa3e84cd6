"""``sandbox export``: submit a file to the export gate, show it, review it, download it.

Every command goes through ``sandbox.export.service`` (the code the gateway uses).
``--json`` prints ``{"id", "status", "checks": [{"name", "verdict", "reason"}], "sha256"}``
(``show`` adds lineage and reviews); errors print ``{"error": {"code", "message", "hint"}}``
and exit 2.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from sandbox.cli.output import emit_json, fail
from sandbox.errors import ExportRejected, SandboxError

export_app = typer.Typer(
    help="Export gate: submit a file, show its checks, review it (stewards), download it.",
    no_args_is_help=True,
)

_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _print(record: object, *, detail: bool = False) -> None:
    from sandbox.export.service import ExportRecord

    assert isinstance(record, ExportRecord)
    typer.echo(f"export {record.id}: {record.status.value}  ({record.filename}, sha256 {record.sha256})")
    typer.echo(
        f"project {record.project}, requested by {record.requester}; tier {record.tier.value}; "
        f"datasets: {', '.join(record.datasets) or 'unknown'}"
    )
    for c in record.checks:
        typer.echo(f"  [{_MARK[c.verdict.value]}] {c.name}: {c.reason}")
    if detail:
        typer.echo(f"purpose: {record.purpose}")
        need = record.reviewers_required
        depts = ", ".join(record.departments) or "any steward"
        typer.echo(f"reviewers needed: {need} (departments: {depts})")
        for r in record.reviews:
            typer.echo(f"  review by {r['reviewer']} ({r['department']}): {r['decision']} — {r['reason']}")
    if record.decision_reason:
        typer.echo(f"decision: {record.decision_reason}")


@export_app.command("submit")
def submit_cmd(
    file: Annotated[Path, typer.Argument(help="File to export (CSV, XLSX, JSON, PNG, PDF, TXT, Markdown).")],
    as_user: Annotated[str, typer.Option("--as", help="Requesting user (a project member).")],
    project: Annotated[str, typer.Option("--project", help="Project the file belongs to.")],
    purpose: Annotated[str, typer.Option("--purpose", help="What the file is for (logged).")],
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", help="Dataset the file derives from (repeat); default: the project's grants."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Quarantine a file and run the automatic checks; it then waits for stewards (or is decided)."""
    from sandbox.export.service import export_context, submit

    try:
        try:
            data = file.read_bytes()
        except OSError as err:
            raise ExportRejected(
                f"Cannot read {str(file)!r}: {err.strerror}.", hint="Give the path of an existing file."
            ) from err
        with export_context() as ctx:
            record = submit(
                ctx,
                user=as_user,
                project=project,
                purpose=purpose,
                filename=file.name,
                data=data,
                datasets=dataset,
            )
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(record.to_dict())
    else:
        _print(record)


@export_app.command("show")
def show_cmd(
    export_id: Annotated[int, typer.Argument(help="Export request id.")],
    as_user: Annotated[
        str, typer.Option("--as", help="Who is looking (requester, member, steward, auditor).")
    ],
    as_json: AsJson = False,
) -> None:
    """Show an export request: checks, lineage, reviews, decision."""
    from sandbox.export.service import export_context, show

    try:
        with export_context() as ctx:
            record = show(ctx, export_id=export_id, user=as_user)
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(record.detail())
    else:
        _print(record, detail=True)


@export_app.command("list")
def list_cmd(
    as_user: Annotated[str, typer.Option("--as", help="Who is looking.")],
    status: Annotated[
        str | None, typer.Option("--status", help="Only this status (e.g. under_review).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List the export requests you may see (stewards: their review queue with --status under_review)."""
    from sandbox.export.service import export_context, list_exports

    try:
        with export_context() as ctx:
            records = list_exports(ctx, user=as_user, status=status)
    except (SandboxError, ValueError) as err:
        fail(err if isinstance(err, SandboxError) else ExportRejected(str(err)), as_json=as_json)
    if as_json:
        emit_json([r.to_dict() for r in records])
        return
    for r in records:
        typer.echo(f"{r.id}\t{r.status.value}\t{r.project}\t{r.requester}\t{r.filename}")


@export_app.command("review")
def review_cmd(
    export_id: Annotated[int, typer.Argument(help="Export request id.")],
    as_user: Annotated[str, typer.Option("--as", help="Reviewing steward.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (logged, shown to the requester).")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve the export.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the export.")] = False,
    as_json: AsJson = False,
) -> None:
    """Approve or reject an export request under review (stewards of the source departments)."""
    from sandbox.export.service import export_context, review

    try:
        if approve == reject:
            raise ExportRejected(
                "Give exactly one of --approve or --reject.", hint="e.g. --approve --reason '…'"
            )
        with export_context() as ctx:
            record = review(ctx, export_id=export_id, reviewer=as_user, approve=approve, reason=reason)
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(record.to_dict())
    else:
        _print(record, detail=True)


@export_app.command("withdraw")
def withdraw_cmd(
    export_id: Annotated[int, typer.Argument(help="Export request id.")],
    as_user: Annotated[str, typer.Option("--as", help="The requester (or an admin).")],
    as_json: AsJson = False,
) -> None:
    """Withdraw an export request that is not yet released."""
    from sandbox.export.service import export_context, withdraw

    try:
        with export_context() as ctx:
            record = withdraw(ctx, export_id=export_id, user=as_user)
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(record.to_dict())
    else:
        _print(record)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@export_app.command("download")
def download_cmd(
    export_id: Annotated[int, typer.Argument(help="Export request id.")],
    as_user: Annotated[str, typer.Option("--as", help="A member of the request's project.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the file.")],
    as_json: AsJson = False,
) -> None:
    """Download an approved file; writes it and ``<file>.manifest.json`` (sources, releases, citation)."""
    from sandbox.export.service import download, export_context

    try:
        with export_context() as ctx:
            result = download(ctx, export_id=export_id, user=as_user)
        manifest_path = output.with_name(output.name + ".manifest.json")
        try:
            _write_atomic(output, result.data)
            text = json.dumps(result.manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
            _write_atomic(manifest_path, text.encode("utf-8"))
        except OSError as err:
            raise ExportRejected(
                f"Cannot write {str(output)!r}: {err.strerror}.", hint="Choose a writable path with -o."
            ) from err
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json({**result.record.to_dict(), "path": str(output), "manifest": str(manifest_path)})
        return
    typer.echo(f"wrote {output} (sha256 {result.record.sha256}) and {manifest_path}")
    for line in result.manifest.get("citation", []):
        typer.echo(f"cite: {line}")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
