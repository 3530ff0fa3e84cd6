"""``sandbox synth`` end to end: CLI -> generators -> warehouse (DuckDB, SQLite, PostgreSQL).

Every check reads the rows back through SQLAlchemy from the declared tables, and compares
per-table checksums computed here over *sorted* rows (independent of insertion order and of
the generator's own checksum).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.uscc import independent_is_valid
from typer.testing import CliRunner

from sandbox.catalog.warehouse import META_TABLE, RANK_COLUMN, make_engine, meta_table, warehouse_tables
from sandbox.cli.main import app
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import ColumnType
from sandbox.synth.base import SynthContext
from sandbox.synth.finance import project_hmac_key, uscc_hmac
from sandbox.synth.run import synthesize
from sandbox.synth.writer import MetaRow, replace_table

SCALE = 20_000
SEED = 7
SMALL = 2_000


def _canonical(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def table_checksums(url: str, catalog: Catalog, datasets: list[str] | None = None) -> dict[str, str]:
    """SHA-256 per table over its rows, each rendered canonically, sorted."""
    engine = make_engine(url)
    tables = warehouse_tables(catalog)
    out = {}
    try:
        with engine.connect() as conn:
            for ds_id in datasets or list(tables):
                rows = sorted(
                    "\x1f".join(map(_canonical, row)) for row in conn.execute(sa.select(tables[ds_id]))
                )
                out[ds_id] = hashlib.sha256("\x1e".join(rows).encode("utf-8")).hexdigest()
    finally:
        engine.dispose()
    return out


def run_cli(*args: str) -> None:
    result = CliRunner().invoke(app, ["synth", *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_policies()


@pytest.fixture(scope="module")
def duckdb_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The same command twice, into two fresh DuckDB files."""
    base = tmp_path_factory.mktemp("synth")
    urls = (f"duckdb:///{base / 'a.duckdb'}", f"duckdb:///{base / 'b.duckdb'}")
    for url in urls:
        run_cli("--scale", str(SCALE), "--seed", str(SEED), "--warehouse", url)
    return urls


@pytest.fixture(scope="module")
def warehouse(duckdb_pair: tuple[str, str]) -> Iterator[sa.Engine]:
    engine = make_engine(duckdb_pair[0], read_only=True)
    yield engine
    engine.dispose()


def test_same_seed_and_scale_give_identical_tables(duckdb_pair: tuple[str, str], catalog: Catalog) -> None:
    first, second = (table_checksums(url, catalog) for url in duckdb_pair)
    assert set(first) == set(catalog.datasets)
    assert first == second


def test_meta_table_marks_every_dataset_synthetic(warehouse: sa.Engine, catalog: Catalog) -> None:
    meta = meta_table()
    tables = warehouse_tables(catalog)
    with warehouse.connect() as conn:
        rows = {r.dataset: r for r in conn.execute(sa.select(meta))}
        assert set(rows) == set(catalog.datasets)
        for ds_id, row in rows.items():
            count = conn.execute(sa.select(sa.func.count()).select_from(tables[ds_id])).scalar_one()
            assert row.synthetic is True and row.seed == SEED and row.scale == SCALE
            assert row.rows == count and len(row.checksum) == 64
    assert META_TABLE == "_dataset_meta"


def test_numbers_and_categories_in_the_warehouse_respect_the_policy(
    warehouse: sa.Engine, catalog: Catalog
) -> None:
    tables = warehouse_tables(catalog)
    with warehouse.connect() as conn:
        for ds_id, ds in catalog.datasets.items():
            t = tables[ds_id]
            for col in ds.columns:
                c = t.c[col.name]
                if col.bounds is not None:
                    lo, hi = conn.execute(sa.select(sa.func.min(c), sa.func.max(c))).one()
                    assert float(col.bounds.lower) <= lo and hi <= float(col.bounds.upper), (ds_id, col.name)
                if isinstance(col.domain, list) and col.type is not ColumnType.BOOLEAN:
                    present = set(conn.execute(sa.select(c).where(c.is_not(None)).distinct()).scalars())
                    allowed = (
                        set(col.domain) if col.type is ColumnType.INTEGER else {str(v) for v in col.domain}
                    )
                    assert present <= allowed, (ds_id, col.name, present - allowed)
                if not col.nullable:
                    nulls = conn.execute(
                        sa.select(sa.func.count()).select_from(t).where(c.is_(None))
                    ).scalar_one()
                    assert nulls == 0, (ds_id, col.name)


