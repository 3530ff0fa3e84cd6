"""Derived DP tables: names, declarations and the policy fingerprint they are valid for.

Two tables per dataset with a privacy unit, built at ingest inside the warehouse
(:mod:`sandbox.dp.derived`) so that a query does less per row:

``_dp_<dataset>_bounded``
    the rows with ``_rank <= max_rows_per_unit`` only (contribution bounding done once), every
    non-identifier column plus the privacy unit, and for each bounded numeric column ``c`` its
    clamped fixed-point integer ``_fx_<c>`` (the same SQL expression the planner uses on the raw
    table, evaluated once). A query on it needs no rank filter and no per-row ``CASE``.
``_dp_<dataset>_cube``
    the bounded rows grouped by the dataset's *cube dimensions* (the policy's
    ``cube_dimensions``, else public-domain columns in policy order, see
    :func:`sandbox.dp.derived.cube_dimensions`), with ``_n_rows = COUNT(*)`` and, per bounded
    numeric column, ``_s_<c> = SUM(_fx_<c>)`` and ``_n_<c> = COUNT(_fx_<c>)``. A query whose keys
    and filters use only cube dimensions and whose statistics are counts, sums and means sums
    these per-group integers instead of scanning rows.

Both give exactly the integers the raw-table statement gives (tests/integration/test_dp_derived.py
checks it on DuckDB, SQLite and PostgreSQL); noise, charges and accuracy are unchanged.

``_dp_derived`` holds one row per dataset: the :func:`fingerprint` of the policy parts the
tables depend on, the checksum of the source table they were built from (``_dataset_meta``) and
the cube's dimensions. The planner uses a derived table only when its fingerprint equals the
current policy's and its source checksum equals the current table's; otherwise it falls back to
the raw table, which is always correct.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sandbox.catalog.warehouse import column_type
from sandbox.policy.models import NUMERIC_TYPES, ColumnType, Dataset

from .schema import is_identifier

__all__ = [
    "CUBE_ROWS",
    "DERIVED_META",
    "LAYOUT_VERSION",
    "DerivedInfo",
    "bounded_table",
    "bounded_table_name",
    "cube_count",
    "cube_sum",
    "cube_table",
    "cube_table_name",
    "derived_meta_table",
    "dimension_candidates",
    "fingerprint",
    "fx_column",
    "measure_columns",
]

#: Bumped whenever the derived tables' content rules change (old tables are then ignored).
LAYOUT_VERSION = 1
DERIVED_META = "_dp_derived"
CUBE_ROWS = "_n_rows"


def bounded_table_name(dataset_id: str) -> str:
    return f"_dp_{dataset_id}_bounded"


def cube_table_name(dataset_id: str) -> str:
    return f"_dp_{dataset_id}_cube"


def fx_column(column: str) -> str:
    """The clamped fixed-point integer of ``column`` in the bounded table."""
    return f"_fx_{column}"


def cube_sum(column: str) -> str:
    return f"_s_{column}"


def cube_count(column: str) -> str:
    return f"_n_{column}"


def measure_columns(dataset: Dataset) -> tuple[str, ...]:
    """Numeric non-identifier columns with public bounds: the ones SUM/AVG/quantiles may use."""
    return tuple(
        c.name
        for c in dataset.columns
        if c.type in NUMERIC_TYPES and c.bounds is not None and not is_identifier(dataset, c)
    )


def dimension_candidates(dataset: Dataset) -> tuple[str, ...]:
    """Columns that can be non-binned grouping keys: a declared public domain, or boolean."""
    return tuple(
        c.name
        for c in dataset.columns
        if not is_identifier(dataset, c)
        and ((isinstance(c.domain, list) and c.domain) or (c.type is ColumnType.BOOLEAN and c.domain is None))
    )


def _kept_columns(dataset: Dataset) -> list[str]:
    """Columns copied into the bounded table: the privacy unit and every non-identifier column."""
    return [
        c.name for c in dataset.columns if c.name == dataset.privacy_unit or not is_identifier(dataset, c)
    ]


def fingerprint(dataset: Dataset) -> str:
    """SHA-256 of everything the derived tables depend on: layout version, unit, k, each
    column's name, type, nullability, role, bounds, precision and domain, and the policy's
    ``cube_dimensions`` when set (left out when absent, so the greedy default keeps the
    fingerprints of tables built before the field existed)."""
    body: dict[str, Any] = {
        "version": LAYOUT_VERSION,
        "dataset": dataset.id,
        "unit": dataset.privacy_unit,
        "k": dataset.max_rows_per_unit,
        "columns": [
            [
                c.name,
                c.type.value,
                c.nullable,
                c.role.value,
                None if c.bounds is None else [str(c.bounds.lower), str(c.bounds.upper)],
                c.precision,
                c.domain if isinstance(c.domain, list) else None,
            ]
            for c in dataset.columns
        ],
    }
    if dataset.cube_dimensions is not None:
        body["cube_dimensions"] = list(dataset.cube_dimensions)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def bounded_table(dataset: Dataset, metadata: sa.MetaData) -> sa.Table:
    """Declare ``_dp_<dataset>_bounded`` on ``metadata``."""
    columns: list[sa.Column[Any]] = [
        sa.Column(c.name, column_type(c.type), nullable=c.nullable)
        for c in dataset.columns
        if c.name in _kept_columns(dataset)
    ]
    columns += [sa.Column(fx_column(name), sa.BigInteger, nullable=True) for name in measure_columns(dataset)]
    return sa.Table(bounded_table_name(dataset.id), metadata, *columns)


def cube_table(dataset: Dataset, dimensions: tuple[str, ...], metadata: sa.MetaData) -> sa.Table:
    """Declare ``_dp_<dataset>_cube`` over ``dimensions`` on ``metadata``."""
    columns: list[sa.Column[Any]] = [
        sa.Column(name, column_type(dataset.column(name).type), nullable=True) for name in dimensions
    ]
    columns.append(sa.Column(CUBE_ROWS, sa.BigInteger, nullable=False))
    for name in measure_columns(dataset):
        columns.append(sa.Column(cube_sum(name), sa.BigInteger, nullable=True))
        columns.append(sa.Column(cube_count(name), sa.BigInteger, nullable=False))
    return sa.Table(cube_table_name(dataset.id), metadata, *columns)


def derived_meta_table(metadata: sa.MetaData | None = None) -> sa.Table:
    """``_dp_derived``: which derived tables exist, for which policy and source table."""
    md = metadata if metadata is not None else sa.MetaData()
    if DERIVED_META in md.tables:
        return md.tables[DERIVED_META]
    return sa.Table(
        DERIVED_META,
        md,
        sa.Column("dataset", sa.String, primary_key=True),
        sa.Column("fingerprint", sa.String, nullable=False),
        sa.Column("source_checksum", sa.String, nullable=True),
        sa.Column("bounded_rows", sa.BigInteger, nullable=False),
        sa.Column("cube_dimensions", sa.String, nullable=True),  # JSON list; NULL: no cube
        sa.Column("cube_rows", sa.BigInteger, nullable=True),
        sa.Column("built_at", sa.DateTime, nullable=False),
    )


@dataclass(frozen=True)
class DerivedInfo:
    """One dataset's derived tables as recorded in ``_dp_derived`` (and still current)."""

    dataset: str
    fingerprint: str
    bounded_rows: int
    cube_dimensions: tuple[str, ...] | None
    cube_rows: int | None

    def valid_for(self, dataset: Dataset) -> bool:
        return self.dataset == dataset.id and self.fingerprint == fingerprint(dataset)
