"""Write a generated table to the warehouse, replacing the old one atomically.

One transaction per dataset: drop the old table, create it from its declaration, bulk-load the
rows and upsert its ``_dataset_meta`` row. DuckDB, SQLite and PostgreSQL all run DDL inside
transactions, so a failure (or an interrupt) leaves the previous table untouched, never half a
table. Bulk paths, all behind the SQLAlchemy connection's own DBAPI connection (same
transaction):

* DuckDB: register the DataFrame chunk on the raw connection and ``INSERT ... SELECT``;
* PostgreSQL: psycopg ``COPY ... FROM STDIN`` in CSV;
* SQLite: ``executemany`` in chunks, values in SQLAlchemy's own storage formats.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, column, delete, insert, table
from sqlalchemy.schema import CreateTable, DropTable
from sqlalchemy.sql.schema import Table

Progress = Callable[[int], None]

DEFAULT_CHUNK_ROWS = 100_000
_VIEW = "_sandbox_synth_chunk"


@dataclass(frozen=True)
class MetaRow:
    """The ``_dataset_meta`` row written with a table (SR-40 synthetic marker)."""

    dataset: str
    synthetic: bool
    seed: int | None
    scale: int | None
    rows: int
    checksum: str
    generated_at: datetime

    def values(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "synthetic": self.synthetic,
            "seed": self.seed,
            "scale": self.scale,
            "rows": self.rows,
            "checksum": self.checksum,
            "generated_at": self.generated_at,
        }


def replace_table(
    engine: Engine,
    tbl: Table,
    frame: pd.DataFrame,
    meta: Table,
    meta_row: MetaRow,
    *,
    progress: Progress | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    after_load: Callable[[Connection], None] | None = None,
) -> None:
    """Replace ``tbl`` by ``frame`` (columns in table order) and record ``meta_row``, atomically.

    ``after_load`` runs in the same transaction once the rows and the meta row are in (the DP
    engine's derived tables are built there), so it commits or rolls back with the table.
    """
    names = [c.name for c in tbl.columns]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing} of table {tbl.name}")
    frame = frame[names]
    backend = engine.dialect.name
    with engine.begin() as conn:
        conn.execute(CreateTable(meta, if_not_exists=True))
        conn.execute(DropTable(tbl, if_exists=True))
        conn.execute(CreateTable(tbl))
        for chunk in _chunks(frame, chunk_rows):
            if backend == "duckdb":
                _load_duckdb(conn, tbl, chunk)
            elif backend == "postgresql":
                _load_postgres(conn, tbl, chunk)
            else:
                _load_generic(conn, tbl, chunk)
            if progress is not None:
                progress(len(chunk))
        conn.execute(delete(meta).where(meta.c.dataset == meta_row.dataset))
        conn.execute(insert(meta).values(**meta_row.values()))
        if after_load is not None:
            after_load(conn)


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _load_duckdb(conn: Connection, tbl: Table, chunk: pd.DataFrame) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    names = list(chunk.columns)
    raw.register(_VIEW, chunk)
    try:
        source = table(_VIEW, *[column(n) for n in names])
        conn.execute(insert(tbl).from_select(names, source.select()))
    finally:
        raw.unregister(_VIEW)


def _load_postgres(conn: Connection, tbl: Table, chunk: pd.DataFrame) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    prep = conn.dialect.identifier_preparer
    cols = ", ".join(prep.quote(n) for n in chunk.columns)
    buf = io.StringIO()
    _text_frame(chunk).to_csv(buf, header=False, index=False)
    statement = f"COPY {prep.format_table(tbl)} ({cols}) FROM STDIN WITH (FORMAT csv)"
    with raw.cursor() as cur, cur.copy(statement) as copy:
        copy.write(buf.getvalue())


def _text_frame(chunk: pd.DataFrame) -> pd.DataFrame:
    """Dates and timestamps as ISO text; floats keep their shortest round-trip repr (pandas default)."""
    out = chunk.copy()
    for name in chunk.columns:
        if pd.api.types.is_datetime64_any_dtype(chunk[name]):
            out[name] = chunk[name].dt.strftime("%Y-%m-%d %H:%M:%S")
    return out


def _load_generic(conn: Connection, tbl: Table, chunk: pd.DataFrame) -> None:
    """Raw ``executemany`` with values already in the dialect's storage format (SQLite)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    statement = str(insert(tbl).compile(dialect=conn.dialect))
    types = {c.name: c.type for c in tbl.columns}
    columns = [_storage_values(chunk[name], types[name]) for name in chunk.columns]
    cursor = raw.cursor()
    try:
        cursor.executemany(statement, zip(*columns, strict=True))
    finally:
        cursor.close()


def _storage_values(series: pd.Series, sql_type: Any) -> list[Any]:
    """Python values as SQLAlchemy's SQLite types store them (DATE text, DATETIME text, 0/1)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        kind = type(sql_type).__name__
        fmt = "%Y-%m-%d" if kind == "Date" else "%Y-%m-%d %H:%M:%S.%f"
        return list(series.dt.strftime(fmt))
    if pd.api.types.is_bool_dtype(series):
        flags: list[Any] = series.to_numpy().astype(np.int64).tolist()
        return flags
    if pd.api.types.is_float_dtype(series) or pd.api.types.is_integer_dtype(series):
        numbers: list[Any] = series.to_numpy().tolist()
        return numbers
    return [
        None if v is None or (isinstance(v, float) and np.isnan(v)) else v
        for v in series.to_numpy(dtype=object)
    ]
