"""The push-down statement on real engines: identical exact cells on DuckDB, SQLite and PostgreSQL,
equal to an independent Python reference, within the claimed sensitivity for neighbouring units."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from support.toy import TOY, load, reference_cells, toy_rows

from sandbox.catalog.warehouse import make_engine
from sandbox.dp import ExactCells, compile_query, parse_sql
from sandbox.dp.compiler import CompiledQuery
from sandbox.dp.mechanisms import quantile_scores
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import ColumnType, Dataset, Mechanism

ROOT = Path(__file__).resolve().parents[2]

QUERIES = [
    "SELECT region, COUNT(*), SUM(amount), AVG(amount), COUNT(DISTINCT pid) FROM toy GROUP BY region",
    "SELECT BIN(amount) AS b, flag, COUNT(*), SUM(visits), AVG(visits) FROM toy "
    "WHERE day BETWEEN '2018-03-01' AND '2018-09-30' GROUP BY b, flag",
    "SELECT year, MEDIAN(amount), QUANTILE(visits, 0.9) FROM toy "
    "WHERE region IN ('n', 's') OR amount IS NULL GROUP BY year",
    "SELECT COUNT(*), SUM(amount) FROM toy "
    "WHERE NOT (visits < 3) AND ts >= TIMESTAMP '2018-06-01 12:00:00' AND flag",
    "SELECT region, year, COUNT(*) FROM toy WHERE amount <> 2.5 AND amount NOT BETWEEN -1 AND 1 "
    "GROUP BY region, year",
    "SELECT BIN(visits), COUNT(DISTINCT pid), AVG(amount) FROM toy "
    "WHERE amount IS NOT NULL AND visits IN (1, 2, 3, 30) GROUP BY 1",
    "SELECT year, PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY amount), SUM(amount) FROM toy "
    "WHERE day < DATE '2018-07-01' AND region <> 'w' GROUP BY year",
    "SELECT zone, COUNT(*), SUM(fare), AVG(fare), AVG(loss), MEDIAN(loss) FROM toy GROUP BY zone",
    "SELECT region, zone, flag, SUM(loss), AVG(fare), QUANTILE(fare, 0.75) FROM toy "
    "WHERE fare > 20 OR loss IS NULL GROUP BY region, zone, flag",
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    real = load_policies(ROOT / "policies")
    return dataclasses.replace(real, datasets={**real.datasets, "toy": Dataset.model_validate(TOY)})


def exact(engine: sa.Engine, cq: CompiledQuery) -> ExactCells:
    with engine.connect() as conn:
        return cq.execute_exact(conn)


# ----------------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return toy_rows()


@pytest.fixture(scope="module")
def engines(
    catalog: Catalog, rows: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, sa.Engine]]:
    base = tmp_path_factory.mktemp("warehouses")
    out = {
        "duckdb": make_engine(f"duckdb:///{base / 'w.duckdb'}"),
        "sqlite": make_engine(f"sqlite:///{base / 'w.sqlite'}"),
    }
    for engine in out.values():
        load(engine, catalog.dataset("toy"), rows)
    yield out
    for engine in out.values():
        engine.dispose()


@pytest.mark.parametrize("sql", QUERIES)
def test_duckdb_and_sqlite_agree_with_the_reference(
    sql: str, catalog: Catalog, engines: dict[str, sa.Engine], rows: list[dict[str, Any]]
) -> None:
    cq = compile_query(parse_sql(sql, catalog), catalog, Decimal("1"))
    expected = reference_cells(cq, rows)
    assert exact(engines["duckdb"], cq) == expected
    assert exact(engines["sqlite"], cq) == expected
    assert sum(expected.vectors.get("rows", (0,))) >= 0


@pytest.mark.postgres
def test_postgres_agrees_with_the_reference(
    catalog: Catalog, rows: list[dict[str, Any]], pg_database_url: str
) -> None:
    engine = make_engine(pg_database_url)
    try:
        load(engine, catalog.dataset("toy"), rows)
        for sql in QUERIES:
            cq = compile_query(parse_sql(sql, catalog), catalog, Decimal("1"))
            assert exact(engine, cq) == reference_cells(cq, rows), sql
    finally:
        engine.dispose()


def test_rounding_ties_go_away_from_zero(catalog: Catalog, engines: dict[str, sa.Engine]) -> None:
    cq = compile_query(parse_sql("SELECT SUM(amount) FROM toy WHERE amount IN (0.25, -0.25)", catalog),
                       catalog, Decimal("1"))  # fmt: skip
    with engines["sqlite"].connect() as conn:
        counts = conn.execute(
            sa.text(
                "SELECT amount, COUNT(*) FROM toy "
                "WHERE _rank <= 4 AND amount IN (0.25, -0.25) GROUP BY amount"
            )
        ).all()
    expected = sum(round(int(n) * (3 if a > 0 else -3)) for a, n in counts)  # 2.5 -> 3, -2.5 -> -3
    for engine in engines.values():
        assert exact(engine, cq).vectors["sum:amount"] == (expected,)


# ----------------------------------------------------------------------------- sensitivity


def _distance(a: tuple[int, ...], b: tuple[int, ...], metric: str) -> float:
    diffs = [abs(x - y) for x, y in zip(a, b, strict=True)]
    if metric == "l1":
        return float(sum(diffs))
    if metric == "l2":
        return math.sqrt(sum(d * d for d in diffs))
    return float(max(diffs, default=0))


@pytest.mark.parametrize("sql", QUERIES)
def test_removing_one_unit_moves_each_statistic_within_its_sensitivity(
    sql: str, catalog: Catalog, rows: list[dict[str, Any]]
) -> None:
    for mechanism in (Mechanism.LAPLACE, Mechanism.GAUSSIAN):
        variant = catalog.dataset("toy").model_copy(update={"mechanism": mechanism})
        cat = dataclasses.replace(catalog, datasets={**catalog.datasets, "toy": variant})
        cq = compile_query(parse_sql(sql, cat), cat, Decimal("1"))
        assert cq.budget_unit == ("rho" if mechanism is Mechanism.GAUSSIAN else "epsilon")
        full = reference_cells(cq, rows)
        heavy = sorted({r["pid"] for r in rows}, key=lambda p: -sum(r["pid"] == p for r in rows))[:15]
        for pid in heavy:
            neighbour = reference_cells(cq, [r for r in rows if r["pid"] != pid])
            for stat in cq.statistics:
                prim = stat.primitive
                if prim.kind == "quantile":
                    assert prim.column is not None and stat.alpha is not None
                    for cell in range(cq.plan.n_cells):
                        column = prim.column
                        s1 = quantile_scores(full.below[column][cell], full.above[column][cell], *stat.alpha)
                        s2 = quantile_scores(
                            neighbour.below[column][cell], neighbour.above[column][cell], *stat.alpha
                        )
                        assert _distance(tuple(s1), tuple(s2), "linf") <= stat.sensitivity
                else:
                    moved = _distance(full.vectors[prim.id], neighbour.vectors[prim.id], stat.metric)
                    assert moved <= stat.sensitivity + 1e-9, (prim.id, pid)


# ----------------------------------------------------------------------------- end to end


def test_release_end_to_end_on_duckdb(catalog: Catalog, engines: dict[str, sa.Engine]) -> None:
    spec = parse_sql(
        "SELECT region AS r, COUNT(*) AS n, AVG(amount), MEDIAN(visits) FROM toy "
        "WHERE region <> 'e' GROUP BY r ORDER BY n DESC LIMIT 3",
        catalog,
    )
    cq = compile_query(spec, catalog, Decimal("2"))
    with engines["duckdb"].connect() as conn:
        release = cq.release(conn.execute(cq.statement).all())
    assert release.columns == ("r", "n", "avg_amount", "median_visits")
    assert len(release.rows) == 3 and len(release.ci95) == 3
    counts = [row["n"] for row in release.rows]
    assert counts == sorted(counts, reverse=True)
    for row, ci in zip(release.rows, release.ci95, strict=True):
        assert set(row) == {"r", "n", "avg_amount", "median_visits"}
        assert -50 <= row["avg_amount"] <= 150 and 0 <= row["median_visits"] <= 20
        assert ci["n"] is not None and ci["n"] > 0 and ci["median_visits"] is None
    body = json.loads(release.to_json())
    assert body["epsilon"] == "2.000000000000" and body["budget_unit"] == "epsilon"
    assert body["columns"] == ["r", "n", "avg_amount", "median_visits"]
    assert "make_laplace" in body["mechanism"]


def test_every_domain_key_is_released_even_without_rows(
    catalog: Catalog, engines: dict[str, sa.Engine]
) -> None:
    cq = compile_query(
        parse_sql("SELECT region, year, COUNT(*) FROM toy WHERE region = 'n' GROUP BY region, year", catalog),
        catalog,
        Decimal("1"),
    )
    cells = exact(engines["sqlite"], cq)
    assert len(cells.vectors["rows"]) == 4 * 3
    assert cells.vectors["rows"][3:] == (0,) * 9  # only region 'n' has rows
    with engines["sqlite"].connect() as conn:
        release = cq.release(conn.execute(cq.statement).all())
    assert [(r["region"], r["year"]) for r in release.rows] == [
        (r, y) for r in ("n", "s", "e", "w") for y in (2017, 2018, 2019)
    ]


def test_the_statement_binds_every_user_value(catalog: Catalog) -> None:
    cq = compile_query(
        parse_sql(
            "SELECT region, COUNT(*) FROM toy WHERE region IN ('n', 'x''; DROP TABLE toy; --') "
            "AND amount > 12.5 GROUP BY region",
            catalog,
        ),
        catalog,
        Decimal("1"),
    )
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        text = str(cq.statement.compile(dialect=dialect))
        assert "DROP" not in text and "12.5" not in text
        assert text.count("SELECT") == 2  # the bounded subquery and the aggregate


def test_real_policy_dataset_on_duckdb(catalog: Catalog, tmp_path: Path) -> None:
    dataset = catalog.dataset("enterprise_tax")
    rng = random.Random(3)
    rows = [
        {
            "uscc": f"U{u:06d}",
            "tax_year": rng.choice([2016, 2017, 2018]),
            "credit_grade": rng.choice("ABMCD"),
            "vat_paid_wan": rng.uniform(0, 60000),
            "cit_paid_wan": rng.uniform(0, 100),
            "taxable_revenue_wan": rng.uniform(0, 1000),
            "filing_months": rng.randint(0, 12),
            "arrears_flag": rng.random() < 0.1,
            "_rank": r + 1,
        }
        for u in range(200)
        for r in range(rng.randint(1, 4))
    ]
    engine = make_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        load(engine, dataset, rows)
        spec = parse_sql(
            "SELECT credit_grade, BIN(vat_paid_wan), COUNT(*), AVG(cit_paid_wan) FROM enterprise_tax "
            "WHERE tax_year = 2018 GROUP BY 1, 2",
            catalog,
        )
        cq = compile_query(spec, catalog, Decimal("0.5"))
        with engine.connect() as conn:
            release = cq.release(conn.execute(cq.statement).all())
        assert len(release.rows) == 5 * 6
        assert {r["bin_vat_paid_wan"] for r in release.rows} == {
            "[0, 1)", "[1, 10)", "[10, 100)", "[100, 1000)", "[1000, 10000)", "[10000, 50000]"
        }  # fmt: skip
        assert cq.plan.dataset.column("credit_grade").type is ColumnType.CATEGORY
    finally:
        engine.dispose()
