"""A small Python builder for DP queries; it produces the same QuerySpec as the SQL parser.

    >>> q = (table("enterprise_tax")
    ...      .where(col("tax_year") == 2018)
    ...      .group_by("credit_grade")
    ...      .agg(count(), mean("vat_paid_wan")))
    >>> print(q.sql())  # doctest: +NORMALIZE_WHITESPACE
    SELECT "credit_grade", COUNT(*), AVG("vat_paid_wan") FROM "enterprise_tax"
    WHERE "tax_year" = 2018 GROUP BY "credit_grade"

``q.spec(catalog)`` validates through the parser's own validator (``validate_ast``), so the
builder accepts exactly what the SQL subset accepts, with the same errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import sqlglot.expressions as exp

from sandbox.errors import QueryTypeMismatch

from .parser import validate_ast
from .schema import CatalogLike
from .spec import (
    AggKind,
    Aggregate,
    And,
    Between,
    Compare,
    CompareOp,
    InList,
    IsNull,
    LiteralValue,
    Not,
    Or,
    Predicate,
    QuerySpec,
    aggregate_ast,
    predicate_ast,
)

__all__ = [
    "Agg",
    "Col",
    "Condition",
    "KeyRef",
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

PythonLiteral = bool | int | float | Decimal | str | date | datetime


def _literal(value: PythonLiteral) -> LiteralValue:
    if isinstance(value, bool | str | date | int):
        return value
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise QueryTypeMismatch(f"WHERE: {value!r} is not a literal the query language supports.") from None
    if not number.is_finite():
        raise QueryTypeMismatch(f"WHERE: {value!r} is not a finite number.")
    return int(number) if number == number.to_integral_value() else number.normalize()


@dataclass(frozen=True)
class Condition:
    """A WHERE condition; combine with ``&``, ``|`` and ``~``."""

    predicate: Predicate

    def __and__(self, other: Condition) -> Condition:
        return Condition(And((self.predicate, other.predicate)))

    def __or__(self, other: Condition) -> Condition:
        return Condition(Or((self.predicate, other.predicate)))

    def __invert__(self) -> Condition:
        return Condition(Not(self.predicate))


class Col:
    """A column reference for WHERE conditions: ``col("tax_year") == 2018``."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        self.name = name

    def _cmp(self, op: CompareOp, value: PythonLiteral) -> Condition:
        return Condition(Compare(self.name, op, _literal(value)))

    def __eq__(self, value: PythonLiteral) -> Condition:  # type: ignore[override]
        return self._cmp(CompareOp.EQ, value)

    def __ne__(self, value: PythonLiteral) -> Condition:  # type: ignore[override]
        return self._cmp(CompareOp.NE, value)

    def __lt__(self, value: PythonLiteral) -> Condition:
        return self._cmp(CompareOp.LT, value)

    def __le__(self, value: PythonLiteral) -> Condition:
        return self._cmp(CompareOp.LE, value)

    def __gt__(self, value: PythonLiteral) -> Condition:
        return self._cmp(CompareOp.GT, value)

    def __ge__(self, value: PythonLiteral) -> Condition:
        return self._cmp(CompareOp.GE, value)

    def isin(self, values: Iterable[PythonLiteral]) -> Condition:
        return Condition(InList(self.name, tuple(_literal(v) for v in values)))

    def between(self, low: PythonLiteral, high: PythonLiteral) -> Condition:
        return Condition(Between(self.name, _literal(low), _literal(high)))

    def is_null(self) -> Condition:
        return Condition(IsNull(self.name))

    def is_not_null(self) -> Condition:
        return Condition(IsNull(self.name, negated=True))


@dataclass(frozen=True)
class KeyRef:
    """A grouping key: a column name, or ``bin_(column)`` over the column's declared bins."""

    column: str
    binned: bool = False
    name: str | None = None

    def alias(self, name: str) -> KeyRef:
        return replace(self, name=name)

    def to_ast(self) -> exp.Expr:
        node: exp.Expr = exp.Column(this=exp.Identifier(this=self.column, quoted=True))
        if self.binned:
            node = exp.Anonymous(this="BIN", expressions=[node])
        return node


