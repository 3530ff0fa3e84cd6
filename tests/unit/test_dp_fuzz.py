"""Hypothesis: random SQL and random mutations of valid queries.

Nothing outside the subset is accepted (checked independently of the parser, on sqlglot's
tokens and on the resulting spec), and nothing raises anything but an ``InvalidQuery``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
import sqlglot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from sandbox.dp import QuerySpec, compile_query, parse_sql
from sandbox.dp.schema import is_identifier, key_values
from sandbox.dp.spec import AggKind, And, predicate_columns
from sandbox.errors import InternalError, InvalidQuery
from sandbox.policy.loader import Catalog, load_policies

ROOT = Path(__file__).resolve().parents[2]
CATALOG: Catalog = load_policies(ROOT / "policies")

VALID = [
    "SELECT COUNT(*) FROM enterprise_tax",
    "SELECT credit_grade, COUNT(*), AVG(vat_paid_wan) FROM enterprise_tax WHERE tax_year = 2018 "
    "GROUP BY credit_grade",
    "SELECT BIN(vat_paid_wan) AS b, SUM(cit_paid_wan) FROM enterprise_tax "
    "WHERE credit_grade IN ('A', 'B') AND NOT arrears_flag GROUP BY b ORDER BY 2 DESC LIMIT 3",
    "SELECT tax_year, COUNT(DISTINCT uscc), MEDIAN(taxable_revenue_wan) FROM enterprise_tax "
    "WHERE vat_paid_wan BETWEEN 1 AND 100 OR filing_months < 6 GROUP BY tax_year",
    "SELECT event_type, PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY amount_wan) FROM penalties "
    "WHERE event_date >= DATE '2018-01-01' AND closed IS NOT NULL GROUP BY 1",
    "SELECT card_type, mode, COUNT(*), QUANTILE(fare_yuan, 0.25) FROM transit_trips "
    "WHERE txn_time >= TIMESTAMP '2018-12-01 00:00:00' AND txn_time < TIMESTAMP '2019-01-01 00:00:00' "
    "GROUP BY card_type, mode",
]

VOCABULARY = [
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "ORDER", "LIMIT", "HAVING", "JOIN", "ON", "UNION", "ALL",
    "DISTINCT", "AS", "AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "WITH", "OVER",
    "PARTITION", "OFFSET", "DESC", "ASC", "CASE", "WHEN", "THEN", "END", "EXISTS", "LIKE", "INSERT", "INTO",
    "DELETE", "UPDATE", "SET", "DROP", "TABLE", "DATE", "TIMESTAMP", "WITHIN",
    "COUNT", "SUM", "AVG", "MIN", "MAX", "MEDIAN", "QUANTILE", "PERCENTILE_CONT", "BIN", "ROW_NUMBER",
    "STDDEV", "ABS", "CAST", "LOWER",
    "enterprise_tax", "penalties", "transit_trips", "medical_institutions", "nope",
    "uscc", "credit_grade", "tax_year", "vat_paid_wan", "cit_paid_wan", "arrears_flag", "filing_months",
    "event_type", "amount_wan", "fare_yuan", "card_type", "card_pseudo", "_rank",
    "*", "(", ")", ",", ";", "=", "<>", "<", ">", "<=", ">=", "+", "-", "/", ".", "||",
    "0", "1", "2018", "0.5", "1.5", "-3", "1e400", "'A'", "'x''y'", "'2018-01-01'", '"tax_year"', "?", ":p",
]  # fmt: skip

FORBIDDEN_WORDS = {
    "JOIN", "UNION", "INTERSECT", "EXCEPT", "OVER", "HAVING", "WITH", "MIN", "MAX", "INSERT", "UPDATE",
    "DELETE", "DROP", "OFFSET", "EXISTS", "LIKE", "CASE", "_RANK", "ROW_NUMBER", "STDDEV", "ABS", "LOWER",
}  # fmt: skip


def _tokens(sql: str) -> list[tuple[str, str]]:
    """(type, upper-cased text) of sqlglot's tokens; comments are not tokens."""
    return [(t.token_type.name, t.text.upper()) for t in sqlglot.tokenize(sql)]


