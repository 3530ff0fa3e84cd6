"""The planner's push-down statement: its shape on each dialect, and how result rows become cells.

The exact cells themselves are checked on real engines against a Python reference in
tests/integration/test_dp_engines.py; here, what makes the statement cheap stays as it is.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from support.toy import TOY_HEADER

from sandbox.dp import parse_sql
from sandbox.dp.planner import Plan, _fixed_point_sql, plan_query, round_half_away
from sandbox.dp.schema import FixedPoint
from sandbox.errors import InternalError
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import Dataset

ROOT = Path(__file__).resolve().parents[2]

TOY: dict[str, Any] = {
    **TOY_HEADER,
    "columns": [
        {"name": "pid", "type": "string", "role": "identifier"},
        {"name": "region", "type": "category", "role": "plain", "domain": ["n", "s"]},
        {"name": "year", "type": "integer", "role": "plain", "domain": [2017, 2018],
         "bounds": {"lower": 2017, "upper": 2018}, "precision": 0},
        {"name": "flag", "type": "boolean", "role": "plain"},
        {"name": "fare", "type": "float", "role": "sensitive", "bounds": {"lower": "14", "upper": "600"},
         "precision": 2},
        {"name": "amount", "type": "float", "role": "sensitive", "bounds": {"lower": "-50", "upper": "150"},
         "precision": 1, "nullable": True},
        {"name": "loss", "type": "float", "role": "sensitive", "bounds": {"lower": "-100", "upper": "-0.5"},
         "precision": 1},
        {"name": "visits", "type": "integer", "role": "sensitive", "bounds": {"lower": 0, "upper": 20},
         "precision": 0, "bins": [0, 5, 20]},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    real = load_policies(ROOT / "policies")
    return dataclasses.replace(real, datasets={**real.datasets, "toy": Dataset.model_validate(TOY)})


def plan(sql: str, catalog: Catalog) -> Plan:
    return plan_query(parse_sql(sql, catalog), catalog.dataset("toy"))


def text(p: Plan, dialect: Any = None) -> str:
    return str(p.statement.compile(dialect=dialect or postgresql.dialect()))


def test_the_value_is_clamped_and_rounded_in_one_case_read_once(catalog: Catalog) -> None:
    p = plan("SELECT region, COUNT(*), SUM(fare), AVG(fare) FROM toy GROUP BY region", catalog)
    sql = text(p)
    assert sql.count("toy.fare <") == 1 and sql.count("toy.fare >") == 1  # one CASE on the raw value
    assert sql.count("FLOOR") == 1 and "-FLOOR" not in sql  # bounds >= 0: no sign branch
    assert "count(bounded.x0)" in sql and "count(bounded.v0)" not in sql  # COUNT of the raw column
    assert sql.count("sum(") == 1


def test_the_sign_branch_is_kept_only_when_the_bounds_straddle_zero(catalog: Catalog) -> None:
    straddle = text(plan("SELECT SUM(amount) FROM toy", catalog))
    assert "WHEN (toy.amount < %(param_5)s) THEN CAST((-FLOOR(0.5 - (toy.amount *" in straddle
    assert straddle.count("FLOOR") == 2  # one rounding per sign, chosen by the sign of the raw value
    negative = text(plan("SELECT SUM(loss) FROM toy", catalog))
    assert "-FLOOR(0.5 -" in negative and negative.count("FLOOR") == 1
    on_sqlite = text(plan("SELECT SUM(amount), SUM(fare), SUM(loss) FROM toy", catalog), sqlite.dialect())
    assert on_sqlite.count("ROUND(") == 4 and "FLOOR" not in on_sqlite


def test_only_boolean_keys_are_filtered_on_their_domain_in_sql(catalog: Catalog) -> None:
    sql = text(plan("SELECT region, year, flag, COUNT(*) FROM toy GROUP BY region, year, flag", catalog))
    where = sql.split("WHERE", 1)[1]
    assert "toy.region IN" not in where and "toy.year IN" not in where
    assert "toy.flag IN" in where
    binned = text(plan("SELECT BIN(visits), COUNT(*) FROM toy GROUP BY 1", catalog))
    assert "toy.visits IS NOT NULL" in binned.split("WHERE", 1)[1]


def test_groups_outside_the_domain_are_dropped_after_the_query(catalog: Catalog) -> None:
    p = plan("SELECT region, year, COUNT(*), SUM(visits) FROM toy GROUP BY region, year", catalog)
    rows = [
        {"k0": "n", "k1": 2017, "n_rows": 3, "s0": 30},
        {"k0": "s", "k1": 2018.0, "n_rows": 4, "s0": 40},  # an integral float equals 2018, as in SQL
        {"k0": "zz", "k1": 2017, "n_rows": 50, "s0": 500},
        {"k0": None, "k1": 2018, "n_rows": 60, "s0": 600},
        {"k0": "n", "k1": None, "n_rows": 70, "s0": 700},
        {"k0": "n", "k1": 2016, "n_rows": 80, "s0": 800},
        {"k0": "n", "k1": 2018.5, "n_rows": 90, "s0": 900},
        {"k0": "n", "k1": True, "n_rows": 95, "s0": 950},  # a boolean is not the integer 1
        {"k0": 2017, "k1": 2017, "n_rows": 99, "s0": 990},  # not a string: no string key equals it
    ]
    cells = p.exact_cells(rows)
    assert cells.vectors["rows"] == (3, 0, 0, 4)
    assert cells.vectors["sum:visits"] == (30, 0, 0, 40)


def test_a_null_key_never_lands_in_the_cell_of_the_text_none(catalog: Catalog) -> None:
    dataset = catalog.dataset("toy")
    policy = dataset.model_copy(
        update={
            "columns": [
                c.model_copy(update={"domain": ["None", "n"], "nullable": True}) if c.name == "region" else c
                for c in dataset.columns
            ]
        }
    )
    p = plan_query(parse_sql("SELECT region, COUNT(*) FROM toy GROUP BY region", catalog), policy)
    cells = p.exact_cells([{"k0": None, "n_rows": 5}, {"k0": "None", "n_rows": 2}])
    assert cells.vectors["rows"] == (2, 0)


def test_keys_filtered_in_sql_still_refuse_foreign_values(catalog: Catalog) -> None:
    p = plan("SELECT flag, COUNT(*) FROM toy GROUP BY flag", catalog)
    assert p.exact_cells([{"k0": True, "n_rows": 1}]).vectors["rows"] == (0, 1)
    with pytest.raises(InternalError):
        p.exact_cells([{"k0": None, "n_rows": 1}])
    with pytest.raises(InternalError):
        p.exact_cells([{"k0": True, "n_rows": 1}, {"k0": True, "n_rows": 2}])


def test_bound_constants_equal_clamp_then_round(catalog: Catalog) -> None:
    for column in ("fare", "amount", "loss"):
        fp = plan(f"SELECT SUM({column}) FROM toy", catalog).fixed[column]
        for bound in (fp.lower, fp.upper):
            assert round_half_away(bound / fp.scale * float(fp.scale)) == bound
    too_big = FixedPoint(column="x", integer=False, precision=0, lower=2**60 + 1, upper=2**61)
    with pytest.raises(InternalError):
        _fixed_point_sql(sa.column("x", sa.Double), too_big)


def test_round_half_away_matches_the_sql_rule() -> None:
    ys = (2.5, -2.5, 0.5, -0.5, 1.4999, -1.4999, 0.0, -0.0)
    assert [round_half_away(y) for y in ys] == [3, -3, 1, -1, 1, -1, 0, 0]
    assert round_half_away(0.49999999999999994) == 1  # FLOOR(y + 0.5) in doubles, as the engines do
    assert Decimal(round_half_away(1e15 + 0.5)) == Decimal(10**15 + 1)
