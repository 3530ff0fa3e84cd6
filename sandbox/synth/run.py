"""Generate datasets and write them to the warehouse: the ``sandbox synth`` engine room."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection, Engine, MetaData
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from sandbox.catalog.warehouse import make_engine, meta_table, warehouse_tables
from sandbox.dp.derived import build_derived
from sandbox.errors import ConfigError, SandboxError
from sandbox.policy.loader import Catalog
from sandbox.policy.models import Dataset
from sandbox.synth.base import SynthContext
from sandbox.synth.generate import GENERATORS, frame_checksum, rows_for
from sandbox.synth.writer import MetaRow, replace_table

DEFAULT_SEED = 2019
# Tables other generators draw join keys from; kept in memory for the whole run.
PARENTS = frozenset({"enterprise_registry", "transit_stations", "medical_institutions", "venues"})


def _derive_hook(dataset: Dataset, checksum: str) -> Callable[[Connection], None]:
    """Build the dataset's derived DP tables in the transaction that wrote its rows."""

    def derive(conn: Connection) -> None:
        build_derived(conn, dataset, source_checksum=checksum)

    return derive


class ProgressHooks(Protocol):
    """What the runner reports while it works (the CLI draws a rich progress bar from it)."""

    def start(self, dataset: str, rows: int) -> None: ...
    def advance(self, dataset: str, rows: int) -> None: ...
    def finish(self, dataset: str) -> None: ...


@dataclass(frozen=True)
class SynthResult:
    dataset: str
    rows: int
    seconds: float
    checksum: str


def select_datasets(catalog: Catalog, datasets: Iterable[str] | None) -> list[str]:
    """The ids to generate, in a stable order (reference tables first); unknown ids raise."""
    wanted = list(catalog.datasets) if datasets is None else [d.strip() for d in datasets if d.strip()]
    for ds_id in wanted:
        catalog.dataset(ds_id)  # raises UnknownDataset
        if ds_id not in GENERATORS:
            raise ConfigError(
                f"No synthetic generator for dataset {ds_id!r}.",
                hint=f"Known generators: {', '.join(GENERATORS)}.",
            )
    order = {ds_id: i for i, ds_id in enumerate(GENERATORS)}
    return sorted(dict.fromkeys(wanted), key=lambda d: order[d])


def synthesize(
    catalog: Catalog,
    *,
    scale: int,
    seed: int = DEFAULT_SEED,
    datasets: Sequence[str] | None = None,
    warehouse_url: str | None = None,
    engine: Engine | None = None,
    progress: ProgressHooks | None = None,
) -> list[SynthResult]:
    """Generate ``datasets`` (default: all) at ``scale`` and replace their warehouse tables.

    Pass ``engine`` or ``warehouse_url`` (an engine made here is disposed of at the end).
    """
    if engine is None and warehouse_url is None:
        raise ConfigError("No warehouse given.", hint="Pass --warehouse URL or set SANDBOX_WAREHOUSE_URL.")
    ids = select_datasets(catalog, datasets)
    rows_for(ids[0] if ids else "", scale)  # validates the scale
    own_engine = engine is None
    eng = engine if engine is not None else make_engine(str(warehouse_url))
    metadata = MetaData()
    tables = warehouse_tables(catalog, metadata)
    meta = meta_table(metadata)
    ctx = SynthContext(catalog, seed, scale)
    results: list[SynthResult] = []
    try:
        for ds_id in ids:
            started = time.perf_counter()
            if progress is not None:
                progress.start(ds_id, rows_for(ds_id, scale))
            frame = ctx.frame(ds_id)
            checksum = frame_checksum(frame)
            row = MetaRow(
                dataset=ds_id,
                synthetic=bool(catalog.dataset(ds_id).synthetic),
                seed=seed,
                scale=scale,
                rows=len(frame),
                checksum=checksum,
                generated_at=datetime.now(UTC).replace(tzinfo=None, microsecond=0),
            )
            hook = (lambda n, _d=ds_id: progress.advance(_d, n)) if progress is not None else None
            dataset = catalog.dataset(ds_id)
            derived = dataset.privacy_unit and dataset.max_rows_per_unit
            derive = _derive_hook(dataset, checksum) if derived else None
            try:
                replace_table(eng, tables[ds_id], frame, meta, row, progress=hook, after_load=derive)
            except SQLAlchemyError as err:
                raise _write_failed(ds_id, err) from err
            if ds_id not in PARENTS:
                ctx.forget(ds_id)
            if progress is not None:
                progress.finish(ds_id)
            results.append(SynthResult(ds_id, len(frame), time.perf_counter() - started, checksum))
    finally:
        if own_engine:
            eng.dispose()
    return results


def _write_failed(dataset: str, err: SQLAlchemyError) -> SandboxError:
    """A database error as a SandboxError; the previous table is intact (the transaction rolled back)."""
    cause = err.orig if isinstance(err, DBAPIError) else err
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return ConfigError(
        f"Could not write {dataset!r} to the warehouse ({type(cause).__name__}: {first_line[:200]}). "
        "Its previous table, if any, is unchanged.",
        hint="Check the warehouse URL and that the database is reachable; a DuckDB file cannot be "
        "written while another process (e.g. a running gateway) holds it open.",
    )
