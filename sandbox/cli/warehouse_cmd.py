"""``sandbox warehouse status|prepare``: the DP engine's derived tables (docs/dp.md, "Derived tables").

``sandbox synth`` builds them with every table; ``prepare`` rebuilds them for tables that were
loaded another way or after a policy change (``status`` says which are stale). Queries stay
correct without them: the planner then reads the raw tables, only more slowly.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sandbox.cli.output import emit_json, fail
from sandbox.config import Settings
from sandbox.errors import ConfigError, SandboxError
from sandbox.policy.loader import load_policies

warehouse_app = typer.Typer(
    help="The DP engine's derived tables in the warehouse (bounded rows and count/sum cubes).",
    no_args_is_help=True,
)

_WAREHOUSE = typer.Option(
    "--warehouse",
    help="Warehouse URL (default: SANDBOX_WAREHOUSE_URL or <data dir>/warehouse.duckdb).",
    show_default=False,
)
_STATES = {
    "current": "current",
    "stale_policy": "stale: the policy changed since they were built",
    "stale_table": "stale: the table was rewritten since they were built",
    "missing": "missing",
}


def _engine(url: str) -> Any:
    from sandbox.catalog.warehouse import make_engine
    from sandbox.services.queries import _file_of

    path = _file_of(url)
    if path is not None and not path.exists():
        raise ConfigError(
            "The warehouse has not been built yet.",
            hint="Run `sandbox synth` (or `sandbox init --demo`) to create it.",
        )
    return make_engine(url)


def status(
    warehouse: Annotated[str | None, _WAREHOUSE] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show, per dataset with a privacy unit, whether its derived tables are current."""
    from sandbox.dp.derived import layout_status

    settings = Settings()
    try:
        catalog = load_policies(settings.policy_dir)
        engine = _engine(warehouse or settings.warehouse_url)
        try:
            with engine.connect() as conn:
                rows = layout_status(conn, catalog.datasets)
        finally:
            engine.dispose()
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json({"datasets": rows})
        return
    table = Table(title="derived DP tables")
    for name in ("dataset", "state", "bounded rows", "cube dimensions", "cube rows"):
        table.add_column(name, justify="right" if "rows" in name else "left")
    for row in rows:
        table.add_row(
            row["dataset"],
            _STATES[row["state"]],
            "" if row["bounded_rows"] is None else f"{row['bounded_rows']:,}",
            ", ".join(row["cube_dimensions"] or []) or ("" if row["state"] == "missing" else "(no cube)"),
            "" if row["cube_rows"] is None else f"{row['cube_rows']:,}",
        )
    Console().print(table)
    if any(row["state"] != "current" for row in rows):
        Console(stderr=True).print("Run `sandbox warehouse prepare` to rebuild what is not current.")


def prepare(
    datasets: Annotated[
        str | None,
        typer.Option(
            "--datasets", help="Comma-separated dataset ids (default: all not current).", show_default=False
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when current.")] = False,
    warehouse: Annotated[str | None, _WAREHOUSE] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """(Re)build the derived tables, one transaction per dataset (a failure keeps the old ones)."""
    from sandbox.dp.derived import build_derived, layout_status

    settings = Settings()
    done: list[dict[str, Any]] = []
    skipped: list[str] = []  # no raw table in this warehouse
    try:
        catalog = load_policies(settings.policy_dir)
        wanted = [d.strip() for d in datasets.split(",") if d.strip()] if datasets else None
        for ds_id in wanted or []:
            dataset = catalog.dataset(ds_id)  # raises UnknownDataset
            if not dataset.privacy_unit:
                raise ConfigError(
                    f"Dataset {ds_id!r} has no privacy unit, so it has no derived tables.",
                    hint="Derived tables exist for the conditional and restricted datasets.",
                )
        engine = _engine(warehouse or settings.warehouse_url)
        try:
            with engine.connect() as conn:
                states = {r["dataset"]: r["state"] for r in layout_status(conn, catalog.datasets)}
            todo = [d for d in states if wanted is None or d in wanted]
            if not force:
                todo = [d for d in todo if states[d] != "current"]
            for ds_id in todo:
                started = time.perf_counter()
                with engine.begin() as conn:
                    if not _has_raw_table(conn, ds_id):
                        skipped.append(ds_id)
                        continue
                    info = build_derived(conn, catalog.dataset(ds_id))
                done.append(
                    {
                        "dataset": ds_id,
                        "bounded_rows": info.bounded_rows,
                        "cube_dimensions": list(info.cube_dimensions or []),
                        "cube_rows": info.cube_rows,
                        "seconds": round(time.perf_counter() - started, 3),
                    }
                )
                if not as_json:
                    Console(stderr=True).print(
                        f"{ds_id}: {info.bounded_rows:,} bounded rows, "
                        + (f"cube of {info.cube_rows:,} rows" if info.cube_rows is not None else "no cube")
                        + f" ({done[-1]['seconds']:.2f} s)"
                    )
        finally:
            engine.dispose()
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json({"prepared": done, "skipped_no_table": skipped})
        return
    if skipped:
        Console(stderr=True).print(
            f"No table in the warehouse for: {', '.join(skipped)} (run `sandbox synth`)."
        )
    if not done and not skipped:
        Console(stderr=True).print("Nothing to do: every derived table is current.")


def _has_raw_table(conn: Any, dataset_id: str) -> bool:
    import sqlalchemy as sa

    return bool(sa.inspect(conn).has_table(dataset_id))


def register(app: typer.Typer) -> None:
    warehouse_app.command("status")(status)
    warehouse_app.command("prepare")(prepare)
    app.add_typer(warehouse_app, name="warehouse")
