"""The DP SQL subset: what parses into which spec, and what is refused with which stable code."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from sandbox.dp import (
    QuerySpec,
    bin_,
    col,
    count,
    count_distinct,
    mean,
    median,
    parse_sql,
    quantile,
    sum_,
    table,
)
from sandbox.dp.spec import AggKind, And, Between, Compare, CompareOp, InList, IsNull, Key, Not, Or
from sandbox.errors import InvalidQuery, error_classes
from sandbox.policy.loader import Catalog, load_policies

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_policies(ROOT / "policies")


def codes_of(sql: str, catalog: Catalog) -> str:
    with pytest.raises(InvalidQuery) as info:
        parse_sql(sql, catalog)
    return info.value.code


# ------------------------------------------------------------------------------------- accepted


def test_count_star_without_groups(catalog: Catalog) -> None:
    spec = parse_sql("SELECT COUNT(*) FROM enterprise_tax", catalog)
    assert spec.dataset == "enterprise_tax"
    assert spec.keys == ()
    assert [(a.kind, a.name) for a in spec.aggregates] == [(AggKind.COUNT, "count")]
    assert spec.outputs == ("count",) and spec.where is None and spec.limit is None


def test_full_query_normalises_names_aliases_and_clauses(catalog: Catalog) -> None:
    spec = parse_sql(
        "select Credit_Grade as g, count(*) n, avg(vat_paid_wan), sum(cit_paid_wan), "
        "count(distinct uscc), median(vat_paid_wan), quantile(vat_paid_wan, 0.9), "
        "percentile_cont(0.25) within group (order by taxable_revenue_wan desc) "
        "from ENTERPRISE_TAX where 2018 = tax_year group by g order by n desc, 1 limit 3;",
        catalog,
    )
    assert spec.keys == (Key(column="credit_grade", name="g"),)
    assert spec.outputs == (
        "g",
        "n",
        "avg_vat_paid_wan",
        "sum_cit_paid_wan",
        "count_distinct_uscc",
        "median_vat_paid_wan",
        "p90_vat_paid_wan",
        "p75_taxable_revenue_wan",
    )
    kinds = [(a.kind, a.column, a.q) for a in spec.aggregates]
    assert kinds == [
        (AggKind.COUNT, None, None),
        (AggKind.MEAN, "vat_paid_wan", None),
        (AggKind.SUM, "cit_paid_wan", None),
        (AggKind.COUNT_DISTINCT, "uscc", None),
        (AggKind.QUANTILE, "vat_paid_wan", Decimal("0.5")),
        (AggKind.QUANTILE, "vat_paid_wan", Decimal("0.9")),
        (AggKind.QUANTILE, "taxable_revenue_wan", Decimal("0.75")),
    ]
    assert spec.where == Compare("tax_year", CompareOp.EQ, 2018)
    assert [(o.name, o.descending) for o in spec.order_by] == [("n", True), ("g", False)]
    assert spec.limit == 3


def test_bin_key_by_alias_and_by_expression(catalog: Catalog) -> None:
    by_alias = parse_sql("SELECT BIN(vat_paid_wan) AS b, COUNT(*) FROM enterprise_tax GROUP BY b", catalog)
    by_expr = parse_sql(
        "SELECT BIN(vat_paid_wan) AS b, COUNT(*) FROM enterprise_tax GROUP BY BIN(vat_paid_wan)", catalog
    )
    by_position = parse_sql("SELECT BIN(vat_paid_wan) AS b, COUNT(*) FROM enterprise_tax GROUP BY 1", catalog)
    assert by_alias == by_expr == by_position
    assert by_alias.keys == (Key(column="vat_paid_wan", name="b", binned=True),)


def test_where_forms_are_normalised(catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT COUNT(*) FROM enterprise_tax WHERE (credit_grade IN ('B', 'A', 'B') OR NOT arrears_flag) "
        "AND vat_paid_wan NOT BETWEEN -1.50 AND 10 AND NOT NOT (tax_year <> 2016) "
        "AND NOT (filing_months < 3) "
        "AND cit_paid_wan IS NOT NULL AND 12 >= filing_months",
        catalog,
    )
    assert spec.where == And(
        (
            Or((InList("credit_grade", ("A", "B")), Not(Compare("arrears_flag", CompareOp.EQ, True)))),
            Between("vat_paid_wan", Decimal("-1.5"), 10, negated=True),
            Compare("tax_year", CompareOp.NE, 2016),
            Not(Compare("filing_months", CompareOp.LT, 3)),
            IsNull("cit_paid_wan", negated=True),
            Compare("filing_months", CompareOp.LE, 12),
        )
    )


def test_date_and_timestamp_literals(catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT COUNT(*) FROM penalties WHERE event_date >= DATE '2018-01-01' AND event_date < '2019-01-01'",
        catalog,
    )
    assert spec.where == And(
        (
            Compare("event_date", CompareOp.GE, date(2018, 1, 1)),
            Compare("event_date", CompareOp.LT, date(2019, 1, 1)),
        )
    )
    spec = parse_sql(
        "SELECT COUNT(*) FROM taxi_trips WHERE pickup_time BETWEEN TIMESTAMP '2018-05-01 08:00:00' "
        "AND DATE '2018-05-02'",
        catalog,
    )
    assert spec.where == Between("pickup_time", datetime(2018, 5, 1, 8), datetime(2018, 5, 2))


def test_boolean_key_and_quasi_identifier_filter(catalog: Catalog) -> None:
    spec = parse_sql("SELECT arrears_flag, COUNT(*) FROM enterprise_tax GROUP BY arrears_flag", catalog)
    assert spec.keys == (Key("arrears_flag", "arrears_flag"),)
    spec = parse_sql("SELECT COUNT(*) FROM outpatient_visits WHERE inst_uscc = '12310000'", catalog)
    assert spec.where == Compare("inst_uscc", CompareOp.EQ, "12310000")


# ------------------------------------------------------------------------------------- refused

REFUSED = [
    ("SELECT * FROM enterprise_tax", "query_select_star", "SELECT"),
    ("SELECT t.* FROM enterprise_tax t", "query_select_star", "SELECT"),
    ("SELECT uscc, COUNT(*) FROM enterprise_tax GROUP BY uscc", "query_identifier_column", "SELECT"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE uscc = 'x'", "query_identifier_column", "WHERE"),
    ("SELECT SUM(uscc) FROM enterprise_tax", "query_identifier_column", "SELECT"),
    ("SELECT COUNT(*) FROM enterprise_tax GROUP BY uscc", "query_identifier_column", "GROUP BY"),
    (
        "SELECT COUNT(*) FROM enterprise_tax a JOIN enterprise_registry b ON a.uscc = b.uscc",
        "query_join",
        "JOIN",
    ),
    ("SELECT COUNT(*) FROM enterprise_tax, penalties", "query_join", "JOIN"),
    ("SELECT COUNT(*) FROM (SELECT * FROM enterprise_tax)", "query_subquery", "Subquer"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE tax_year IN (SELECT 2018)", "query_subquery", "Subquer"),
    ("WITH x AS (SELECT 1) SELECT COUNT(*) FROM enterprise_tax", "query_subquery", "WITH"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE EXISTS (SELECT 1)", "query_subquery", "Subquer"),
    ("SELECT COUNT(*) FROM enterprise_tax UNION SELECT COUNT(*) FROM penalties", "query_union", "UNION"),
    ("SELECT COUNT(*) FROM enterprise_tax EXCEPT SELECT COUNT(*) FROM penalties", "query_union", "EXCEPT"),
    ("SELECT COUNT(*) OVER () FROM enterprise_tax", "query_window", "Window"),
    (
        "SELECT ROW_NUMBER() OVER (PARTITION BY uscc ORDER BY tax_year) FROM enterprise_tax",
        "query_window",
        "Window",
    ),
    ("SELECT MIN(vat_paid_wan) FROM enterprise_tax", "query_min_max", "MIN"),
    ("SELECT credit_grade, MAX(vat_paid_wan) FROM enterprise_tax GROUP BY 1", "query_min_max", "MAX"),
    (
        "SELECT vat_paid_wan, COUNT(*) FROM enterprise_tax GROUP BY vat_paid_wan",
        "query_non_public_key",
        "GROUP BY",
    ),
    ("SELECT STDDEV(vat_paid_wan) FROM enterprise_tax", "query_unknown_function", "SELECT"),
    ("SELECT MY_UDF(vat_paid_wan) FROM enterprise_tax", "query_unknown_function", "SELECT"),
    (
        "SELECT COUNT(*) FROM enterprise_tax; SELECT COUNT(*) FROM penalties",
        "query_multiple_statements",
        "statement",
    ),
    ("SELEC COUNT(*) FROM enterprise_tax", "query_syntax", "pars"),
    ("SELECT COUNT(* FROM enterprise_tax", "query_syntax", "pars"),
    ("", "query_syntax", "empty"),
    ("SELECT COUNT(, *) FROM enterprise_tax", "query_syntax", "comma"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE tax_year IN (2018,)", "query_syntax", "comma"),
    ("SELECT COUNT(*),, SUM(vat_paid_wan) FROM enterprise_tax", "query_syntax", "comma"),
    ("SELECT COUNT(*) FROM enterprise_tax *", "query_syntax", "token"),
    ("SELECT COUNT(+ *) FROM enterprise_tax", "query_syntax", "token"),
    ("; SELECT COUNT(*) FROM enterprise_tax", "query_multiple_statements", "statement"),
    ("   ;  ", "query_syntax", "empty"),
    (
        "SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade HAVING COUNT(*) > 5",
        "query_having",
        "HAVING",
    ),
    ("SELECT DISTINCT credit_grade FROM enterprise_tax", "query_distinct", "DISTINCT"),
    ("SELECT SUM(nope) FROM enterprise_tax", "query_unknown_column", "nope"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE x.tax_year = 1", "query_unknown_column", "WHERE"),
    ("SELECT COUNT(*) FROM nope", "query_unknown_dataset", "FROM"),
    ("SELECT COUNT(*) FROM main.enterprise_tax", "query_unknown_dataset", "FROM"),
    ("DELETE FROM enterprise_tax", "query_not_select", "SELECT"),
    ("INSERT INTO enterprise_tax VALUES (1)", "query_not_select", "SELECT"),
    ("DROP TABLE enterprise_tax", "query_not_select", "SELECT"),
    ("UPDATE enterprise_tax SET tax_year = 1", "query_not_select", "SELECT"),
    ("SELECT credit_grade, COUNT(*) FROM enterprise_tax", "query_bare_column", "GROUP BY"),
    ("SELECT COUNT(*) FROM enterprise_tax GROUP BY credit_grade", "query_group_by", "GROUP BY"),
    (
        "SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY ROLLUP (credit_grade)",
        "query_group_by",
        "GROUP BY",
    ),
    (
        "SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY DISTINCT credit_grade",
        "query_group_by",
        "DISTINCT",
    ),
    ("SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY ALL", "query_group_by", "GROUP BY"),
    ("SELECT credit_grade FROM enterprise_tax GROUP BY credit_grade", "query_no_aggregate", "SELECT"),
    ("SELECT COUNT(DISTINCT credit_grade) FROM enterprise_tax", "query_count_distinct", "privacy unit"),
    ("SELECT COUNT(vat_paid_wan) FROM enterprise_tax", "query_count_distinct", "COUNT"),
    ("SELECT SUM(credit_grade) FROM enterprise_tax", "query_not_numeric", "SELECT"),
    ("SELECT AVG(arrears_flag) FROM enterprise_tax", "query_not_numeric", "SELECT"),
    ("SELECT BIN(filing_months), COUNT(*) FROM enterprise_tax GROUP BY 1", "query_no_bins", "bins"),
    ("SELECT QUANTILE(vat_paid_wan, 1.5) FROM enterprise_tax", "query_quantile", "quantile"),
    ("SELECT QUANTILE(vat_paid_wan, 0.12345) FROM enterprise_tax", "query_quantile", "quantile"),
    (
        "SELECT PERCENTILE_DISC(0.5) WITHIN GROUP (ORDER BY vat_paid_wan) FROM enterprise_tax",
        "query_quantile",
        "PERCENTILE_DISC",
    ),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE vat_paid_wan > cit_paid_wan", "query_where", "two columns"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE credit_grade LIKE 'A%'", "query_where", "WHERE"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE tax_year = NULL", "query_where", "IS NULL"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE ABS(vat_paid_wan) > 1", "query_where", "WHERE"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE tax_year", "query_where", "WHERE"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE tax_year = 'x'", "query_type_mismatch", "tax_year"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE credit_grade = 5", "query_type_mismatch", "credit_grade"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE arrears_flag = 1", "query_type_mismatch", "arrears_flag"),
    ("SELECT COUNT(*) FROM penalties WHERE event_date = '2018-13-01'", "query_type_mismatch", "date"),
    ("SELECT COUNT(*) FROM enterprise_tax WHERE tax_year = 1e400", "query_type_mismatch", "range"),
    ("SELECT SUM(vat_paid_wan * 2) FROM enterprise_tax", "query_expression", "SELECT"),
    ("SELECT COUNT(*) + 1 FROM enterprise_tax", "query_expression", "SELECT"),
    ("SELECT 1 FROM enterprise_tax", "query_expression", "SELECT"),
    ("SELECT CAST(tax_year AS TEXT), COUNT(*) FROM enterprise_tax", "query_expression", "SELECT"),
    ("SELECT COUNT(*) FROM enterprise_tax ORDER BY vat_paid_wan", "query_order_by", "ORDER BY"),
    ("SELECT COUNT(*) FROM enterprise_tax ORDER BY 2", "query_order_by", "ORDER BY"),
    ("SELECT COUNT(*) FROM enterprise_tax LIMIT -1", "query_limit", "LIMIT"),
    ("SELECT COUNT(*) FROM enterprise_tax LIMIT 1 OFFSET 2", "query_limit", "OFFSET"),
    ("SELECT COUNT(*) FROM medical_institutions", "query_no_privacy_unit", "privacy unit"),
    ("SELECT COUNT(*), COUNT(*) FROM enterprise_tax", "query_duplicate_name", "count"),
    (
        "SELECT icd10_chapter, residence_district, dept, BIN(age), COUNT(*) FROM outpatient_visits "
        "GROUP BY 1, 2, 3, 4",
        "query_too_many_cells",
        "cells",
    ),
    ("SELECT COUNT(*) FROM enterprise_tax TABLESAMPLE (10 PERCENT)", "query_unsupported_clause", "FROM"),
    (
        "SELECT COUNT(*) FILTER (WHERE tax_year = 2018) FROM enterprise_tax",
        "query_unsupported_clause",
        "FILTER",
    ),
]


@pytest.mark.parametrize(("sql", "code", "clause"), REFUSED, ids=[r[1] + ":" + r[0][:40] for r in REFUSED])
def test_refused_with_stable_code_naming_the_clause(
    sql: str, code: str, clause: str, catalog: Catalog
) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_sql(sql, catalog)
    err = info.value
    assert err.code == code, err.message
    assert clause.lower() in err.message.lower(), err.message
    assert err.hint, "every refusal says what is allowed"
    assert type(err) is error_classes()[code]
    assert err.to_dict()["error"]["code"] == code


def test_every_query_code_is_documented() -> None:
    codes = {
        c for c, cls in error_classes().items() if issubclass(cls, InvalidQuery) and c.startswith("query_")
    }
    documented = set(re.findall(r"`(query_[a-z_]+)`", (ROOT / "docs" / "dp.md").read_text(encoding="utf-8")))
    assert codes <= documented, f"undocumented: {sorted(codes - documented)}"
    assert documented <= codes, f"documented but unknown: {sorted(documented - codes)}"


def test_messages_quote_only_query_and_policy(catalog: Catalog) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_sql("SELECT COUNT(*) FROM enterprise_tax WHERE credit_grade LIKE 'secret%'", catalog)
    # the literal the user wrote may be echoed; nothing else (no rows, no counts) can be
    assert "secret%" in info.value.message


def test_non_string_input_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_sql(b"SELECT 1", catalog)  # type: ignore[arg-type]
    assert info.value.code == "query_syntax"


def test_very_long_or_deep_queries_are_refused_cleanly(catalog: Catalog) -> None:
    deep = "SELECT COUNT(*) FROM enterprise_tax WHERE " + "NOT (" * 60 + "tax_year = 2018" + ")" * 60
    assert codes_of(deep, catalog) in ("query_where", "query_syntax")
    assert codes_of("SELECT COUNT(*) FROM enterprise_tax WHERE " + "x" * 30_000, catalog) == "query_syntax"


# ------------------------------------------------------------------------------------- spec identity


def test_equivalent_spellings_share_a_fingerprint(catalog: Catalog) -> None:
    a = parse_sql(
        "SELECT credit_grade, MEDIAN(vat_paid_wan) FROM enterprise_tax "
        "WHERE tax_year IN (2018, 2017) GROUP BY credit_grade",
        catalog,
    )
    b = parse_sql(
        'SELECT "credit_grade", PERCENTILE_CONT(0.50) WITHIN GROUP (ORDER BY vat_paid_wan) '
        "FROM enterprise_tax WHERE tax_year IN (2017, 2018, 2017) GROUP BY 1",
        catalog,
    )
    assert a == b and hash(a) == hash(b)
    assert a.fingerprint() == b.fingerprint()
    c = parse_sql(
        "SELECT credit_grade, MEDIAN(vat_paid_wan) FROM enterprise_tax "
        "WHERE tax_year IN (2018, 2016) GROUP BY credit_grade",
        catalog,
    )
    assert c.fingerprint() != a.fingerprint()


def test_fingerprint_is_pinned(catalog: Catalog) -> None:
    spec = parse_sql("SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade", catalog)
    assert re.fullmatch(r"[0-9a-f]{64}", spec.fingerprint())
    # changing the canonical form changes every cache key: do it on purpose only
    assert spec.fingerprint() == "9d3e0edfc45255f57712376427118f3b518bb329223d7513429500d39d8ad735"


def test_spec_is_frozen(catalog: Catalog) -> None:
    spec = parse_sql("SELECT COUNT(*) FROM enterprise_tax", catalog)
    with pytest.raises(AttributeError):
        spec.limit = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT credit_grade AS g, COUNT(*) AS n FROM enterprise_tax WHERE tax_year >= 2017 GROUP BY g "
        "ORDER BY n DESC LIMIT 2",
        "SELECT BIN(vat_paid_wan), AVG(cit_paid_wan), QUANTILE(vat_paid_wan, 0.9) FROM enterprise_tax "
        "WHERE NOT (credit_grade = 'A' OR arrears_flag) AND vat_paid_wan BETWEEN -2.5 AND 7 GROUP BY 1",
        "SELECT COUNT(DISTINCT uscc) FROM penalties WHERE event_date < DATE '2018-06-01' "
        "AND closed IS NOT NULL",
        "SELECT card_type, SUM(fare_yuan) FROM transit_trips "
        "WHERE txn_time > TIMESTAMP '2018-01-01 07:30:00' AND txn_time <= '2018-01-31 23:59:59' "
        "GROUP BY card_type",
    ],
)
def test_to_sql_round_trips(sql: str, catalog: Catalog) -> None:
    spec = parse_sql(sql, catalog)
    assert parse_sql(spec.to_sql(), catalog) == spec


# ------------------------------------------------------------------------------------- builder


def test_builder_matches_sql(catalog: Catalog) -> None:
    built = (
        table("enterprise_tax")
        .where(col("tax_year") == 2018)
        .group_by("credit_grade")
        .agg(count(), mean("vat_paid_wan"))
        .spec(catalog)
    )
    parsed = parse_sql(
        "SELECT credit_grade, COUNT(*), AVG(vat_paid_wan) FROM enterprise_tax WHERE tax_year = 2018 "
        "GROUP BY credit_grade",
        catalog,
    )
    assert built == parsed and built.fingerprint() == parsed.fingerprint()


def test_builder_covers_the_language(catalog: Catalog) -> None:
    built = (
        table("enterprise_tax")
        .where(col("credit_grade").isin(["B", "A"]) | ~(col("arrears_flag") == True))  # noqa: E712
        .where(col("vat_paid_wan").between(-1.5, 10.0) & col("cit_paid_wan").is_not_null())
        .group_by(bin_("vat_paid_wan").alias("b"), "tax_year")
        .agg(
            count().alias("n"),
            count_distinct("uscc"),
            sum_("cit_paid_wan"),
            median("vat_paid_wan"),
            quantile("taxable_revenue_wan", 0.9),
        )
        .order_by("n", descending=True)
        .limit(5)
        .spec(catalog)
    )
    parsed = parse_sql(
        "SELECT BIN(vat_paid_wan) AS b, tax_year, COUNT(*) AS n, COUNT(DISTINCT uscc), SUM(cit_paid_wan), "
        "MEDIAN(vat_paid_wan), QUANTILE(taxable_revenue_wan, 0.9) FROM enterprise_tax "
        "WHERE (credit_grade IN ('A', 'B') OR NOT arrears_flag = TRUE) "
        "AND vat_paid_wan BETWEEN -1.5 AND 10 AND cit_paid_wan IS NOT NULL "
        "GROUP BY b, tax_year ORDER BY n DESC LIMIT 5",
        catalog,
    )
    assert built == parsed


def test_builder_refuses_like_the_parser(catalog: Catalog) -> None:
    with pytest.raises(InvalidQuery) as info:
        table("enterprise_tax").group_by("uscc").agg(count()).spec(catalog)
    assert info.value.code == "query_identifier_column"
    with pytest.raises(InvalidQuery) as info:
        table("enterprise_tax").agg(quantile("vat_paid_wan", 2)).spec(catalog)
    assert info.value.code == "query_quantile"
    with pytest.raises(InvalidQuery) as info:
        table("enterprise_tax").where(col("tax_year") == "2018").agg(count()).spec(catalog)
    assert info.value.code == "query_type_mismatch"
    with pytest.raises(InvalidQuery) as info:
        table("enterprise_tax").where(col("vat_paid_wan") > float("nan")).agg(count()).spec(catalog)
    assert info.value.code == "query_type_mismatch"


def test_builder_sql_is_the_subset() -> None:
    query = table("enterprise_tax").group_by("credit_grade").agg(count(), mean("vat_paid_wan"))
    assert query.sql() == (
        'SELECT "credit_grade", COUNT(*), AVG("vat_paid_wan") FROM "enterprise_tax" GROUP BY "credit_grade"'
    )
    assert isinstance(QuerySpec, type)


def test_builder_docstring_example_runs() -> None:
    import doctest

    import sandbox.dp.builder

    result = doctest.testmod(sandbox.dp.builder, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0
