"""Warehouse engines and tables declared from the policies (docs/architecture.md, "Warehouse").

* Table name = dataset id; columns exactly as the policy declares them, in policy order.
* Datasets with a privacy unit carry ``_rank`` (INTEGER NOT NULL): the 1..n numbering of the
  unit's rows in a seeded random order, assigned at ingest, so DP queries bound contributions
  with ``WHERE _rank <= max_rows_per_unit`` instead of a window function.
* ``_dataset_meta`` records, per dataset, that the rows are synthetic (SR-40) and how they were
  made (seed, scale, row count, checksum, time).

Tables are always *declared*, never reflected (duckdb-engine 0.17's reflection breaks on
SQLAlchemy 2.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.types import TypeEngine

from sandbox.errors import ConfigError
from sandbox.policy.models import ColumnType, Dataset

if TYPE_CHECKING:
    from sandbox.policy.loader import Catalog

RANK_COLUMN = "_rank"
META_TABLE = "_dataset_meta"
DEFAULT_DUCKDB_MEMORY_LIMIT = "2GB"

_TYPES: dict[ColumnType, type[TypeEngine[Any]]] = {
    ColumnType.STRING: String,
    ColumnType.CATEGORY: String,
    ColumnType.INTEGER: BigInteger,
    ColumnType.FLOAT: Double,
    ColumnType.BOOLEAN: Boolean,
    ColumnType.DATE: Date,
    ColumnType.TIMESTAMP: DateTime,
}


def make_engine(
    url: str | URL,
    *,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
    read_only: bool = False,
    **kwargs: Any,
) -> Engine:
    """An engine for the warehouse URL: DuckDB, SQLite or PostgreSQL (psycopg 3).

    * ``duckdb:///path`` gets DuckDB's ``memory_limit`` (and ``read_only`` when asked).
    * ``sqlite:///path`` gets real transactions around DDL (pysqlite otherwise autocommits
      ``DROP``/``CREATE``), so a failed table replacement rolls back completely.
    * ``postgresql://`` and ``postgres://`` are read as ``postgresql+psycopg://``.

    Parent directories of DuckDB and SQLite files are created.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        _ensure_parent(parsed.database)
        connect_args: dict[str, Any] = {"config": {"memory_limit": memory_limit}}
        if read_only:
            connect_args["read_only"] = True
        connect_args.update(kwargs.pop("connect_args", {}))
        return create_engine(parsed, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        _ensure_parent(parsed.database)
        if read_only and parsed.database not in (None, "", ":memory:"):
            parsed = parsed.set(database=f"file:{parsed.database}").update_query_dict(
                {"mode": "ro", "uri": "true"}
            )
        engine = create_engine(parsed, **kwargs)
        _sqlite_transactional_ddl(engine)
        return engine
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        if read_only:
            opts = kwargs.pop("connect_args", {})
            opts.setdefault("options", "-c default_transaction_read_only=on")
            kwargs["connect_args"] = opts
        return create_engine(parsed, **kwargs)
    raise ConfigError(
        f"Unsupported warehouse URL scheme {parsed.drivername!r}.",
        hint="Use duckdb:///<file>, sqlite:///<file> or postgresql+psycopg://user@host/db.",
    )


def _ensure_parent(database: str | None) -> None:
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_transactional_ddl(engine: Engine) -> None:
    # SQLAlchemy's documented recipe: let SQLAlchemy, not pysqlite, emit BEGIN.
    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


def column_type(kind: ColumnType) -> TypeEngine[Any]:
    """The SQL type of a policy column type (architecture.md: string/category -> VARCHAR, ...)."""
    return _TYPES[kind]()


def dataset_table(dataset: Dataset, metadata: MetaData) -> Table:
    """Declare the warehouse table of one dataset on ``metadata``."""
    columns: list[Column[Any]] = [
        Column(col.name, column_type(col.type), nullable=col.nullable) for col in dataset.columns
    ]
    if dataset.privacy_unit:
        columns.append(Column(RANK_COLUMN, Integer, nullable=False))
    return Table(
        dataset.id,
        metadata,
        *columns,
        info={"dataset": dataset.id, "synthetic": dataset.synthetic, "privacy_unit": dataset.privacy_unit},
    )


def warehouse_tables(catalog: Catalog, metadata: MetaData | None = None) -> dict[str, Table]:
    """Every dataset's table, declared from the policies (``catalog.datasets``), keyed by id."""
    md = metadata if metadata is not None else MetaData()
    return {ds_id: dataset_table(ds, md) for ds_id, ds in catalog.datasets.items()}


def meta_table(metadata: MetaData | None = None) -> Table:
    """``_dataset_meta``: one row per generated dataset (synthetic marker, SR-40)."""
    md = metadata if metadata is not None else MetaData()
    if META_TABLE in md.tables:
        return md.tables[META_TABLE]
    return Table(
        META_TABLE,
        md,
        Column("dataset", String, primary_key=True),
        Column("synthetic", Boolean, nullable=False),
        Column("seed", BigInteger, nullable=True),
        Column("scale", BigInteger, nullable=True),
        Column("rows", BigInteger, nullable=False),
        Column("checksum", String, nullable=False),
        Column("generated_at", DateTime, nullable=False),
    )
