"""A small query builder for notebooks that renders the sandbox's SQL subset.

    from sandbox.client.builder import table, col, count, mean, quantile
    q = (table("enterprise_tax")
         .where(col("year") == 2019)
         .group_by("district_code")
         .agg(count(), mean("vat_paid_wan").alias("avg_vat")))
    sb.query(q, epsilon=0.5)

The builder only writes SQL text (``q.to_sql()``); the gateway parses and checks it
exactly as if it had been typed, so there is one set of rules and one set of errors.
Names are checked here only for shape (``[a-z][a-z0-9_]*``); whether a column exists,
has public bounds or a public domain is decided by the gateway from the policy.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

__all__ = [
    "Aggregate",
    "Column",
    "Condition",
    "Key",
    "Query",
    "bin_",
    "col",
    "count",
    "count_distinct",
    "mean",
    "median",
    "quantile",
    "sum_",
    "table",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

Literal = str | int | float | bool | Decimal | dt.date | dt.datetime


def _name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"Invalid {what} {value!r}: use lower-case letters, digits and '_' (e.g. district_code)."
        )
    return value


def _literal(value: Literal) -> str:
    """Render one literal as SQL; strings are quoted with '' escaping, never pasted raw."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN and infinity cannot be used in a filter.")
        return repr(value)
    if isinstance(value, dt.datetime):
        return "TIMESTAMP '" + value.isoformat(sep=" ") + "'"
    if isinstance(value, dt.date):
        return "DATE '" + value.isoformat() + "'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"Unsupported literal type {type(value).__name__}.")


@dataclass(frozen=True)
class Condition:
    """A WHERE condition; combine with ``&`` (AND), ``|`` (OR) and ``~`` (NOT)."""

    sql: str

    def __and__(self, other: Condition) -> Condition:
        return Condition(f"({self.sql}) AND ({other.sql})")

    def __or__(self, other: Condition) -> Condition:
        return Condition(f"({self.sql}) OR ({other.sql})")

    def __invert__(self) -> Condition:
        return Condition(f"NOT ({self.sql})")

    def __bool__(self) -> bool:
        raise TypeError("Combine conditions with & and |, not 'and'/'or'.")


@dataclass(frozen=True)
class Column:
    """A column reference; comparisons produce :class:`Condition` objects."""

    name: str

    def _cmp(self, op: str, value: Literal) -> Condition:
        return Condition(f"{self.name} {op} {_literal(value)}")

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        if value is None:
            return self.is_null()
        return self._cmp("=", value)  # type: ignore[arg-type]

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        if value is None:
            return ~self.is_null()
        return self._cmp("<>", value)  # type: ignore[arg-type]

    def __lt__(self, value: Literal) -> Condition:
        return self._cmp("<", value)

    def __le__(self, value: Literal) -> Condition:
        return self._cmp("<=", value)

    def __gt__(self, value: Literal) -> Condition:
        return self._cmp(">", value)

    def __ge__(self, value: Literal) -> Condition:
        return self._cmp(">=", value)

    def __hash__(self) -> int:
        return hash(self.name)

    def isin(self, values: Iterable[Literal]) -> Condition:
        items = [_literal(v) for v in values]
        if not items:
            raise ValueError("isin() needs at least one value.")
        return Condition(f"{self.name} IN ({', '.join(items)})")

    def between(self, low: Literal, high: Literal) -> Condition:
        return Condition(f"{self.name} BETWEEN {_literal(low)} AND {_literal(high)}")

    def is_null(self) -> Condition:
        return Condition(f"{self.name} IS NULL")

    def is_not_null(self) -> Condition:
        return Condition(f"{self.name} IS NOT NULL")


def col(name: str) -> Column:
    return Column(_name(name, "column name"))


@dataclass(frozen=True)
class Key:
    """A grouping key: a column with a public domain, or ``bin_(column)`` over its declared bins."""

    column: str
    binned: bool = False
    label: str | None = None

    def alias(self, name: str) -> Key:
        return replace(self, label=_name(name, "alias"))

    @property
    def expr(self) -> str:
        return f"BIN({self.column})" if self.binned else self.column

    def to_sql(self) -> str:
        return f"{self.expr} AS {self.label}" if self.label else self.expr


