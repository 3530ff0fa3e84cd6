"""Build and read the derived DP tables (:mod:`sandbox.dp.layout` describes them).

* :func:`build_derived` replaces a dataset's bounded table and cube inside the caller's
  transaction, with ``INSERT … SELECT`` statements built by SQLAlchemy Core, so the work runs in
  the warehouse (DuckDB, SQLite or PostgreSQL) and the rows never pass through Python.
  ``sandbox synth`` calls it in the transaction that writes the table; ``sandbox warehouse
  prepare`` calls it for tables loaded another way or after a policy change.
* :func:`read_layout` returns the entries that are current: policy fingerprint equal to the
  loaded policy's and source checksum equal to the table's ``_dataset_meta`` checksum.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable, DropTable

from sandbox.catalog.warehouse import META_TABLE, RANK_COLUMN, dataset_table, meta_table
from sandbox.policy.models import CUBE_MAX_CELLS, Dataset

from .layout import (
    CUBE_ROWS,
    DerivedInfo,
    bounded_table,
    cube_count,
    cube_sum,
    cube_table,
    derived_meta_table,
    dimension_candidates,
    fingerprint,
    fx_column,
    measure_columns,
)
from .planner import _fixed_point_sql
from .schema import fixed_point, key_values

__all__ = [
    "CUBE_MAX_CELLS",
    "CUBE_MIN_REDUCTION",
    "build_derived",
    "cube_dimensions",
    "drop_derived",
    "layout_status",
    "read_layout",
]

#: The cube is kept only when it has at most this fraction of the bounded table's rows.
CUBE_MIN_REDUCTION = 0.1


def _cells(dataset: Dataset, name: str) -> int:
    """Rows a dimension can contribute to the cube: its domain's size + 1 (NULL or other values)."""
    return len(key_values(dataset, dataset.column(name), False, "GROUP BY")) + 1


def cube_dimensions(dataset: Dataset) -> tuple[str, ...]:
    """The cube's dimensions: the policy's ``cube_dimensions`` verbatim when set (``()``: no
    cube); otherwise the public-domain columns, in policy order, while the product of their
    domain sizes (+1 each) stays within :data:`CUBE_MAX_CELLS` (a column that would exceed it is
    skipped).

    ``sandbox policy check`` refuses an invalid list; a dataset built without the loader gets a
    ``ValueError`` here, naming the dataset, the field and the column."""
    if dataset.cube_dimensions is not None:
        return _checked_dimensions(dataset, tuple(dataset.cube_dimensions))
    dims: list[str] = []
    cells = 1
    for name in dimension_candidates(dataset):
        size = _cells(dataset, name)
        if cells * size <= CUBE_MAX_CELLS:
            dims.append(name)
            cells *= size
    return tuple(dims)


def _checked_dimensions(dataset: Dataset, dims: tuple[str, ...]) -> tuple[str, ...]:
    candidates = dimension_candidates(dataset)
    where = f"dataset {dataset.id!r}: cube_dimensions"
    for i, name in enumerate(dims):
        if name in dims[:i]:
            raise ValueError(f"{where}: {name!r} is listed twice")
        if name not in candidates:
            raise ValueError(
                f"{where}: {name!r} is not a column with a public domain (and not an identifier); "
                f"candidates: {', '.join(candidates) or '(none)'}"
            )
    cells = math.prod(_cells(dataset, name) for name in dims)
    if cells > CUBE_MAX_CELLS:
        raise ValueError(f"{where}: the cube has up to {cells:,} cells, above {CUBE_MAX_CELLS:,}")
    return dims


def drop_derived(conn: sa.Connection, dataset: Dataset) -> None:
    """Drop a dataset's derived tables and its ``_dp_derived`` row (queries use the raw table)."""
    metadata = sa.MetaData()
    meta = derived_meta_table(metadata)
    conn.execute(CreateTable(meta, if_not_exists=True))
    conn.execute(sa.delete(meta).where(meta.c.dataset == dataset.id))
    conn.execute(DropTable(cube_table(dataset, (), metadata), if_exists=True))
    conn.execute(DropTable(bounded_table(dataset, metadata), if_exists=True))


