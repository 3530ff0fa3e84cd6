"""``sandbox query`` and ``sandbox budget``: the DP path from a terminal.

Both go through exactly ``sandbox.services.queries.run_query`` / ``budget_status`` (the
same code the gateway uses). ``--json`` prints machine-readable output; errors print
``{"error": {"code", "message", "hint"}}`` and exit 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sandbox.cli.output import emit_json, fail
from sandbox.config import get_settings
from sandbox.errors import SandboxError
from sandbox.ledger.values import BudgetStatus, format_amount


@contextmanager
def _context() -> Iterator[Any]:
    from sandbox.services.queries import ServiceContext

    ctx = ServiceContext.from_settings(get_settings())
    try:
        yield ctx
    finally:
        ctx.close()


def _cell(value: Any, ci: Any) -> str:
    text = "" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
    if ci is None:
        return text
    half = f"{ci:.3g}" if isinstance(ci, float) else str(ci)
    return f"{text} ± {half}"


def _print_release(record: Any) -> None:
    console = Console()
    spent = format_amount(record.epsilon_spent)
    note = " (identical earlier release, no charge)" if record.cached else ""
    console.print(f"release [bold]{record.release_id}[/bold]")
    console.print(f"dataset {record.dataset}, project {record.project}")
    console.print(f"epsilon spent: {spent}{note}")
    table = Table(show_header=True, header_style="bold")
    for name in record.columns:
        table.add_column(name, justify="left" if name in record.key_columns else "right")
    for row, ci_row in zip(
        record.rows, record.ci95 or [[None] * len(record.columns)] * len(record.rows), strict=False
    ):
        cis = list(ci_row) + [None] * (len(row) - len(ci_row))
        table.add_row(*[_cell(v, c) for v, c in zip(row, cis, strict=False)])
    console.print(table)
    console.print("± is the 95% confidence half-width of each noisy cell.")
    _print_status_line(console, record.budget)


def _print_status_line(console: Console, status: BudgetStatus) -> None:
    left = status.to_dict()
    console.print(
        f"remaining: you {left['user_remaining']}, project {left['project_remaining']}, "
        f"dataset {left['dataset_remaining']}"
    )


def query(
    sql: Annotated[str, typer.Argument(help="SQL of the supported subset (see docs/dp.md).")],
    as_user: Annotated[str, typer.Option("--as", help="User to run the query as.")],
    project: Annotated[str, typer.Option("--project", help="Project whose budget is charged.")],
    epsilon: Annotated[
        str | None,
        typer.Option("--epsilon", help="Privacy loss to spend (exact decimal); default: the platform's."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run a DP query and charge the project's budget (identical repeats cost nothing)."""
    from sandbox.services.queries import run_query

    try:
        with _context() as ctx:
            record = run_query(ctx, user=as_user, project=project, sql=sql, epsilon=epsilon)
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(record.to_dict())
    else:
        _print_release(record)


def budget(
    as_user: Annotated[str, typer.Option("--as", help="User whose budget to show.")],
    project: Annotated[str, typer.Option("--project", help="Project to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the remaining privacy budget (yours, the project's, the dataset's) per granted dataset."""
    from sandbox.services.queries import budget_status

    try:
        with _context() as ctx:
            statuses = budget_status(ctx, user=as_user, project=project)
            caps = {ds: ctx.catalog.budgets(ds) for ds in statuses}
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json({"datasets": {ds: status.to_dict() for ds, status in statuses.items()}})
        return
    console = Console()
    if not statuses:
        console.print(f"Project {project!r} holds no grant for a DP dataset.")
        return
    table = Table(title=f"Privacy budget of {as_user} in {project}", header_style="bold")
    table.add_column("dataset", no_wrap=True)
    for name in ("max/query", "you", "project", "all projects", "available"):
        table.add_column(name, justify="right", no_wrap=True)
    for ds, status in statuses.items():
        cap = caps[ds]
        table.add_row(
            ds,
            format_amount(cap.per_query_max),
            f"{format_amount(status.user_remaining)} / {format_amount(cap.per_user)}",
            f"{format_amount(status.project_remaining)} / {format_amount(cap.per_project)}",
            f"{format_amount(status.dataset_remaining)} / {format_amount(cap.global_cap)}",
            format_amount(status.available),
        )
    console.print(table)
    console.print("remaining / cap; spent includes reservations of queries that failed or never finished.")


def register(app: typer.Typer) -> None:
    app.command("query")(query)
    app.command("budget")(budget)
