"""``sandbox audit verify|export|tail``: check the hash chain, export it for the supervisor.

``verify`` exits 0 printing ``ok <n> entries, head <hash>``, or exits 1 naming the
first broken entry (seq and reason). ``export`` writes JSON lines that
``verify --file`` (or any SHA-256 tool) can check without database access.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from sandbox.audit import chain, store
from sandbox.cli.output import emit_json, fail
from sandbox.config import get_settings
from sandbox.control.db import open_engine, session_scope
from sandbox.control.models import AuditEntry
from sandbox.errors import SandboxError

audit_app = typer.Typer(
    help="The append-only, hash-chained audit log: verify, export, tail.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _verify_file(path: Path) -> chain.VerifyResult:
    def entries() -> Iterator[chain.Entry]:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield chain.Entry.from_dict(json.loads(line))

    return chain.verify(entries())


@audit_app.command("verify")
def verify(
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Verify an exported JSON-lines file instead of the control DB."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the whole chain; exit 1 naming the first broken entry."""
    try:
        if file is not None:
            result = _verify_file(file)
        else:
            engine = open_engine(get_settings().control_db_url)
            try:
                with session_scope(engine) as session:
                    result = store.verify(session)
            finally:
                engine.dispose()
    except SandboxError as err:
        fail(err, as_json=as_json)
    except (OSError, ValueError, KeyError) as err:
        typer.echo(f"error: cannot read {file}: {err}", err=True)
        raise typer.Exit(2) from err
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "count": result.count,
                "head": result.head,
                "first_bad": result.first_bad,
                "reason": result.reason,
            }
        )
    elif result.ok:
        typer.echo(f"ok {result.count} entries, head {result.head}")
    else:
        typer.echo(f"broken at seq {result.first_bad}: {result.reason}")
        typer.echo(f"({result.count} entries verified before it, last good head {result.head})")
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")] = None,
    since: Annotated[int, typer.Option("--since", help="First seq to export.")] = 1,
) -> None:
    """Write the log as JSON lines (seq, ts, kind, actor, data, prev_hash, hash)."""
    try:
        engine = open_engine(get_settings().control_db_url)
    except SandboxError as err:
        fail(err, as_json=False)
    try:
        handle = out.open("w", encoding="utf-8") if out is not None else sys.stdout
        try:
            with session_scope(engine) as session:
                for entry in store.iter_entries(session, since=since):
                    handle.write(json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        finally:
            if out is not None:
                handle.close()
    finally:
        engine.dispose()


@audit_app.command("tail")
def tail(
    n: Annotated[int, typer.Option("-n", help="How many entries.")] = 20,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind (e.g. grant.added).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the newest entries (oldest first)."""
    try:
        engine = open_engine(get_settings().control_db_url)
    except SandboxError as err:
        fail(err, as_json=as_json)
    try:
        with session_scope(engine) as session:
            query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(n)
            if kind:
                query = query.where(AuditEntry.kind == kind)
            if actor:
                query = query.where(AuditEntry.actor == actor)
            rows = list(reversed(session.scalars(query).all()))
            items = [
                {"seq": r.seq, "ts": r.ts, "kind": r.kind, "actor": r.actor, "data": r.payload()}
                for r in rows
            ]
    finally:
        engine.dispose()
    if as_json:
        emit_json(items)
        return
    for item in items:
        data = json.dumps(item["data"], ensure_ascii=False, sort_keys=True)
        typer.echo(f"{item['seq']:>6}  {item['ts']}  {item['kind']:<22} {item['actor'] or '-':<10} {data}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


__all__ = ["audit_app", "register"]