def build_derived(
    conn: sa.Connection,
    dataset: Dataset,
    *,
    source_checksum: str | None = None,
    min_reduction: float = CUBE_MIN_REDUCTION,
) -> DerivedInfo:
    """Replace the bounded table and the cube of ``dataset`` from its raw table, in ``conn``'s
    transaction, and record them in ``_dp_derived``. ``source_checksum`` is the raw table's
    ``_dataset_meta`` checksum (read from there when not given). The cube is kept when it has at
    most ``min_reduction`` times the bounded table's rows (1.0 keeps any cube)."""
    if not dataset.privacy_unit or not dataset.max_rows_per_unit:
        raise ValueError(f"dataset {dataset.id!r} has no privacy unit: nothing to derive")
    metadata = sa.MetaData()
    raw = dataset_table(dataset, metadata)
    if source_checksum is None:
        source_checksum = _source_checksum(conn, dataset.id)
    drop_derived(conn, dataset)
    meta = derived_meta_table(metadata)

    bounded = bounded_table(dataset, metadata)
    conn.execute(CreateTable(bounded))
    select_columns: list[sa.ColumnElement[Any]] = []
    for column in bounded.columns:
        if column.name in raw.c:
            select_columns.append(raw.c[column.name])
    for name in measure_columns(dataset):
        fp = fixed_point(dataset, dataset.column(name), "SELECT")
        select_columns.append(_fixed_point_sql(raw.c[name], fp).label(fx_column(name)))
    source = sa.select(*select_columns).where(raw.c[RANK_COLUMN] <= dataset.max_rows_per_unit)
    conn.execute(sa.insert(bounded).from_select([c.name for c in bounded.columns], source))
    bounded_rows = int(conn.execute(sa.select(sa.func.count()).select_from(bounded)).scalar_one())

    dims = cube_dimensions(dataset)
    cube_rows: int | None = None
    if dims:
        cube = cube_table(dataset, dims, metadata)
        conn.execute(CreateTable(cube))
        aggregates: list[sa.ColumnElement[Any]] = [sa.func.count().label(CUBE_ROWS)]
        for name in measure_columns(dataset):
            aggregates.append(sa.func.sum(bounded.c[fx_column(name)]).label(cube_sum(name)))
            aggregates.append(sa.func.count(bounded.c[fx_column(name)]).label(cube_count(name)))
        grouped = sa.select(*[bounded.c[d] for d in dims], *aggregates).group_by(
            *[bounded.c[d] for d in dims]
        )
        conn.execute(sa.insert(cube).from_select([c.name for c in cube.columns], grouped))
        cube_rows = int(conn.execute(sa.select(sa.func.count()).select_from(cube)).scalar_one())
        if cube_rows > max(1, math.floor(bounded_rows * min_reduction)):
            conn.execute(DropTable(cube))  # a scan of the bounded table is about as fast
            dims, cube_rows = (), None
    info = DerivedInfo(
        dataset=dataset.id,
        fingerprint=fingerprint(dataset),
        bounded_rows=bounded_rows,
        cube_dimensions=dims or None,
        cube_rows=cube_rows,
    )
    conn.execute(
        sa.insert(meta).values(
            dataset=dataset.id,
            fingerprint=info.fingerprint,
            source_checksum=source_checksum,
            bounded_rows=bounded_rows,
            cube_dimensions=None if not dims else json.dumps(list(dims)),
            cube_rows=cube_rows,
            built_at=datetime.now(UTC).replace(tzinfo=None, microsecond=0),
        )
    )
    return info


def _checksums(conn: sa.Connection) -> dict[str, str | None]:
    """``_dataset_meta`` checksums by dataset (empty when the table does not exist)."""
    meta = meta_table(sa.MetaData())
    if not sa.inspect(conn).has_table(META_TABLE):
        return {}
    return {r.dataset: r.checksum for r in conn.execute(sa.select(meta.c.dataset, meta.c.checksum)).all()}


def _source_checksum(conn: sa.Connection, dataset_id: str) -> str | None:
    return _checksums(conn).get(dataset_id)


def _recorded(conn: sa.Connection) -> dict[str, Any]:
    """``_dp_derived`` rows by dataset (empty when nothing was ever derived)."""
    derived = derived_meta_table(sa.MetaData())
    if not sa.inspect(conn).has_table(derived.name):
        return {}
    return {row.dataset: row for row in conn.execute(sa.select(derived)).all()}


def _info(row: Any) -> DerivedInfo:
    return DerivedInfo(
        dataset=row.dataset,
        fingerprint=row.fingerprint,
        bounded_rows=int(row.bounded_rows),
        cube_dimensions=None if row.cube_dimensions is None else tuple(json.loads(row.cube_dimensions)),
        cube_rows=None if row.cube_rows is None else int(row.cube_rows),
    )


def read_layout(conn: sa.Connection, datasets: Mapping[str, Dataset] | None = None) -> dict[str, DerivedInfo]:
    """The current ``_dp_derived`` entries by dataset id: source checksum equal to the raw
    table's ``_dataset_meta`` checksum and, when ``datasets`` is given, fingerprint equal to the
    loaded policy's. An empty dict when nothing was derived."""
    recorded = _recorded(conn)
    checksums = _checksums(conn) if recorded else {}
    out: dict[str, DerivedInfo] = {}
    for ds_id, row in recorded.items():
        if row.source_checksum != checksums.get(ds_id):
            continue  # the raw table was rewritten after the derived tables were built
        info = _info(row)
        if datasets is not None and (ds_id not in datasets or not info.valid_for(datasets[ds_id])):
            continue
        out[ds_id] = info
    return out


def layout_status(conn: sa.Connection, datasets: Mapping[str, Dataset]) -> list[dict[str, Any]]:
    """Per dataset with a privacy unit: ``state`` (``current``, ``stale_policy``, ``stale_table``,
    ``missing``), bounded rows, cube dimensions and rows, as ``sandbox warehouse status`` shows them."""
    recorded, checksums = _recorded(conn), _checksums(conn)
    out: list[dict[str, Any]] = []
    for ds_id, dataset in datasets.items():
        if not dataset.privacy_unit or not dataset.max_rows_per_unit:
            continue
        row = recorded.get(ds_id)
        info = None if row is None else _info(row)
        if row is None or info is None:
            state = "missing"
        elif not info.valid_for(dataset):
            state = "stale_policy"
        elif row.source_checksum != checksums.get(ds_id):
            state = "stale_table"
        else:
            state = "current"
        out.append(
            {
                "dataset": ds_id,
                "state": state,
                "bounded_rows": None if info is None else info.bounded_rows,
                "cube_dimensions": None
                if info is None or info.cube_dimensions is None
                else list(info.cube_dimensions),
                "cube_rows": None if info is None else info.cube_rows,
                "built_at": None if row is None else row.built_at,
            }
        )
    return out