def bin_(column: str) -> Key:
    """``BIN(column)``: group by the column's declared histogram bins."""
    return Key(_name(column, "column name"), binned=True)


@dataclass(frozen=True)
class Aggregate:
    expr: str
    label: str | None = None

    def alias(self, name: str) -> Aggregate:
        return replace(self, label=_name(name, "alias"))

    def to_sql(self) -> str:
        return f"{self.expr} AS {self.label}" if self.label else self.expr


def count() -> Aggregate:
    """``COUNT(*)``: rows (each privacy unit contributes at most the policy's bound)."""
    return Aggregate("COUNT(*)")


def count_distinct(column: str) -> Aggregate:
    """``COUNT(DISTINCT <privacy unit>)``: how many persons / enterprises."""
    return Aggregate(f"COUNT(DISTINCT {_name(column, 'column name')})")


def sum_(column: str) -> Aggregate:
    return Aggregate(f"SUM({_name(column, 'column name')})")


def mean(column: str) -> Aggregate:
    return Aggregate(f"AVG({_name(column, 'column name')})")


def median(column: str) -> Aggregate:
    return Aggregate(f"MEDIAN({_name(column, 'column name')})")


def quantile(column: str, q: float | Decimal | str) -> Aggregate:
    """``PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY column)`` with ``0 < q < 1``."""
    try:
        value = Decimal(str(q))
    except ArithmeticError:
        raise ValueError("q must be a number strictly between 0 and 1.") from None
    if not value.is_finite() or not 0 < value < 1:
        raise ValueError("q must be a number strictly between 0 and 1.")
    return Aggregate(f"PERCENTILE_CONT({value}) WITHIN GROUP (ORDER BY {_name(column, 'column name')})")


@dataclass(frozen=True)
class Query:
    """An immutable query description; every method returns a new Query."""

    dataset: str
    conditions: tuple[Condition, ...] = ()
    keys: tuple[Key, ...] = ()
    aggregates: tuple[Aggregate, ...] = ()
    ordering: tuple[str, ...] = ()
    max_rows: int | None = None

    def where(self, *conditions: Condition) -> Query:
        for c in conditions:
            if not isinstance(c, Condition):
                raise TypeError("where() takes conditions such as col('year') == 2019.")
        return replace(self, conditions=self.conditions + conditions)

    def group_by(self, *keys: str | Key) -> Query:
        refs = tuple(k if isinstance(k, Key) else Key(_name(k, "column name")) for k in keys)
        return replace(self, keys=self.keys + refs)

    def agg(self, *aggregates: Aggregate) -> Query:
        for a in aggregates:
            if not isinstance(a, Aggregate):
                raise TypeError("agg() takes count(), sum_(...), mean(...), median(...), quantile(...).")
        return replace(self, aggregates=self.aggregates + aggregates)

    def order_by(self, *columns: str, descending: bool = False) -> Query:
        suffix = " DESC" if descending else ""
        return replace(
            self, ordering=self.ordering + tuple(_name(c, "column name") + suffix for c in columns)
        )

    def limit(self, n: int) -> Query:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError("limit() needs a positive integer.")
        return replace(self, max_rows=n)

    def to_sql(self) -> str:
        if not self.aggregates:
            raise ValueError("Add at least one aggregate with .agg(count(), mean('col'), ...).")
        select = [*(k.to_sql() for k in self.keys), *(a.to_sql() for a in self.aggregates)]
        # Names are checked against [a-z][a-z0-9_]* and literals escaped; the gateway parses it anyway.
        sql = f"SELECT {', '.join(select)} FROM {self.dataset}"  # noqa: S608
        if self.conditions:
            sql += " WHERE " + " AND ".join(
                f"({c.sql})" if len(self.conditions) > 1 else c.sql for c in self.conditions
            )
        if self.keys:
            sql += " GROUP BY " + ", ".join(k.expr for k in self.keys)
        if self.ordering:
            sql += " ORDER BY " + ", ".join(self.ordering)
        if self.max_rows is not None:
            sql += f" LIMIT {self.max_rows}"
        return sql

    def __str__(self) -> str:
        return self.to_sql()


def table(name: str) -> Query:
    """Start a query on a dataset (its id, as in ``sb.catalog()``)."""
    return Query(_name(name, "dataset id"))
