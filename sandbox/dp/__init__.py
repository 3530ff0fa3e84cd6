"""The DP query engine: SQL subset -> QuerySpec -> one push-down statement -> OpenDP noise.

The only package that imports opendp. Public API (docs/dp.md)::

    spec = parse_sql("SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade", catalog)
    spec = table("enterprise_tax").group_by("credit_grade").agg(count()).spec(catalog)   # same spec
    compiled = compile_query(spec, catalog, Decimal("0.1"))
    compiled.charge                     # Decimal, from the OpenDP privacy map at d_in
    rows = conn.execute(compiled.statement).all()
    release = compiled.release(rows)    # noised cells + 95% half-widths
    compiled.preview()                  # expected accuracy and cost, spends nothing
    epsilon_for(spec, catalog, ci95=50) # budget reaching a target half-width
    epsilon_for(spec, catalog, rank_error95=20)  # ... or a target quantile rank error (values)
"""

from __future__ import annotations

from .accuracy import Preview
from .builder import Query, bin_, col, count, count_distinct, mean, median, quantile, sum_, table
from .compiler import CompiledQuery, Release, compile_query, epsilon_for, preview
from .parser import parse_sql, validate_ast
from .planner import ExactCells
from .spec import QuerySpec

__all__ = [
    "CompiledQuery",
    "ExactCells",
    "Preview",
    "Query",
    "QuerySpec",
    "Release",
    "bin_",
    "col",
    "compile_query",
    "count",
    "count_distinct",
    "epsilon_for",
    "mean",
    "median",
    "parse_sql",
    "preview",
    "quantile",
    "sum_",
    "table",
    "validate_ast",
]