def test_rank_is_a_1_to_n_permutation_per_unit(warehouse: sa.Engine, catalog: Catalog) -> None:
    tables = warehouse_tables(catalog)
    with warehouse.connect() as conn:
        for ds_id, ds in catalog.datasets.items():
            t = tables[ds_id]
            if not ds.privacy_unit:
                assert RANK_COLUMN not in t.c
                continue
            rank, unit = t.c[RANK_COLUMN], t.c[ds.privacy_unit]
            per_unit = (
                sa.select(
                    sa.func.count().label("n"),
                    sa.func.count(sa.distinct(rank)).label("d"),
                    sa.func.min(rank).label("lo"),
                    sa.func.max(rank).label("hi"),
                )
                .group_by(unit)
                .subquery()
            )
            bad = conn.execute(
                sa.select(sa.func.count())
                .select_from(per_unit)
                .where(
                    (per_unit.c.n != per_unit.c.d) | (per_unit.c.lo != 1) | (per_unit.c.hi != per_unit.c.n)
                )
            ).scalar_one()
            assert bad == 0, ds_id
            if ds.max_rows_per_unit and ds.max_rows_per_unit > 1:
                over = conn.execute(
                    sa.select(sa.func.count()).select_from(t).where(rank > ds.max_rows_per_unit)
                ).scalar_one()
                assert over > 0, f"{ds_id}: no unit above the bound, the _rank filter would not matter"


def test_every_generated_uscc_passes_the_checksum(warehouse: sa.Engine, catalog: Catalog) -> None:
    tables = warehouse_tables(catalog)
    with warehouse.connect() as conn:
        for ds_id, column in [
            ("enterprise_registry", "uscc"),
            ("enterprise_tax", "uscc"),
            ("social_insurance", "uscc"),
            ("penalties", "uscc"),
            ("medical_institutions", "inst_uscc"),
            ("outpatient_visits", "inst_uscc"),
        ]:
            codes = list(conn.execute(sa.select(tables[ds_id].c[column]).distinct()).scalars())
            assert codes and all(independent_is_valid(c) for c in codes), ds_id
        registry = tables["enterprise_registry"]
        for code, district in conn.execute(sa.select(registry.c.uscc, registry.c.district_code)):
            assert code[0] == "9" and code[1] in "123" and code[2:8] == district
        inst = tables["medical_institutions"]
        assert {c[:2] for c in conn.execute(sa.select(inst.c.inst_uscc)).scalars()} <= {"12", "52"}


def _orphans(conn: sa.Connection, child: sa.Column[Any], parent: sa.Column[Any]) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(child.table)
        .where(child.is_not(None), ~sa.exists().where(parent == child))
    )
    return int(conn.execute(query).scalar_one())


def test_join_keys_are_consistent(warehouse: sa.Engine, catalog: Catalog) -> None:
    t = warehouse_tables(catalog)
    with warehouse.connect() as conn:
        for ds_id in ("enterprise_tax", "social_insurance", "penalties"):
            assert _orphans(conn, t[ds_id].c.uscc, t["enterprise_registry"].c.uscc) == 0, ds_id
        assert _orphans(conn, t["transit_trips"].c.entry_station_id, t["transit_stations"].c.station_id) == 0
        assert _orphans(conn, t["transit_trips"].c.exit_station_id, t["transit_stations"].c.station_id) == 0
        assert _orphans(conn, t["outpatient_visits"].c.inst_uscc, t["medical_institutions"].c.inst_uscc) == 0
        assert _orphans(conn, t["venue_daily_visitors"].c.venue_id, t["venues"].c.venue_id) == 0
        registry = list(conn.execute(sa.select(t["enterprise_registry"].c.uscc)).scalars())
        loans = set(conn.execute(sa.select(t["sme_loans"].c.uscc_hmac).distinct()).scalars())
    assert loans <= set(uscc_hmac(registry, project_hmac_key(SEED)))


