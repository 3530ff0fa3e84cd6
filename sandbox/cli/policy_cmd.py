"""``sandbox policy check|schema`` and ``sandbox catalog`` (the opening list, SR-01)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from sandbox.cli.output import fail
from sandbox.config import Settings
from sandbox.errors import PolicyError
from sandbox.policy.loader import check_policies, load_policies
from sandbox.policy.opening_list import opening_list, to_csv, to_json
from sandbox.policy.schema import SCHEMA_FILE, schema_text

policy_app = typer.Typer(
    help="Policies as code: validate policies/*.yaml and generate their JSON schema.",
    no_args_is_help=True,
)

DirArg = Annotated[
    Path | None,
    typer.Argument(
        help="Policy directory (default: SANDBOX_POLICY_DIR or the repository's policies/).",
        show_default=False,
    ),
]


@policy_app.command("check")
def check(directory: DirArg = None) -> None:
    """Validate every policy file; print each problem as `file: dotted.path: message`.

    Exits 1 when there is any problem, else prints `ok: N datasets, M departments`.
    """
    path = directory if directory is not None else Settings().policy_dir
    problems = check_policies(path)
    if problems:
        for problem in problems:
            typer.echo(str(problem))
        typer.echo(f"{len(problems)} problem(s) in {path}", err=True)
        raise typer.Exit(1)
    catalog = load_policies(path)
    typer.echo(f"ok: {len(catalog.datasets)} datasets, {len(catalog.platform.departments)} departments")


@policy_app.command("schema")
def schema(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help=f"Where to write (default: <policy dir>/{SCHEMA_FILE}).",
            show_default=False,
        ),
    ] = None,
    check_only: Annotated[
        bool, typer.Option("--check", help="Do not write; exit 1 if the file is missing or out of date.")
    ] = False,
) -> None:
    """(Re)write the JSON schema of the policy files from the models."""
    target = output if output is not None else Settings().policy_dir / SCHEMA_FILE
    text = schema_text()
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if check_only:
        if current != text:
            typer.echo(f"{target}: out of date; run `sandbox policy schema`", err=True)
            raise typer.Exit(1)
        typer.echo(f"ok: {target} is up to date")
        return
    if current == text:
        typer.echo(f"unchanged: {target}")
        return
    target.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {target}")


class CatalogFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


def catalog(
    fmt: Annotated[CatalogFormat, typer.Option("--format", "-f", help="Output format.")] = CatalogFormat.JSON,
    policies: Annotated[
        Path | None,
        typer.Option(
            "--policies", help="Policy directory (default: SANDBOX_POLICY_DIR).", show_default=False
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of stdout.", show_default=False),
    ] = None,
    as_json_errors: Annotated[bool, typer.Option("--json", help="Print errors as JSON.")] = False,
) -> None:
    """Export the opening list (开放清单): one entry per dataset, as JSON or UTF-8 CSV (SR-01)."""
    try:
        cat = load_policies(policies)
    except PolicyError as err:
        fail(err, as_json=as_json_errors)
    rows = opening_list(cat)
    text = to_csv(rows) if fmt is CatalogFormat.CSV else to_json(rows)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(rows)} datasets to {output}", err=True)
    else:
        typer.echo(text, nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
    app.command("catalog")(catalog)
