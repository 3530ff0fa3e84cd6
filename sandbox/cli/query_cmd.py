"""``sandbox query`` and ``sandbox budget``: the DP path from a terminal.

Both go through exactly ``sandbox.services.queries.run_query`` / ``budget_status`` (the
same code the gateway uses). ``--json`` prints machine-readable output; errors print
``{"error": {"code", "message", "hint"}}`` and exit 2.

``sandbox budget sweep`` is the operator's side: reservations left in flight by dead
processes become ``abandoned`` (``sandbox.ledger.store.sweep_reservations``; charges kept).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sandbox.cli.admin_cmd import ACTOR_ENV, ActorOpt
from sandbox.cli.output import emit_json, fail
from sandbox.config import get_settings
from sandbox.errors import SandboxError
from sandbox.ledger.values import BudgetStatus, format_amount

# sandbox.ledger.store.ABANDON_AFTER in minutes (not imported: the CLI loads the ledger lazily)
DEFAULT_SWEEP_MINUTES = 15.0

budget_app = typer.Typer(
    help="Remaining privacy budget (--as USER --project P); `sweep`: resolve abandoned reservations.",
)


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


@budget_app.callback(invoke_without_command=True)
def budget(
    ctx: typer.Context,
    as_user: Annotated[str | None, typer.Option("--as", help="User whose budget to show.")] = None,
    project: Annotated[str | None, typer.Option("--project", help="Project to show.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the remaining privacy budget (yours, the project's, the dataset's) per granted dataset."""
    if ctx.invoked_subcommand is not None:
        return
    for value, flag in ((as_user, "--as"), (project, "--project")):
        if value is None:
            raise typer.BadParameter("required to show a budget.", param_hint=f"'{flag}'")
    assert as_user is not None and project is not None
    from sandbox.services.queries import budget_status

    try:
        with _context() as service:
            statuses = budget_status(service, user=as_user, project=project)
            caps = {ds: service.catalog.budgets(ds) for ds in statuses}
            pending = _in_flight_of(service, project) if not as_json else {}
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
    in_flight = {ds: n for ds, n in pending.items() if ds in statuses}
    if in_flight:
        listed = ", ".join(f"{ds} {n}" for ds, n in sorted(in_flight.items()))
        console.print(
            f"in flight (charged, no result yet): {listed}; a query still running, or one whose "
            f"process died (marked abandoned after {DEFAULT_SWEEP_MINUTES:g} minutes by the gateway "
            "or `sandbox budget sweep`)."
        )


def _in_flight_of(service: Any, project: str) -> dict[str, int]:
    """The project's reservations still in flight, by dataset."""
    from sandbox.control.db import session_scope
    from sandbox.ledger import store

    counts: dict[str, int] = {}
    with session_scope(service.control_engine) as session:
        for item in store.in_flight(session):
            if item.project == project:
                counts[item.dataset] = counts.get(item.dataset, 0) + 1
    return counts


@budget_app.command("sweep")
def sweep(
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            min=0,
            help="Minutes a reservation must have been in flight to count as abandoned (default 15). "
            "A query still running when its reservation is swept loses its result (never its charge).",
        ),
    ] = DEFAULT_SWEEP_MINUTES,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be abandoned; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    actor: ActorOpt = None,
) -> None:
    """Mark reservations left in flight by dead processes as abandoned. Their charges are kept."""
    from sandbox.control.db import open_engine
    from sandbox.ledger import store

    who = actor or os.environ.get(ACTOR_ENV) or "admin"
    try:
        engine = open_engine(get_settings().control_db_url)
        try:
            items = store.sweep_reservations(
                engine, older_than=timedelta(minutes=older_than), actor=who, dry_run=dry_run
            )
        finally:
            engine.dispose()
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "older_than_minutes": older_than,
                "abandoned": [item.to_dict() for item in items],
            }
        )
        return
    minutes = f"{older_than:g} minute{'' if older_than == 1 else 's'}"
    if not items:
        typer.echo(f"No reservation has been in flight for more than {minutes}.")
        return
    verb = "would be marked abandoned (dry run)" if dry_run else "marked abandoned"
    typer.echo(f"{len(items)} reservation(s) in flight for more than {minutes} {verb}:")
    for item in items:
        typer.echo(
            f"  {item.release_id}  {item.user}  {item.project}  {item.dataset}  "
            f"charge {format_amount(item.charge)}  reserved {item.reserved_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    typer.echo("The charges are kept: the queries may have run, so their privacy loss may have happened.")


def register(app: typer.Typer) -> None:
    app.command("query")(query)
    app.add_typer(budget_app, name="budget")
