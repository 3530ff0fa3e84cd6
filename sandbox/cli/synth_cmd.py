"""``sandbox synth``: generate the synthetic warehouse (REQUIREMENTS §6, SR-40).

Every table is replaced atomically; a summary table (dataset, rows, seconds) follows the
progress bars. With ``--json`` the summary is printed as JSON instead.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sandbox.cli.output import emit_json, fail
from sandbox.config import Settings
from sandbox.errors import SandboxError
from sandbox.policy.loader import load_policies
from sandbox.synth.run import DEFAULT_SEED, SynthResult, synthesize


class _RichHooks:
    """Progress bars, one per dataset, fed by the runner."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def start(self, dataset: str, rows: int) -> None:
        self._tasks[dataset] = self._progress.add_task(dataset, total=rows)

    def advance(self, dataset: str, rows: int) -> None:
        self._progress.advance(self._tasks[dataset], rows)

    def finish(self, dataset: str) -> None:
        task = self._tasks[dataset]
        self._progress.update(task, completed=self._progress.tasks[task].total)


def synth(
    scale: Annotated[
        int,
        typer.Option(
            "--scale",
            min=1,
            help="Rows of each large (fact) table; reference tables scale with it (docs/synthetic-data.md).",
        ),
    ],
    seed: Annotated[
        int, typer.Option("--seed", help="Seed; same seed and scale give the same rows.")
    ] = DEFAULT_SEED,
    datasets: Annotated[
        str | None,
        typer.Option("--datasets", help="Comma-separated dataset ids (default: all 15).", show_default=False),
    ] = None,
    warehouse: Annotated[
        str | None,
        typer.Option(
            "--warehouse",
            help="Warehouse URL: duckdb:///file, sqlite:///file or postgresql+psycopg://... "
            "(default: SANDBOX_WAREHOUSE_URL or <data dir>/warehouse.duckdb).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary (and errors) as JSON.")] = False,
) -> None:
    """Generate seeded synthetic data for the datasets and (re)write their warehouse tables."""
    settings = Settings()
    url = warehouse or settings.warehouse_url
    wanted = [d for d in datasets.split(",") if d.strip()] if datasets else None
    console = Console(stderr=True)
    try:
        catalog = load_policies(settings.policy_dir)
        with Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=as_json,
            disable=as_json,
        ) as progress:
            results = synthesize(
                catalog,
                scale=scale,
                seed=seed,
                datasets=wanted,
                warehouse_url=url,
                progress=_RichHooks(progress),
            )
    except SandboxError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(
            {
                "warehouse": _safe_url(url),
                "seed": seed,
                "scale": scale,
                "datasets": [
                    {"dataset": r.dataset, "rows": r.rows, "seconds": round(r.seconds, 3)} for r in results
                ],
            }
        )
        return
    Console().print(_summary(results, seed=seed, scale=scale, url=url))


def _summary(results: list[SynthResult], *, seed: int, scale: int, url: str) -> Table:
    table = Table(title=f"synthetic warehouse {_safe_url(url)} (seed {seed}, scale {scale})")
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    table.add_column("seconds", justify="right")
    for r in results:
        table.add_row(r.dataset, f"{r.rows:,}", f"{r.seconds:.2f}")
    total_rows = sum(r.rows for r in results)
    total_seconds = sum(r.seconds for r in results)
    table.add_row("total", f"{total_rows:,}", f"{total_seconds:.2f}", style="bold")
    return table


def _safe_url(url: str) -> str:
    """The URL without its password (never echo credentials)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<warehouse>"


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
