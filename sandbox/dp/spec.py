"""QuerySpec: the frozen, hashable, normalised form of one DP query.

The parser (``parser.py``) and the Python builder (``builder.py``) both end here, through the
same validation, so the same question asked either way has the same spec and the same
:meth:`QuerySpec.fingerprint` (a cache key for the query service).

Normalisation: identifiers are lower-case (unless quoted), numeric literals are ``int`` when
integral and otherwise a normalised ``Decimal`` (never ``float``), ``MEDIAN(x)`` is the 0.5
quantile, nested AND/OR are flattened, literals sit on the right of comparisons, and ``IN``
lists are de-duplicated and sorted. Output names are the aliases, else a default derived from
the aggregate (``count``, ``sum_<col>``, ``avg_<col>``, ``median_<col>`` …).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlglot.expressions as exp

__all__ = [
    "AggKind",
    "Aggregate",
    "And",
    "Between",
    "Compare",
    "CompareOp",
    "InList",
    "IsNull",
    "Key",
    "LiteralValue",
    "Not",
    "Or",
    "OrderItem",
    "Predicate",
    "QuerySpec",
    "literal_sort_key",
    "predicate_columns",
]

#: A normalised literal. ``bool`` before ``int`` everywhere: ``bool`` is a subclass of ``int``.
LiteralValue = bool | int | Decimal | str | date | datetime


class AggKind(StrEnum):
    COUNT = "count"
    COUNT_DISTINCT = "count_distinct"
    SUM = "sum"
    MEAN = "mean"
    QUANTILE = "quantile"


class CompareOp(StrEnum):
    EQ = "="
    NE = "<>"
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    def flipped(self) -> CompareOp:
        """The operator with its operands swapped (``1 < x`` is ``x > 1``)."""
        return {
            CompareOp.LT: CompareOp.GT,
            CompareOp.LE: CompareOp.GE,
            CompareOp.GT: CompareOp.LT,
            CompareOp.GE: CompareOp.LE,
        }.get(self, self)


@dataclass(frozen=True)
class Key:
    """A public grouping key: a column with a public domain, or ``BIN(column)`` over declared bins."""

    column: str
    name: str
    binned: bool = False


@dataclass(frozen=True)
class Aggregate:
    """One released statistic per cell."""

    kind: AggKind
    name: str
    column: str | None = None
    q: Decimal | None = None


@dataclass(frozen=True)
class Compare:
    column: str
    op: CompareOp
    value: LiteralValue


@dataclass(frozen=True)
class InList:
    column: str
    values: tuple[LiteralValue, ...]
    negated: bool = False


@dataclass(frozen=True)
class Between:
    column: str
    low: LiteralValue
    high: LiteralValue
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    column: str
    negated: bool = False


@dataclass(frozen=True)
class And:
    items: tuple[Predicate, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Predicate, ...]


@dataclass(frozen=True)
class Not:
    item: Predicate


Predicate = Compare | InList | Between | IsNull | And | Or | Not


@dataclass(frozen=True)
class OrderItem:
    name: str
    descending: bool = False


@dataclass(frozen=True)
class QuerySpec:
    """A validated DP query over one dataset.

    ``outputs`` lists the output names in SELECT order (keys and aggregates may interleave);
    ``keys`` and ``aggregates`` hold their definitions.
    """

    dataset: str
    keys: tuple[Key, ...]
    aggregates: tuple[Aggregate, ...]
    outputs: tuple[str, ...]
    where: Predicate | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    _fingerprint: str = field(default="", init=False, repr=False, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form (the input of :meth:`fingerprint`)."""
        return {
            "dataset": self.dataset,
            "keys": [{"column": k.column, "name": k.name, "binned": k.binned} for k in self.keys],
            "aggregates": [
                {
                    "kind": a.kind.value,
                    "name": a.name,
                    "column": a.column,
                    "q": None if a.q is None else _decimal_text(a.q),
                }
                for a in self.aggregates
            ],
            "outputs": list(self.outputs),
            "where": None if self.where is None else _predicate_dict(self.where),
            "order_by": [{"name": o.name, "descending": o.descending} for o in self.order_by],
            "limit": self.limit,
        }

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of the spec: stable across processes and versions of Python."""
        if not self._fingerprint:
            text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            object.__setattr__(self, "_fingerprint", hashlib.sha256(text.encode("utf-8")).hexdigest())
        return self._fingerprint

    def to_sql(self) -> str:
        """Canonical SQL text of the spec; parsing it gives back an equal spec."""
        return self.to_ast().sql()

    def to_ast(self) -> exp.Select:
        """The spec as a sqlglot ``SELECT`` (used by :meth:`to_sql` and the builder)."""
        by_name: dict[str, exp.Expr] = {}
        for key in self.keys:
            by_name[key.name] = key_ast(key)
        for agg in self.aggregates:
            by_name[agg.name] = aggregate_ast(agg)
        items = [exp.alias_(by_name[name], name, quoted=True) for name in self.outputs]
        select = exp.Select(expressions=items).from_(exp.Table(this=_quoted_identifier(self.dataset)))
        if self.where is not None:
            select = select.where(predicate_ast(self.where))
        if self.keys:
            select = select.group_by(*[key_ast(k) for k in self.keys])
        if self.order_by:
            select = select.order_by(
                *[exp.Ordered(this=_column_ast(o.name), desc=o.descending) for o in self.order_by]
            )
        if self.limit is not None:
            select = select.limit(self.limit)
        return select


# ------------------------------------------------------------------------------- sqlglot rendering


def _quoted_identifier(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=True)


def _column_ast(name: str) -> exp.Column:
    return exp.Column(this=_quoted_identifier(name))


def key_ast(key: Key) -> exp.Expr:
    column = _column_ast(key.column)
    if key.binned:
        return exp.Anonymous(this="BIN", expressions=[column])
    return column


def aggregate_ast(agg: Aggregate) -> exp.Expr:
    if agg.kind is AggKind.COUNT:
        return exp.Count(this=exp.Star())
    assert agg.column is not None
    column = _column_ast(agg.column)
    if agg.kind is AggKind.COUNT_DISTINCT:
        return exp.Count(this=exp.Distinct(expressions=[column]))
    if agg.kind is AggKind.SUM:
        return exp.Sum(this=column)
    if agg.kind is AggKind.MEAN:
        return exp.Avg(this=column)
    assert agg.q is not None
    return exp.WithinGroup(
        this=exp.PercentileCont(this=exp.Literal.number(_decimal_text(agg.q))),
        expression=exp.Order(expressions=[exp.Ordered(this=column)]),
    )


def literal_ast(value: LiteralValue) -> exp.Expr:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | Decimal):
        text = str(value) if isinstance(value, int) else _decimal_text(value)
        if text.startswith("-"):
            return exp.Neg(this=exp.Literal.number(text[1:]))
        return exp.Literal.number(text)
    if isinstance(value, datetime):
        return exp.Cast(this=exp.Literal.string(value.isoformat(sep=" ")), to=exp.DataType.build("timestamp"))
    if isinstance(value, date):
        return exp.Cast(this=exp.Literal.string(value.isoformat()), to=exp.DataType.build("date"))
    return exp.Literal.string(value)


def predicate_ast(pred: Predicate) -> exp.Expr:
    if isinstance(pred, Compare):
        cls: type[exp.Binary] = {
            CompareOp.EQ: exp.EQ,
            CompareOp.NE: exp.NEQ,
            CompareOp.LT: exp.LT,
            CompareOp.LE: exp.LTE,
            CompareOp.GT: exp.GT,
            CompareOp.GE: exp.GTE,
        }[pred.op]
        return cls(this=_column_ast(pred.column), expression=literal_ast(pred.value))
    if isinstance(pred, InList):
        node: exp.Expr = exp.In(
            this=_column_ast(pred.column), expressions=[literal_ast(v) for v in pred.values]
        )
        return exp.Not(this=node) if pred.negated else node
    if isinstance(pred, Between):
        node = exp.Between(
            this=_column_ast(pred.column), low=literal_ast(pred.low), high=literal_ast(pred.high)
        )
        return exp.Not(this=node) if pred.negated else node
    if isinstance(pred, IsNull):
        node = exp.Is(this=_column_ast(pred.column), expression=exp.Null())
        return exp.Not(this=node) if pred.negated else node
    if isinstance(pred, And | Or):
        joined = exp.and_ if isinstance(pred, And) else exp.or_
        return exp.Paren(this=joined(*[predicate_ast(p) for p in pred.items]))
    return exp.Not(this=exp.Paren(this=predicate_ast(pred.item)))


# ------------------------------------------------------------------------------- canonical JSON


def _decimal_text(value: Decimal) -> str:
    """Plain (non-exponent) text of a finite decimal without trailing zeros: ``0.50`` -> ``0.5``."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def literal_json(value: LiteralValue) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, Decimal):
        return {"decimal": _decimal_text(value)}
    if isinstance(value, datetime):
        return {"timestamp": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    return {"str": value}


def literal_sort_key(value: LiteralValue) -> tuple[str, str]:
    """A total order over literals of mixed types (used to sort IN lists canonically)."""
    ((kind, text),) = literal_json(value).items()
    if kind in ("int", "decimal"):
        # numbers sort numerically: fixed-width text of the value
        num = Decimal(text)
        return ("num", f"{num + Decimal(10) ** 30:060.30f}")
    return (kind, str(text))


def _predicate_dict(pred: Predicate) -> dict[str, Any]:
    if isinstance(pred, Compare):
        return {"cmp": [pred.column, pred.op.value, literal_json(pred.value)]}
    if isinstance(pred, InList):
        return {"in": [pred.column, [literal_json(v) for v in pred.values], pred.negated]}
    if isinstance(pred, Between):
        return {"between": [pred.column, literal_json(pred.low), literal_json(pred.high), pred.negated]}
    if isinstance(pred, IsNull):
        return {"is_null": [pred.column, pred.negated]}
    if isinstance(pred, And):
        return {"and": [_predicate_dict(p) for p in pred.items]}
    if isinstance(pred, Or):
        return {"or": [_predicate_dict(p) for p in pred.items]}
    return {"not": _predicate_dict(pred.item)}


def predicate_columns(pred: Predicate) -> set[str]:
    """Every column a predicate mentions."""
    if isinstance(pred, And | Or):
        out: set[str] = set()
        for item in pred.items:
            out |= predicate_columns(item)
        return out
    if isinstance(pred, Not):
        return predicate_columns(pred.item)
    return {pred.column}