def assert_within_subset(sql: str, spec: QuerySpec) -> None:
    """Independent checks of an accepted query."""
    tokens = [t for t in _tokens(sql) if t[1] != "ALL"]  # COUNT(ALL *) is COUNT(*)
    words = [text for kind, text in tokens if kind not in ("STRING", "IDENTIFIER")]
    # names used as aliases are harmless (COUNT(*) delete, FROM t update): take them from sqlglot's tree
    (tree,) = [t for t in sqlglot.parse(sql) if t is not None]
    aliases = {a.alias.upper() for a in tree.find_all(sqlglot.exp.Alias)}
    aliases |= {a.name.upper() for a in tree.find_all(sqlglot.exp.TableAlias)}
    assert not (FORBIDDEN_WORDS - aliases) & set(words), sql
    assert words.count("SELECT") == 1, sql
    for i, (kind, text) in enumerate(tokens):
        before = [t for _, t in tokens[max(i - 2, 0) : i]]
        if text == "DISTINCT" and kind != "STRING":
            assert before == ["COUNT", "("], sql
        if kind == "STAR":
            assert before == ["COUNT", "("] and tokens[i + 1][1] == ")", sql
        if kind == "SEMICOLON":
            assert all(k == "SEMICOLON" for k, _ in tokens[i:]), sql

    dataset = CATALOG.dataset(spec.dataset)
    assert dataset.privacy_unit and dataset.max_rows_per_unit
    assert spec.aggregates
    for key in spec.keys:
        column = dataset.column(key.column)
        assert not is_identifier(dataset, column)
        assert key_values(dataset, column, key.binned, "test")
    for agg in spec.aggregates:
        if agg.kind is AggKind.COUNT_DISTINCT:
            assert agg.column == dataset.privacy_unit
        elif agg.column is not None:
            assert not is_identifier(dataset, dataset.column(agg.column))
    if spec.where is not None:
        for name in predicate_columns(spec.where):
            assert not is_identifier(dataset, dataset.column(name))
    if dataset.query_window is not None:  # a query window needs top-level conditions on its column
        assert spec.where is not None, sql
        top = spec.where.items if isinstance(spec.where, And) else (spec.where,)
        assert any(getattr(p, "column", None) == dataset.query_window.column for p in top), sql
    assert parse_sql(spec.to_sql(), CATALOG) == spec
    compiled = compile_query(spec, CATALOG, Decimal("0.1"))
    str(compiled.statement.compile(dialect=sqlite.dialect()))


def check(sql: str) -> None:
    try:
        spec = parse_sql(sql, CATALOG)
    except InternalError as err:  # a bug, not a refusal
        raise AssertionError(f"internal error on {sql!r}") from err
    except InvalidQuery as err:
        assert err.code.startswith("query_") and err.message and err.hint
        return
    assert_within_subset(sql, spec)


@pytest.mark.parametrize("sql", VALID)
def test_seed_queries_are_valid(sql: str) -> None:
    assert_within_subset(sql, parse_sql(sql, CATALOG))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
@example("SELECT COUNT(*) FROM enterprise_tax WHERE tax_year = 2018 --")
@example("SELECT COUNT(*) FROM enterprise_tax /* ; DROP TABLE x */")
@example("\x00SELECT")
def test_random_text_is_refused_or_within_subset(sql: str) -> None:
    check(sql)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=25))
def test_random_token_soup_is_refused_or_within_subset(tokens: list[str]) -> None:
    check(" ".join(tokens))


def _split(sql: str) -> list[str]:
    return re.findall(r"'(?:[^']|'')*'|\"[^\"]*\"|\d+(?:\.\d+)?|\w+|<=|>=|<>|\S", sql)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    tokens = _split(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "swap", "duplicate"]))
        i = draw(st.integers(min_value=0, max_value=max(len(tokens) - 1, 0)))
        if op == "insert":
            tokens.insert(i, draw(st.sampled_from(VOCABULARY)))
        elif op == "delete" and len(tokens) > 1:
            del tokens[i]
        elif op == "replace" and tokens:
            tokens[i] = draw(st.sampled_from(VOCABULARY))
        elif op == "swap" and len(tokens) > 1:
            j = draw(st.integers(min_value=0, max_value=len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "duplicate" and tokens:
            j = draw(st.integers(min_value=i, max_value=len(tokens)))
            tokens[i:i] = tokens[i:j]
    return " ".join(tokens)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_of_valid_queries_are_refused_or_within_subset(sql: str) -> None:
    check(sql)
