"""Derived DP tables (bounded rows, count/sum cube) give exactly the integers of the raw-table
statement and of an independent Python reference, on DuckDB, SQLite and PostgreSQL; stale ones
are never used; the service falls back to the raw table when a derived one is gone. A policy's
``cube_dimensions`` is the cube verbatim (``[]``: no cube; absent: the greedy choice), and changing
it makes the tables stale until ``sandbox warehouse prepare`` rebuilds them."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.toy import TOY, load, reference_cells, toy_rows
from typer.testing import CliRunner

from sandbox.catalog.warehouse import make_engine, meta_table
from sandbox.cli.main import app
from sandbox.config import Settings
from sandbox.dp import compile_query, parse_sql
from sandbox.dp.compiler import CompiledQuery
from sandbox.dp.derived import build_derived, cube_dimensions, layout_status, read_layout
from sandbox.dp.layout import DerivedInfo, bounded_table_name, cube_table_name
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import Dataset
from sandbox.services import queries

ROOT = Path(__file__).resolve().parents[2]
CUBE_DIMS = ("region", "year", "flag", "zone")

# --------------------------------------------------------------------------- query generator
DIM_PREDICATES = [
    "region = 'n'",
    "region IN ('n', 'zz')",
    "region <> 'w'",
    "region IS NULL",
    "year >= 2018",
    "year BETWEEN 2017 AND 2018",
    "year IN (2016, 2019)",
    "flag",
    "NOT flag",
    "zone IS NULL",
    "zone = 'None'",
    "zone IN ('x', 'y')",
    "zone IS NOT NULL",
]
OTHER_PREDICATES = [
    "amount > 2.5",
    "visits < 3",
    "day < DATE '2018-07-01'",
    "amount IS NULL",
    "fare BETWEEN 20 AND 100",
    "ts >= TIMESTAMP '2018-06-01 12:00:00'",
]
KEYS = ["region", "year", "flag", "zone", "BIN(amount)", "BIN(visits)"]
CUBE_AGGS = ["COUNT(*)", "SUM(amount)", "AVG(amount)", "SUM(visits)", "AVG(fare)", "AVG(loss)", "SUM(loss)"]
SCAN_AGGS = ["COUNT(DISTINCT pid)", "MEDIAN(amount)", "QUANTILE(visits, 0.9)"]


def _predicate(rng: random.Random, pool: list[str], depth: int = 0) -> str:
    roll = rng.random()
    if depth >= 2 or roll < 0.5:
        return rng.choice(pool)
    if roll < 0.7:
        return f"NOT ({_predicate(rng, pool, depth + 1)})"
    op = rng.choice(["AND", "OR"])
    return f"({_predicate(rng, pool, depth + 1)} {op} {_predicate(rng, pool, depth + 1)})"


def random_query(rng: random.Random) -> tuple[str, bool]:
    """A valid toy query and whether the cube can answer it."""
    keys = rng.sample(KEYS, rng.randint(0, 3))
    cube_only = rng.random() < 0.6
    aggs = rng.sample(CUBE_AGGS, rng.randint(1, 3))
    if not cube_only:
        aggs += rng.sample(SCAN_AGGS, rng.randint(0, 1))
    where_pool = DIM_PREDICATES if cube_only or rng.random() < 0.5 else DIM_PREDICATES + OTHER_PREDICATES
    where = _predicate(rng, where_pool) if rng.random() < 0.8 else None
    select = ", ".join([*[f"{k} AS k{i}" for i, k in enumerate(keys)], *aggs])
    sql = f"SELECT {select} FROM toy"
    if where:
        sql += f" WHERE {where}"
    if keys:
        sql += " GROUP BY " + ", ".join(f"k{i}" for i in range(len(keys)))
    eligible = (
        all(not k.startswith("BIN") for k in keys)
        and all(a in CUBE_AGGS for a in aggs)
        and not (where and any(p in where for p in OTHER_PREDICATES))
    )
    return sql, eligible


SEEDED = [random_query(random.Random(seed)) for seed in range(60)]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def catalog() -> Catalog:
    real = load_policies(ROOT / "policies")
    return dataclasses.replace(real, datasets={**real.datasets, "toy": Dataset.model_validate(TOY)})


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return toy_rows()


def derive(engine: sa.Engine, dataset: Dataset) -> DerivedInfo:
    with engine.begin() as conn:
        return build_derived(conn, dataset, min_reduction=1.0)


@pytest.fixture(scope="module")
def engines(
    catalog: Catalog, rows: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[sa.Engine, DerivedInfo]]]:
    base = tmp_path_factory.mktemp("derived")
    out: dict[str, tuple[sa.Engine, DerivedInfo]] = {}
    for name, url in (
        ("duckdb", f"duckdb:///{base / 'w.duckdb'}"),
        ("sqlite", f"sqlite:///{base / 'w.sqlite'}"),
    ):
        engine = make_engine(url)
        load(engine, catalog.dataset("toy"), rows)
        out[name] = (engine, derive(engine, catalog.dataset("toy")))
    yield out
    for engine, _ in out.values():
        engine.dispose()


def check_query(
    sql: str, cube: bool, catalog: Catalog, engine: sa.Engine, info: DerivedInfo, rows: list[Any]
) -> None:
    cq = compile_query(parse_sql(sql, catalog), catalog, Decimal("1"))
    expected = reference_cells(cq, rows)
    source, statement = cq.plan.statement_on(info)
    assert source == ("cube" if cube else "bounded"), sql
    with engine.connect() as conn:
        assert cq.plan.exact_cells(conn.execute(statement).all()) == expected, sql
        assert cq.plan.execute_exact(conn) == expected, sql
        if source == "cube":  # the bounded table gives the same integers as well
            _, scan = cq.plan.statement_on(info, use_cube=False)
            assert cq.plan.exact_cells(conn.execute(scan).all()) == expected, sql


# --------------------------------------------------------------------------- tests
def test_toy_cube_has_every_public_dimension(engines: dict[str, tuple[sa.Engine, DerivedInfo]]) -> None:
    for _engine, info in engines.values():
        assert info.cube_dimensions == CUBE_DIMS
        assert info.cube_rows is not None and 0 < info.cube_rows <= 6 * 4 * 3 * 4
        assert info.bounded_rows == sum(1 for r in toy_rows() if r["_rank"] <= TOY["max_rows_per_unit"])


@pytest.mark.parametrize(("sql", "cube"), SEEDED)
def test_derived_tables_match_the_reference_on_duckdb_and_sqlite(
    sql: str,
    cube: bool,
    catalog: Catalog,
    engines: dict[str, tuple[sa.Engine, DerivedInfo]],
    rows: list[dict[str, Any]],
) -> None:
    for engine, info in engines.values():
        check_query(sql, cube, catalog, engine, info, rows)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=1_000, max_value=10**9))
def test_random_queries_match_on_duckdb(
    seed: int,
    catalog: Catalog,
    engines: dict[str, tuple[sa.Engine, DerivedInfo]],
    rows: list[dict[str, Any]],
) -> None:
    sql, cube = random_query(random.Random(seed))
    engine, info = engines["duckdb"]
    check_query(sql, cube, catalog, engine, info, rows)


@pytest.mark.postgres
def test_derived_tables_match_the_reference_on_postgres(
    catalog: Catalog, rows: list[dict[str, Any]], pg_database_url: str
) -> None:
    engine = make_engine(pg_database_url)
    try:
        load(engine, catalog.dataset("toy"), rows)
        info = derive(engine, catalog.dataset("toy"))
        assert info.cube_dimensions == CUBE_DIMS
        for sql, cube in SEEDED:
            check_query(sql, cube, catalog, engine, info, rows)
    finally:
        engine.dispose()


def test_a_changed_policy_or_rewritten_table_is_not_used(
    catalog: Catalog, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    toy = catalog.dataset("toy")
    load(engine, toy, rows)
    meta = meta_table(sa.MetaData())
    with engine.begin() as conn:
        meta.create(conn)
        conn.execute(
            meta.insert().values(
                dataset="toy",
                synthetic=True,
                seed=1,
                scale=1,
                rows=len(rows),
                checksum="c1",
                generated_at=sa.func.now(),
            )
        )
    derive(engine, toy)
    sql = "SELECT region, AVG(amount) FROM toy GROUP BY region"
    with engine.connect() as conn:
        layout = read_layout(conn, {"toy": toy})
        assert set(layout) == {"toy"}
        assert [s["state"] for s in layout_status(conn, {"toy": toy})] == ["current"]
    cq = compile_query(parse_sql(sql, catalog), catalog, Decimal("1"))
    assert cq.plan.statement_on(layout["toy"])[0] == "cube"

    # policy change: other bounds for amount -> the derived integers would differ -> raw table
    changed = toy.model_copy(
        update={
            "columns": [
                c.model_copy(update={"bounds": c.bounds.model_copy(update={"upper": Decimal(100)})})
                if c.name == "amount" and c.bounds is not None
                else c
                for c in toy.columns
            ]
        }
    )
    changed_catalog = dataclasses.replace(catalog, datasets={**catalog.datasets, "toy": changed})
    cq2 = compile_query(parse_sql(sql, changed_catalog), changed_catalog, Decimal("1"))
    assert cq2.plan.statement_on(layout["toy"])[0] == "raw"
    with engine.connect() as conn:
        assert read_layout(conn, {"toy": changed}) == {}
        assert [s["state"] for s in layout_status(conn, {"toy": changed})] == ["stale_policy"]

    # the raw table rewritten (new checksum) without rebuilding: derived tables are ignored
    with engine.begin() as conn:
        conn.execute(meta.update().where(meta.c.dataset == "toy").values(checksum="c2"))
    with engine.connect() as conn:
        assert read_layout(conn, {"toy": toy}) == {}
        assert [s["state"] for s in layout_status(conn, {"toy": toy})] == ["stale_table"]
    engine.dispose()


def test_service_falls_back_to_the_raw_table_when_a_derived_one_is_gone(
    catalog: Catalog, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    control = sa.create_engine("sqlite://")
    toy = catalog.dataset("toy")
    load(engine, toy, rows)
    derive(engine, toy)
    ctx = queries.ServiceContext(
        settings=Settings(), catalog=catalog, control_engine=control, warehouse_engine=engine
    )
    cq: CompiledQuery = compile_query(
        parse_sql("SELECT region, COUNT(*), SUM(amount) FROM toy GROUP BY region", catalog),
        catalog,
        Decimal(1),
    )
    expected = reference_cells(cq, rows)
    assert ctx.derived_layout()["toy"].cube_dimensions == CUBE_DIMS
    assert cq.plan.exact_cells(queries._execute(ctx, cq)) == expected
    with engine.begin() as conn:  # a concurrent rebuild dropped the cube after the layout was read
        conn.execute(sa.text(f"DROP TABLE {cube_table_name('toy')}"))
        conn.execute(sa.text(f"DROP TABLE {bounded_table_name('toy')}"))
    assert cq.plan.exact_cells(queries._execute(ctx, cq)) == expected
    engine.dispose()
    control.dispose()


def test_cube_dimensions_stay_within_the_cell_limit(catalog: Catalog) -> None:
    from sandbox.dp.derived import CUBE_MAX_CELLS
    from sandbox.dp.schema import key_values

    for dataset in catalog.datasets.values():
        if not dataset.privacy_unit:
            continue
        dims = cube_dimensions(dataset)
        cells = 1
        for name in dims:
            cells *= len(key_values(dataset, dataset.column(name), False, "GROUP BY")) + 1
        assert cells <= CUBE_MAX_CELLS, dataset.id
    # the taxi benchmark's dimensions are all public-domain columns of taxi_trips
    assert cube_dimensions(catalog.dataset("taxi_trips")) == (
        "pickup_district",
        "dropoff_district",
        "payment",
    )


def test_synth_builds_derived_tables_and_the_cli_reports_and_rebuilds_them(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    runner = CliRunner()
    out = runner.invoke(
        app, ["synth", "--scale", "400", "--datasets", "taxi_trips,sme_loans", "--warehouse", url, "--json"]
    )
    assert out.exit_code == 0, out.output
    status = runner.invoke(app, ["warehouse", "status", "--warehouse", url, "--json"])
    assert status.exit_code == 0, status.output
    import json

    states = {d["dataset"]: d for d in json.loads(status.stdout)["datasets"]}
    assert states["taxi_trips"]["state"] == "current" and states["sme_loans"]["state"] == "current"
    assert states["taxi_trips"]["bounded_rows"] <= 400
    assert states["enterprise_tax"]["state"] == "missing"  # not generated in this warehouse

    engine = make_engine(url)
    meta = meta_table(sa.MetaData())
    with engine.begin() as conn:
        conn.execute(meta.update().where(meta.c.dataset == "sme_loans").values(checksum="rewritten"))
    engine.dispose()
    status = runner.invoke(app, ["warehouse", "status", "--warehouse", url, "--json"])
    assert {d["dataset"]: d["state"] for d in json.loads(status.stdout)["datasets"]}[
        "sme_loans"
    ] == "stale_table"

    prepared = runner.invoke(app, ["warehouse", "prepare", "--warehouse", url, "--json"])
    assert prepared.exit_code == 0, prepared.output
    body = json.loads(prepared.stdout)
    assert [p["dataset"] for p in body["prepared"]] == ["sme_loans"]
    assert "enterprise_tax" in body["skipped_no_table"]
    status = runner.invoke(app, ["warehouse", "status", "--warehouse", url, "--json"])
    assert {d["dataset"]: d["state"] for d in json.loads(status.stdout)["datasets"]}["sme_loans"] == "current"

    bad = runner.invoke(app, ["warehouse", "prepare", "--warehouse", url, "--datasets", "nope", "--json"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"]["code"] == "unknown_dataset"


def test_a_failed_derivation_keeps_the_previous_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.synth import run as synth_run

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    catalog = load_policies(ROOT / "policies")
    synth_run.synthesize(catalog, scale=300, seed=1, datasets=["sme_loans"], warehouse_url=url)

    def broken(*_a: Any, **_k: Any) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr(synth_run, "build_derived", broken)
    from sandbox.errors import SandboxError

    with pytest.raises(SandboxError):
        synth_run.synthesize(catalog, scale=500, seed=2, datasets=["sme_loans"], warehouse_url=url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM sme_loans")).scalar_one() == 300
        assert [s["state"] for s in layout_status(conn, {"sme_loans": catalog.dataset("sme_loans")})] == [
            "current"
        ]
    engine.dispose()


# --------------------------------------------------------------------------- policy cube_dimensions
EXPLICIT_DIMS = ("zone", "region")  # not in policy order, and leaving year and flag out


def with_toy(catalog: Catalog, **update: Any) -> tuple[Catalog, Dataset]:
    toy = Dataset.model_validate({**TOY, **update})
    return dataclasses.replace(catalog, datasets={**catalog.datasets, "toy": toy}), toy


def table_columns(conn: sa.Connection, name: str) -> list[str]:
    """Column names as the warehouse returns them (duckdb_engine cannot reflect columns)."""
    return list(conn.execute(sa.select(sa.text("*")).select_from(sa.table(name)).limit(0)).keys())


def check_explicit_and_empty_cubes(catalog: Catalog, engine: sa.Engine, rows: list[dict[str, Any]]) -> None:
    """On one warehouse: ``cube_dimensions: [zone, region]`` builds exactly that cube; ``[]``
    builds none, and every query then scans the bounded table for the reference's integers."""
    explicit, toy = with_toy(catalog, cube_dimensions=list(EXPLICIT_DIMS))
    load(engine, toy, rows)
    info = derive(engine, toy)
    assert info.cube_dimensions == EXPLICIT_DIMS
    with engine.connect() as conn:
        columns = table_columns(conn, cube_table_name("toy"))
        recorded = layout_status(conn, {"toy": toy})
    assert columns[:3] == ["zone", "region", "_n_rows"] and "year" not in columns and "flag" not in columns
    assert recorded[0]["state"] == "current" and recorded[0]["cube_dimensions"] == list(EXPLICIT_DIMS)
    for sql, cube in [
        ("SELECT region, COUNT(*), AVG(amount) FROM toy WHERE zone = 'x' GROUP BY region", True),
        ("SELECT zone, region, SUM(visits) FROM toy WHERE NOT (region IS NULL) GROUP BY zone, region", True),
        ("SELECT year, COUNT(*) FROM toy GROUP BY year", False),  # greedy would have put year in
        ("SELECT region, COUNT(*) FROM toy WHERE flag GROUP BY region", False),
    ]:
        check_query(sql, cube, explicit, engine, info, rows)

    empty, toy = with_toy(catalog, cube_dimensions=[])
    info = derive(engine, toy)
    assert info.cube_dimensions is None and info.cube_rows is None
    assert info.bounded_rows == sum(1 for r in rows if r["_rank"] <= TOY["max_rows_per_unit"])
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table(cube_table_name("toy"))
        assert sa.inspect(conn).has_table(bounded_table_name("toy"))
        assert [(s["state"], s["cube_dimensions"]) for s in layout_status(conn, {"toy": toy})] == [
            ("current", None)
        ]
    for sql, _cube in SEEDED:  # same integers as the reference, and as the greedy cube gave them
        check_query(sql, False, empty, engine, info, rows)


