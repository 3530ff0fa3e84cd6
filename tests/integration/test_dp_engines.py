"""The push-down statement on real engines: identical exact cells on DuckDB, SQLite and PostgreSQL,
equal to an independent Python reference, within the claimed sensitivity for neighbouring units."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from sandbox.catalog.warehouse import dataset_table, make_engine
from sandbox.dp import ExactCells, compile_query, parse_sql
from sandbox.dp.compiler import CompiledQuery
from sandbox.dp.mechanisms import quantile_scores
from sandbox.dp.spec import And, Between, Compare, CompareOp, InList, IsNull, Not, Or, Predicate
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import ColumnType, Dataset, Mechanism

ROOT = Path(__file__).resolve().parents[2]

TOY: dict[str, Any] = {
    "id": "toy",
    "name": {"zh": "玩具", "en": "Toy"},
    "provider": ["tax_bureau"],
    "focus_area": "transport",
    "tier": "conditional",
    "source_tier": "T2",
    "privacy_unit": "pid",
    "max_rows_per_unit": 4,
    "columns": [
        {"name": "pid", "type": "string", "role": "identifier"},
        {"name": "region", "type": "category", "role": "plain", "domain": ["n", "s", "e", "w"]},
        {"name": "year", "type": "integer", "role": "plain", "domain": [2017, 2018, 2019],
         "bounds": {"lower": 2017, "upper": 2019}, "precision": 0},
        {"name": "flag", "type": "boolean", "role": "plain"},
        {"name": "amount", "type": "float", "role": "sensitive", "bounds": {"lower": "-50", "upper": "150"},
         "precision": 1, "nullable": True, "bins": ["-50", "0", "50", "100", "150"]},
        {"name": "visits", "type": "integer", "role": "sensitive", "bounds": {"lower": 0, "upper": 20},
         "precision": 0, "bins": [0, 5, 10, 20]},
        {"name": "day", "type": "date", "role": "plain"},
        {"name": "ts", "type": "timestamp", "role": "plain"},
        # a nullable key whose domain holds the text "None" (a NULL key must not land there)
        {"name": "zone", "type": "category", "role": "plain", "domain": ["x", "None"], "nullable": True},
        # bounds that do not straddle 0: the planner drops the sign branch of the rounding
        {"name": "fare", "type": "float", "role": "sensitive", "bounds": {"lower": "14", "upper": "600"},
         "precision": 2},
        {"name": "loss", "type": "float", "role": "sensitive", "bounds": {"lower": "-100", "upper": "-0.5"},
         "precision": 1, "nullable": True},
    ],
}  # fmt: skip

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


def toy_rows(seed: int = 7, units: int = 300) -> list[dict[str, Any]]:
    """Seeded rows with every edge: over-contributing units, out-of-bound values, ties at the
    rounding step, NULLs, keys outside the domain."""
    rng = random.Random(seed)
    ties = [0.25, -0.25, 2.25, 12.35, 0.05, -49.95, 149.95]
    rows: list[dict[str, Any]] = []
    for u in range(units):
        n = rng.randint(1, 8)
        ranks = list(range(1, n + 1))
        rng.shuffle(ranks)
        for r in ranks:
            amount: float | None
            pick = rng.random()
            if pick < 0.1:
                amount = None
            elif pick < 0.25:
                amount = rng.choice(ties)
            elif pick < 0.3:
                amount = rng.choice([-50.0, 150.0, -1000.0, 1e6, 2.5, 0.0])
            else:
                amount = round(rng.uniform(-80, 200), rng.choice([0, 1, 2, 3]))
            extreme = [math.inf, -math.inf, 1e300, -1e300, -0.0, 0.0]
            fare = (
                rng.choice([14.0, 600.0, 13.995, 600.005, 14.005, 599.995, 0.125, *extreme])
                if rng.random() < 0.3
                else round(rng.uniform(5, 700), rng.choice([1, 2, 3, 4]))
            )
            loss: float | None = (
                rng.choice([None, -0.5, -0.55, -0.45, -100.0, -100.05, -2.25, *extreme])
                if rng.random() < 0.3
                else round(rng.uniform(-120, 5), rng.choice([1, 2, 3]))
            )
            rows.append(
                {
                    "pid": f"P{u:05d}",
                    "zone": rng.choice(["x", "None", None, "y"]),
                    "fare": fare,
                    "loss": loss,
                    "region": rng.choice(["n", "s", "e", "w", "w", "zz"]),
                    "year": rng.choice([2016, 2017, 2018, 2019]),
                    "flag": rng.random() < 0.4,
                    "amount": amount,
                    "visits": rng.randint(-5, 30),
                    "day": date(2018, 1, 1) + timedelta(days=rng.randint(0, 364)),
                    "ts": datetime(2018, 1, 1) + timedelta(minutes=rng.randint(0, 525_600)),
                    "_rank": r,
                }
            )
    return rows


def load(engine: sa.Engine, dataset: Dataset, rows: list[dict[str, Any]]) -> None:
    metadata = sa.MetaData()
    table = dataset_table(dataset, metadata)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        metadata.create_all(conn)
        conn.execute(table.insert(), rows)


def exact(engine: sa.Engine, cq: CompiledQuery) -> ExactCells:
    with engine.connect() as conn:
        return cq.execute_exact(conn)


# ----------------------------------------------------------------------------- Python reference


def _truth(pred: Predicate | None, row: dict[str, Any]) -> bool | None:
    """SQL three-valued logic."""
    if pred is None:
        return True
    if isinstance(pred, And):
        values = [_truth(p, row) for p in pred.items]
        return False if False in values else (None if None in values else True)
    if isinstance(pred, Or):
        values = [_truth(p, row) for p in pred.items]
        return True if True in values else (None if None in values else False)
    if isinstance(pred, Not):
        value = _truth(pred.item, row)
        return None if value is None else not value
    x = row[pred.column]
    if isinstance(pred, IsNull):
        return (x is not None) if pred.negated else (x is None)
    if x is None:
        return None
    if isinstance(pred, InList):
        return (x not in pred.values) if pred.negated else (x in pred.values)
    if isinstance(pred, Between):
        inside = pred.low <= x <= pred.high
        return not inside if pred.negated else inside
    assert isinstance(pred, Compare)
    ops = {
        CompareOp.EQ: lambda a, b: a == b,
        CompareOp.NE: lambda a, b: a != b,
        CompareOp.LT: lambda a, b: a < b,
        CompareOp.LE: lambda a, b: a <= b,
        CompareOp.GT: lambda a, b: a > b,
        CompareOp.GE: lambda a, b: a >= b,
    }
    return bool(ops[pred.op](x, pred.value))


def _fixed(value: float | int | None, cq: CompiledQuery, column: str) -> int | None:
    if value is None:
        return None
    fp = cq.plan.fixed[column]
    if fp.integer:
        return min(max(int(value), fp.lower), fp.upper) * fp.scale
    lo, hi = fp.lower / fp.scale, fp.upper / fp.scale
    y = min(max(float(value), lo), hi) * float(fp.scale)
    return math.floor(y + 0.5) if y >= 0 else -math.floor(0.5 - y)


def reference_cells(cq: CompiledQuery, rows: list[dict[str, Any]]) -> ExactCells:
    plan, dataset = cq.plan, cq.dataset
    sizes = [len(k.values) for k in plan.keys]
    members: list[list[dict[str, Any]]] = [[] for _ in range(plan.n_cells)]
    for row in rows:
        if row["_rank"] > plan.max_rows_per_unit or _truth(plan.spec.where, row) is not True:
            continue
        cell, ok = 0, True
        for key, size in zip(plan.keys, sizes, strict=True):
            x = row[key.column]
            if key.binned:
                if x is None:
                    ok = False
                    break
                edges = [float(e) for e in dataset.column(key.column).bins or []]
                pos = next((i for i, e in enumerate(edges[1:-1]) if x < e), len(edges) - 2)
            elif x in key.values:
                pos = key.values.index(x)
            else:
                ok = False
                break
            cell = cell * size + pos
        if ok:
            members[cell].append(row)
    vectors: dict[str, tuple[int, ...]] = {}
    below: dict[str, tuple[tuple[int, ...], ...]] = {}
    above: dict[str, tuple[tuple[int, ...], ...]] = {}
    for prim in plan.primitives:
        col = prim.column
        if prim.kind == "rows":
            vectors[prim.id] = tuple(len(m) for m in members)
        elif prim.kind == "distinct":
            vectors[prim.id] = tuple(len({r["pid"] for r in m}) for m in members)
        elif prim.kind == "quantile":
            assert col is not None
            cands = plan.candidates[col]
            fixed = [[v for r in m if (v := _fixed(r[col], cq, col)) is not None] for m in members]
            below[col] = tuple(tuple(sum(v < c for v in f) for c in cands) for f in fixed)
            above[col] = tuple(tuple(sum(v > c for v in f) for c in cands) for f in fixed)
        else:
            assert col is not None
            fixed = [[v for r in m if (v := _fixed(r[col], cq, col)) is not None] for m in members]
            if prim.kind == "nonnull":
                vectors[prim.id] = tuple(len(f) for f in fixed)
            elif prim.kind == "sum":
                vectors[prim.id] = tuple(sum(f) for f in fixed)
            else:
                centre = plan.fixed[col].centre
                vectors[prim.id] = tuple(sum(f) - centre * len(f) for f in fixed)
    return ExactCells(n_cells=plan.n_cells, vectors=vectors, below=below, above=above)


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