def test_sqlite_and_duckdb_hold_the_same_rows(tmp_path: Path, catalog: Catalog) -> None:
    duck = f"duckdb:///{tmp_path / 'w.duckdb'}"
    lite = f"sqlite:///{tmp_path / 'w.sqlite'}"
    for url in (duck, lite):
        run_cli("--scale", str(SMALL), "--seed", str(SEED), "--warehouse", url)
    assert table_checksums(lite, catalog) == table_checksums(duck, catalog)


def test_a_dataset_subset_writes_the_same_rows_as_a_full_run(tmp_path: Path, catalog: Catalog) -> None:
    full = f"duckdb:///{tmp_path / 'full.duckdb'}"
    part = f"duckdb:///{tmp_path / 'part.duckdb'}"
    subset = ["enterprise_tax", "sme_loans", "transit_trips", "outpatient_visits"]
    synthesize(catalog, scale=SMALL, seed=SEED, warehouse_url=full)
    run_cli("--scale", str(SMALL), "--seed", str(SEED), "--datasets", ",".join(subset), "--warehouse", part)
    assert table_checksums(part, catalog, subset) == table_checksums(full, catalog, subset)
    engine = make_engine(part)
    with engine.connect() as conn:
        names = set(conn.execute(sa.select(meta_table().c.dataset)).scalars())
    engine.dispose()
    assert names == set(subset)


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_a_failed_write_leaves_the_previous_table_intact(
    tmp_path: Path, catalog: Catalog, backend: str
) -> None:
    url = f"{backend}:///{tmp_path / ('w.' + backend)}"
    synthesize(catalog, scale=SMALL, seed=SEED, datasets=["taxi_trips"], warehouse_url=url)
    before = table_checksums(url, catalog, ["taxi_trips"])
    frame = SynthContext(catalog, SEED + 1, SMALL * 2).frame("taxi_trips")
    metadata = sa.MetaData()
    table = warehouse_tables(catalog, metadata)["taxi_trips"]
    row = MetaRow("taxi_trips", True, SEED + 1, SMALL * 2, len(frame), "x" * 64, datetime(2020, 1, 1))

    def fail_after_first_chunk(_rows: int) -> None:
        raise _Boom("interrupted")

    engine = make_engine(url)
    try:
        with pytest.raises(_Boom):
            replace_table(
                engine,
                table,
                frame,
                meta_table(metadata),
                row,
                progress=fail_after_first_chunk,
                chunk_rows=500,
            )
        with engine.connect() as conn:
            seeds = list(conn.execute(sa.select(meta_table().c.seed)).scalars())
    finally:
        engine.dispose()
    assert table_checksums(url, catalog, ["taxi_trips"]) == before
    assert seeds == [SEED]


def test_unknown_dataset_exits_2_with_the_error_shape(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "synth",
            "--scale",
            "100",
            "--datasets",
            "nope",
            "--warehouse",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--json",
        ],
    )
    assert result.exit_code == 2
    assert '"code": "unknown_dataset"' in result.output


def test_json_summary_lists_rows_per_dataset(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(
        app, ["synth", "--scale", "500", "--datasets", "venues,road_accidents", "--warehouse", url, "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert [d["dataset"] for d in summary["datasets"]] == ["road_accidents", "venues"]
    assert summary["datasets"][0]["rows"] == 500


@pytest.mark.postgres
def test_postgres_holds_the_same_rows_as_duckdb(postgres_url: str, tmp_path: Path, catalog: Catalog) -> None:
    name = f"synth_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        duck = f"duckdb:///{tmp_path / 'w.duckdb'}"
        for target in (url, duck):
            run_cli("--scale", str(SMALL), "--seed", str(SEED), "--warehouse", target)
        # a second run replaces every table in place
        run_cli("--scale", str(SMALL), "--seed", str(SEED), "--warehouse", url)
        assert table_checksums(url, catalog) == table_checksums(duck, catalog)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