@pytest.mark.parametrize("engine_name", ["duckdb", "sqlite"])
def test_policy_cube_dimensions_are_used_verbatim_and_an_empty_list_builds_no_cube(
    engine_name: str, catalog: Catalog, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    suffix = "duckdb" if engine_name == "duckdb" else "sqlite"
    engine = make_engine(f"{engine_name}:///{tmp_path / f'w.{suffix}'}")
    try:
        check_explicit_and_empty_cubes(catalog, engine, rows)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_policy_cube_dimensions_on_postgres(
    catalog: Catalog, rows: list[dict[str, Any]], pg_database_url: str
) -> None:
    engine = make_engine(pg_database_url)
    try:
        check_explicit_and_empty_cubes(catalog, engine, rows)
    finally:
        engine.dispose()


def test_without_cube_dimensions_the_greedy_cube_is_built(
    catalog: Catalog, engines: dict[str, tuple[sa.Engine, DerivedInfo]]
) -> None:
    assert "cube_dimensions" not in TOY and catalog.dataset("toy").cube_dimensions is None
    for _engine, info in engines.values():
        assert info.cube_dimensions == CUBE_DIMS == cube_dimensions(catalog.dataset("toy"))


def _bench_sql() -> str:
    """The DP query of bench/dp_queries.py (grouped count + mean over 16 districts of taxi_trips)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dp_queries_bench", ROOT / "bench" / "dp_queries.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.DP_SQL)


def test_changed_cube_dimensions_make_the_tables_stale_and_prepare_rebuilds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import shutil

    import yaml

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    runner = CliRunner()

    def run(*args: str) -> Any:
        out = runner.invoke(app, [*args, "--warehouse", url, "--json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    def taxi_status() -> dict[str, Any]:
        return {d["dataset"]: d for d in run("warehouse", "status")["datasets"]}["taxi_trips"]

    def cube_columns() -> list[str] | None:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table(cube_table_name("taxi_trips")):
                    return None
                return table_columns(conn, cube_table_name("taxi_trips"))
        finally:
            engine.dispose()

    def source_of(sql: str, policies: Path) -> str:
        catalog = load_policies(policies)
        cq = compile_query(parse_sql(sql, catalog), catalog, Decimal("1"))
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                layout = read_layout(conn, catalog.datasets)
        finally:
            engine.dispose()
        return cq.plan.statement_on(layout.get("taxi_trips"))[0]

    # 20,000 rows: the greedy cube (at most 768 groups) keeps within a tenth of the bounded rows
    run("synth", "--scale", "20000", "--datasets", "taxi_trips")
    status = taxi_status()
    assert status["state"] == "current"
    assert status["cube_dimensions"] == ["pickup_district", "dropoff_district", "payment"]
    bench = _bench_sql()
    assert source_of(bench, ROOT / "policies") == "cube"  # the benchmark's query hits the cube

    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    monkeypatch.setenv("SANDBOX_POLICY_DIR", str(policies))
    taxi_file = policies / "taxi_trips.yaml"

    def set_dims(dims: list[str]) -> None:
        data = yaml.safe_load(taxi_file.read_text(encoding="utf-8"))
        data["cube_dimensions"] = dims
        taxi_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    set_dims(["payment", "pickup_district"])
    assert taxi_status()["state"] == "stale_policy"
    assert source_of(bench, policies) == "raw"  # stale tables are never read
    prepared = run("warehouse", "prepare")["prepared"]
    assert [(p["dataset"], p["cube_dimensions"]) for p in prepared] == [
        ("taxi_trips", ["payment", "pickup_district"])
    ]
    status = taxi_status()
    assert status["state"] == "current" and status["cube_dimensions"] == ["payment", "pickup_district"]
    assert status["cube_rows"] is not None and 0 < status["cube_rows"] <= 3 * 16 + 3 + 16 + 1
    assert (cube_columns() or [])[:3] == ["payment", "pickup_district", "_n_rows"]
    assert source_of(bench, policies) == "cube"
    assert source_of("SELECT dropoff_district, COUNT(*) FROM taxi_trips GROUP BY 1", policies) == "bounded"

    set_dims([])
    assert taxi_status()["state"] == "stale_policy"
    prepared = run("warehouse", "prepare")["prepared"]
    assert [(p["dataset"], p["cube_dimensions"], p["cube_rows"]) for p in prepared] == [
        ("taxi_trips", [], None)
    ]
    assert taxi_status()["state"] == "current" and cube_columns() is None
    assert source_of(bench, policies) == "bounded"
