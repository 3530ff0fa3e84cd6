"""WHERE: predicates over non-identifier columns compared with typed literals (part of the validator)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

import sqlglot.expressions as exp

from sandbox.errors import QueryTypeMismatch, QueryWhere
from sandbox.policy.models import Column, ColumnType, Dataset

from ._ast import _name, _set_args, _snippet, _unparen
from .spec import (
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
    literal_sort_key,
)

__all__ = ["MAX_IN_LIST", "MAX_PREDICATE_DEPTH", "WhereMixin"]

MAX_PREDICATE_DEPTH = 40
MAX_IN_LIST = 1_000
MAX_STRING_LITERAL = 1_000
_I64 = 2**63

_COMPARISONS: dict[type[exp.Expr], CompareOp] = {
    exp.EQ: CompareOp.EQ,
    exp.NEQ: CompareOp.NE,
    exp.LT: CompareOp.LT,
    exp.LTE: CompareOp.LE,
    exp.GT: CompareOp.GT,
    exp.GTE: CompareOp.GE,
}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?$")


class WhereMixin:
    """The WHERE part of the validator; the validator provides the dataset and column lookup."""

    dataset: Dataset

    def _column(self, node: Any, use: str) -> Column:
        raise NotImplementedError

    def _not_identifier(self, column: Column, use: str) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- WHERE

    def _where(self, select: exp.Select) -> Predicate | None:
        where = select.args.get("where")
        if where is None:
            return None
        if not isinstance(where, exp.Where) or _set_args(where) != {"this"}:
            raise QueryWhere("WHERE: unsupported form.")
        return self._predicate(where.this, 0)

    def _predicate(self, node: Any, depth: int) -> Predicate:
        if depth > MAX_PREDICATE_DEPTH:
            raise QueryWhere(f"WHERE is nested more than {MAX_PREDICATE_DEPTH} levels deep.")
        node = _unparen(node)
        if isinstance(node, exp.And | exp.Or):
            parts = self._flatten(node, type(node), depth)
            return And(parts) if isinstance(node, exp.And) else Or(parts)
        if isinstance(node, exp.Not):
            inner = self._predicate(node.this, depth + 1)
            if isinstance(inner, InList | Between | IsNull):
                return replace(inner, negated=not inner.negated)
            if isinstance(inner, Not):
                return inner.item
            return Not(inner)
        use = f"WHERE {_snippet(node)}"
        if type(node) in _COMPARISONS:
            return self._comparison(node, _COMPARISONS[type(node)], use)
        if isinstance(node, exp.In):
            if _set_args(node) - {"this", "expressions"}:
                raise QueryWhere(f"{use}: IN takes a list of literals.")
            column = self._where_column(node.this, use)
            values = node.args.get("expressions") or []
            if not values or len(values) > MAX_IN_LIST:
                raise QueryWhere(f"{use}: IN takes 1 to {MAX_IN_LIST} literals.")
            literals = {self._literal(v, column, use) for v in values}
            return InList(column.name, tuple(sorted(literals, key=literal_sort_key)))
        if isinstance(node, exp.Between):
            if _set_args(node) - {"this", "low", "high"}:
                raise QueryWhere(f"{use}: write col BETWEEN low AND high.")
            column = self._where_column(node.this, use)
            return Between(
                column.name,
                self._literal(node.args["low"], column, use),
                self._literal(node.args["high"], column, use),
            )
        if isinstance(node, exp.Is):
            if _set_args(node) - {"this", "expression", "negate"} or not isinstance(
                node.expression, exp.Null
            ):
                raise QueryWhere(f"{use}: only IS NULL and IS NOT NULL are supported.")
            column = self._where_column(node.this, use)
            return IsNull(column.name, negated=bool(node.args.get("negate")))
        if isinstance(node, exp.Column):
            column = self._where_column(node, use)
            if column.type is not ColumnType.BOOLEAN:
                raise QueryWhere(f"{use}: a non-boolean column alone is not a condition.")
            return Compare(column.name, CompareOp.EQ, True)
        if isinstance(node, exp.AggFunc):
            raise QueryWhere(f"{use}: aggregates are not allowed in WHERE.")
        raise QueryWhere(f"{use}: unsupported condition.")

    def _flatten(self, node: exp.Expr, kind: type[exp.Expr], depth: int) -> tuple[Predicate, ...]:
        out: list[Predicate] = []
        stack: list[Any] = [node]
        while stack:
            current = _unparen(stack.pop())
            if isinstance(current, kind):
                stack.append(current.expression)
                stack.append(current.this)
                continue
            out.append(self._predicate(current, depth + 1))
        flat: list[Predicate] = []
        for part in out:
            if isinstance(part, And | Or) and isinstance(part, And) == (kind is exp.And):
                flat.extend(part.items)
            else:
                flat.append(part)
        return tuple(flat)

    def _comparison(self, node: exp.Expr, op: CompareOp, use: str) -> Predicate:
        left, right = _unparen(node.this), _unparen(node.args.get("expression"))
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            raise QueryWhere(
                f"{use}: comparing two columns is not supported; compare a column with a literal."
            )
        if not isinstance(left, exp.Column):
            if not isinstance(right, exp.Column):
                raise QueryWhere(f"{use}: compare a column with a literal.")
            left, right, op = right, left, op.flipped()
        column = self._where_column(left, use)
        return Compare(column.name, op, self._literal(right, column, use))

    def _where_column(self, node: Any, use: str) -> Column:
        if not isinstance(_unparen(node), exp.Column):
            raise QueryWhere(f"{use}: the left side must be a plain column.")
        column = self._column(node, use)
        self._not_identifier(column, use)
        return column

    def _literal(self, node: Any, column: Column, use: str) -> LiteralValue:
        node = _unparen(node)
        negative = False
        if isinstance(node, exp.Neg):
            negative, node = True, _unparen(node.this)
        kind = column.type
        if isinstance(node, exp.Null):
            raise QueryWhere(f"{use}: comparing with NULL never matches; write IS NULL.")
        if isinstance(node, exp.Column):
            raise QueryWhere(f"{use}: comparing two columns is not supported.")
        if isinstance(node, exp.Literal) and not node.is_string:
            if kind not in (ColumnType.INTEGER, ColumnType.FLOAT):
                _mismatch(use, column, "a number")
            return self._number(str(node.this), negative, column, use)
        if negative:
            raise QueryTypeMismatch(f"{use}: '-' applies to numbers only.")
        if isinstance(node, exp.Literal):
            text = str(node.this)
            if len(text) > MAX_STRING_LITERAL:
                raise QueryWhere(f"{use}: string literals are limited to {MAX_STRING_LITERAL} characters.")
            if kind in (ColumnType.STRING, ColumnType.CATEGORY):
                return text
            if kind is ColumnType.DATE:
                return _date(text, use)
            if kind is ColumnType.TIMESTAMP:
                return _timestamp(text, use)
            _mismatch(use, column, "a string")
        if isinstance(node, exp.Boolean):
            if kind is not ColumnType.BOOLEAN:
                _mismatch(use, column, "a boolean")
            return bool(node.this)
        if isinstance(node, exp.Cast) and not _set_args(node) - {"this", "to", "_type"}:
            inner = _unparen(node.this)
            target = node.args["to"].this if isinstance(node.args.get("to"), exp.DataType) else None
            if isinstance(inner, exp.Literal) and inner.is_string:
                text = str(inner.this)
                if target == exp.DataType.Type.DATE:
                    if kind is ColumnType.DATE:
                        return _date(text, use)
                    if kind is ColumnType.TIMESTAMP:
                        value = _date(text, use)
                        return datetime(value.year, value.month, value.day)
                    _mismatch(use, column, "a DATE")
                if target in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.DATETIME):
                    if kind is ColumnType.TIMESTAMP:
                        return _timestamp(text, use)
                    _mismatch(use, column, "a TIMESTAMP")
            raise QueryWhere(f"{use}: only DATE '…' and TIMESTAMP '…' literals may be cast.")
        raise QueryWhere(f"{use}: the right side must be a literal.")

    def _number(self, text: str, negative: bool, column: Column, use: str) -> LiteralValue:
        if len(text) > 40:
            raise QueryTypeMismatch(f"{use}: the number literal is too long.")
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise QueryTypeMismatch(f"{use}: {text!r} is not a number.") from None
        if not value.is_finite() or (value != 0 and not -30 <= value.adjusted() <= 30):
            raise QueryTypeMismatch(f"{use}: the number {text!r} is out of range.")
        if negative:
            value = -value
        if value == value.to_integral_value():
            integer = int(value)
            if not -_I64 <= integer < _I64:
                raise QueryTypeMismatch(f"{use}: the number {text!r} is out of range.")
            return integer
        return value.normalize()


def _mismatch(use: str, column: Column, got: str) -> NoReturn:
    raise QueryTypeMismatch(f"{use}: column {column.name!r} is {column.type.value}, compared with {got}.")


def _date(text: str, use: str) -> date:
    if _DATE_RE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise QueryTypeMismatch(f"{use}: {_name(text)!r} is not a date (YYYY-MM-DD).")


def _timestamp(text: str, use: str) -> datetime:
    if _TIMESTAMP_RE.match(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise QueryTypeMismatch(f"{use}: {_name(text)!r} is not a timestamp (YYYY-MM-DD HH:MM[:SS]).")