@dataclass(frozen=True)
class Agg:
    """An aggregate; ``.alias(name)`` names its output column."""

    kind: AggKind
    column: str | None = None
    q: Decimal | None = None
    name: str | None = None

    def alias(self, name: str) -> Agg:
        return replace(self, name=name)

    def to_ast(self) -> exp.Expr:
        return aggregate_ast(Aggregate(kind=self.kind, name="", column=self.column, q=self.q))


def col(name: str) -> Col:
    return Col(name)


def bin_(column: str) -> KeyRef:
    """``BIN(column)``: group by the column's declared histogram bins."""
    return KeyRef(column, binned=True)


def count() -> Agg:
    """``COUNT(*)``: rows per cell (after contribution bounding)."""
    return Agg(AggKind.COUNT)


def count_distinct(unit: str) -> Agg:
    """``COUNT(DISTINCT <privacy unit>)``: privacy units per cell."""
    return Agg(AggKind.COUNT_DISTINCT, unit)


def sum_(column: str) -> Agg:
    return Agg(AggKind.SUM, column)


def mean(column: str) -> Agg:
    """``AVG(column)``: noisy sum / noisy count."""
    return Agg(AggKind.MEAN, column)


def median(column: str) -> Agg:
    return Agg(AggKind.QUANTILE, column, Decimal("0.5"))


def quantile(column: str, q: float | Decimal | str) -> Agg:
    """``PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY column)``."""
    try:
        value = Decimal(str(q))
    except InvalidOperation:
        value = Decimal("NaN")
    return Agg(AggKind.QUANTILE, column, value)


@dataclass(frozen=True)
class Query:
    """An immutable query under construction; every method returns a new one."""

    dataset: str
    condition: Condition | None = None
    keys: tuple[KeyRef, ...] = ()
    aggregates: tuple[Agg, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()
    limit_rows: int | None = None

    def where(self, condition: Condition) -> Query:
        """Add a condition (AND-ed with earlier ones)."""
        combined = condition if self.condition is None else self.condition & condition
        return replace(self, condition=combined)

    def group_by(self, *keys: str | KeyRef) -> Query:
        refs = tuple(k if isinstance(k, KeyRef) else KeyRef(k) for k in keys)
        return replace(self, keys=self.keys + refs)

    def agg(self, *aggregates: Agg) -> Query:
        return replace(self, aggregates=self.aggregates + aggregates)

    def order_by(self, name: str, *, descending: bool = False) -> Query:
        return replace(self, order=(*self.order, (name, descending)))

    def limit(self, rows: int) -> Query:
        return replace(self, limit_rows=rows)

    def to_ast(self) -> exp.Select:
        items: list[exp.Expr] = []
        for key in self.keys:
            node = key.to_ast()
            items.append(exp.alias_(node, key.name, quoted=True) if key.name else node)
        for agg in self.aggregates:
            node = agg.to_ast()
            items.append(exp.alias_(node, agg.name, quoted=True) if agg.name else node)
        select = exp.Select(expressions=items).from_(
            exp.Table(this=exp.Identifier(this=self.dataset, quoted=True))
        )
        if self.condition is not None:
            select = select.where(predicate_ast(self.condition.predicate))
        if self.keys:
            select = select.group_by(*[k.to_ast() for k in self.keys])
        for name, descending in self.order:
            select = select.order_by(
                exp.Ordered(this=exp.Column(this=exp.Identifier(this=name, quoted=True)), desc=descending)
            )
        if self.limit_rows is not None:
            select = select.limit(exp.Literal.number(int(self.limit_rows)))
        return select

    def sql(self) -> str:
        """The query as SQL text of the subset."""
        return self.to_ast().sql()

    def spec(self, catalog: CatalogLike) -> QuerySpec:
        """Validate against the catalogue; raises the same ``InvalidQuery`` errors as ``parse_sql``."""
        return validate_ast(self.to_ast(), catalog)


def table(dataset: str) -> Query:
    """Start a query over one dataset."""
    return Query(dataset)
