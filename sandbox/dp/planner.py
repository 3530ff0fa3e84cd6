"""Planner: one push-down SQL statement per query (SQLAlchemy Core), and its exact integer cells.

The statement, with only bound parameters (no user text in SQL)::

    SELECT k0, …, COUNT(*) AS n_rows, SUM(v0) AS s0, COUNT(v0) AS n0, COUNT(DISTINCT u) AS n_units,
           COUNT(CASE WHEN v0 < :c THEN 1 END) AS q0_lt0, COUNT(CASE WHEN v0 > :c THEN 1 END) AS q0_gt0, …
    FROM (SELECT <key>, <bin index>, <fixed-point clamped value>, <unit>
          FROM <dataset>
          WHERE (<user filter>) AND _rank <= :max_rows_per_unit AND <key> IN (<domain>) …) AS bounded
    GROUP BY k0, …

* contribution bounding: ``_rank <= max_rows_per_unit`` (rank assigned per unit at ingest);
* clamping: ``CASE WHEN x < :lower THEN :lower WHEN x > :upper THEN :upper ELSE x END``;
* fixed point: integers stay integers (times ``10**p``); floats are rounded half away from
  zero, ``CAST(ROUND(x * 10**p) AS BIGINT)`` on SQLite and the same rule spelled
  ``FLOOR(y + 0.5)`` / ``-FLOOR(-y + 0.5)`` on DuckDB and PostgreSQL, so all three engines give
  identical integers (PostgreSQL's ``round(double)`` would break ties to even);
* every key of each public domain is released: missing cells are filled with 0 afterwards.

Only per-cell integer aggregates leave the database.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from sandbox.catalog.warehouse import RANK_COLUMN, dataset_table
from sandbox.errors import InternalError
from sandbox.policy.models import Column, ColumnType, Dataset

from .schema import FixedPoint, bin_edges, fixed_point, key_values, quantile_candidates
from .spec import (
    AggKind,
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
)

__all__ = ["ExactCells", "KeyPlan", "Plan", "Primitive", "plan_query"]


class _RoundHalfAway(FunctionElement[float]):
    """Round a DOUBLE to the nearest integer, ties away from zero, identically on every engine."""

    type = sa.Double()
    name = "round_half_away"
    inherit_cache = True


@compiles(_RoundHalfAway)
def _round_default(element: _RoundHalfAway, compiler: SQLCompiler, **kw: Any) -> str:
    (arg,) = list(element.clauses)
    text = compiler.process(arg, **kw)
    return f"(CASE WHEN ({text}) < 0 THEN -FLOOR(0.5 - ({text})) ELSE FLOOR(({text}) + 0.5) END)"


@compiles(_RoundHalfAway, "sqlite")
def _round_sqlite(element: _RoundHalfAway, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's round(x) is (double)(int64)(x + 0.5) for x >= 0 (mirrored for x < 0): the same rule.
    (arg,) = list(element.clauses)
    return f"ROUND({compiler.process(arg, **kw)})"


@dataclass(frozen=True)
class Primitive:
    """One exact per-cell integer vector the mechanisms add noise to.

    kinds: ``rows`` (COUNT(*)), ``nonnull`` (COUNT(v)), ``sum`` (SUM of clamped fixed-point values),
    ``csum`` (the same sum centred on the bounds' integer midpoint: SUM(v) - centre * COUNT(v)),
    ``distinct`` (COUNT(DISTINCT unit)), ``quantile`` (per cell, scores of public candidates).
    """

    kind: str
    column: str | None = None
    q: Decimal | None = None

    @property
    def id(self) -> str:
        parts = [self.kind]
        if self.column is not None:
            parts.append(self.column)
        if self.q is not None:
            parts.append(format(self.q, "f"))
        return ":".join(parts)


@dataclass(frozen=True)
class KeyPlan:
    name: str
    column: str
    binned: bool
    values: tuple[Any, ...]  # released key values (bins: labels)
    column_type: ColumnType

    def index_of(self) -> dict[Any, int]:
        return {self._norm(v): i for i, v in enumerate(self.values)} if not self.binned else {}

    def _norm(self, value: Any) -> Any:
        if self.column_type is ColumnType.BOOLEAN:
            return bool(value)
        if self.column_type is ColumnType.INTEGER:
            return int(value)
        return str(value)


@dataclass(frozen=True)
class ExactCells:
    """Exact per-cell integers from the warehouse, missing cells filled with 0.

    ``vectors[name]`` holds one integer per cell (cells in key-domain order); ``below[col]`` and
    ``above[col]`` hold, per cell, the counts of clamped values strictly below / above each
    quantile candidate of ``col``. This object is the input of the OpenDP measurement.
    """

    n_cells: int
    vectors: Mapping[str, tuple[int, ...]]
    below: Mapping[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    above: Mapping[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    spec: QuerySpec
    dataset: Dataset
    max_rows_per_unit: int
    keys: tuple[KeyPlan, ...]
    cells: tuple[tuple[Any, ...], ...]  # released key values per cell
    primitives: tuple[Primitive, ...]
    fixed: Mapping[str, FixedPoint]
    candidates: Mapping[str, tuple[int, ...]]
    statement: sa.Select[Any]
    labels: Mapping[str, str]  # primitive id or value column -> result label

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def execute_exact(self, conn: sa.Connection) -> ExactCells:
        """Run the statement on ``conn``; exact integer cells (tests and cross-engine checks only)."""
        return self.exact_cells(conn.execute(self.statement).all())

    def exact_cells(self, rows: Sequence[Any]) -> ExactCells:
        """Turn the statement's result rows into complete per-cell vectors (missing cells = 0)."""
        index = [k.index_of() for k in self.keys]
        sizes = [len(k.values) for k in self.keys]
        raw: dict[str, list[int]] = {label: [0] * self.n_cells for label in self.labels.values()}
        for row in rows:
            mapping = row._mapping if hasattr(row, "_mapping") else row
            cell = 0
            for i, key in enumerate(self.keys):
                value = mapping[f"k{i}"]
                try:
                    pos = int(value) if key.binned else index[i][key._norm(value)]
                except (KeyError, TypeError, ValueError) as err:
                    raise InternalError("The warehouse returned a key outside the public domain.") from err
                if not 0 <= pos < sizes[i]:
                    raise InternalError("The warehouse returned a bin outside the declared bins.")
                cell = cell * sizes[i] + pos
            for label in raw:
                value = mapping[label]
                raw[label][cell] = 0 if value is None else int(value)
        vectors: dict[str, tuple[int, ...]] = {}
        below: dict[str, tuple[tuple[int, ...], ...]] = {}
        above: dict[str, tuple[tuple[int, ...], ...]] = {}
        for prim in self.primitives:
            if prim.kind == "csum":
                assert prim.column is not None
                centre = self.fixed[prim.column].centre
                sums, counts = (
                    raw[self.labels[f"sum:{prim.column}"]],
                    raw[self.labels[f"nonnull:{prim.column}"]],
                )
                vectors[prim.id] = tuple(s - centre * n for s, n in zip(sums, counts, strict=True))
            elif prim.kind == "quantile":
                assert prim.column is not None
                col = prim.column
                if col not in below:
                    m = len(self.candidates[col])
                    below[col] = tuple(
                        tuple(raw[self.labels[f"lt:{col}:{j}"]][c] for j in range(m))
                        for c in range(self.n_cells)
                    )
                    above[col] = tuple(
                        tuple(raw[self.labels[f"gt:{col}:{j}"]][c] for j in range(m))
                        for c in range(self.n_cells)
                    )
            else:
                vectors[prim.id] = tuple(raw[self.labels[prim.id]])
        return ExactCells(n_cells=self.n_cells, vectors=vectors, below=below, above=above)


def _primitives(spec: QuerySpec, dataset: Dataset) -> tuple[Primitive, ...]:
    out: list[Primitive] = []

    def add(prim: Primitive) -> None:
        if prim not in out:
            out.append(prim)

    for agg in spec.aggregates:
        if agg.kind is AggKind.COUNT:
            add(Primitive("rows"))
        elif agg.kind is AggKind.COUNT_DISTINCT:
            add(Primitive("distinct"))
        elif agg.kind is AggKind.SUM:
            add(Primitive("sum", agg.column))
        elif agg.kind is AggKind.MEAN:
            add(Primitive("csum", agg.column))
            add(_mean_count(dataset, agg.column))
        else:
            add(Primitive("quantile", agg.column, agg.q))
    return tuple(out)


def _mean_count(dataset: Dataset, column: str | None) -> Primitive:
    """The denominator of a mean: all rows, or the non-NULL values of a nullable column."""
    assert column is not None
    return Primitive("nonnull", column) if dataset.column(column).nullable else Primitive("rows")


def mean_count_id(dataset: Dataset, column: str | None) -> str:
    return _mean_count(dataset, column).id


def plan_query(spec: QuerySpec, dataset: Dataset) -> Plan:
    """Build the push-down statement and the cell layout of ``spec``."""
    if not dataset.privacy_unit or not dataset.max_rows_per_unit:
        raise InternalError(f"Dataset {dataset.id!r} has no privacy unit; the parser should have refused it.")
    table = dataset_table(dataset, sa.MetaData())
    k = dataset.max_rows_per_unit
    keys = tuple(
        KeyPlan(
            name=key.name,
            column=key.column,
            binned=key.binned,
            values=key_values(dataset, dataset.column(key.column), key.binned, "GROUP BY"),
            column_type=dataset.column(key.column).type,
        )
        for key in spec.keys
    )
    primitives = _primitives(spec, dataset)

    value_columns = sorted(
        {
            p.column
            for p in primitives
            if p.kind in ("sum", "csum", "nonnull", "quantile") and p.column is not None
        }
    )
    fixed = {c: fixed_point(dataset, dataset.column(c), "SELECT") for c in value_columns}
    candidates = {
        p.column: quantile_candidates(dataset, dataset.column(p.column), fixed[p.column])
        for p in primitives
        if p.kind == "quantile" and p.column is not None
    }

    # ---- inner: bounded, filtered, clamped rows
    conditions: list[ColumnElement[bool]] = [table.c[RANK_COLUMN] <= sa.bindparam("max_rows_per_unit", k)]
    if spec.where is not None:
        conditions.insert(0, _where_sql(spec.where, table, dataset))
    inner_columns: list[ColumnElement[Any]] = []
    for i, key in enumerate(keys):
        column = table.c[key.column]
        if key.binned:
            edges = bin_edges(dataset, dataset.column(key.column), "GROUP BY")
            conditions.append(column.is_not(None))
            inner_columns.append(_bin_index(column, edges, dataset.column(key.column)).label(f"k{i}"))
        else:
            conditions.append(column.in_(list(key.values)))
            inner_columns.append(column.label(f"k{i}"))
    value_label = {c: f"v{j}" for j, c in enumerate(value_columns)}
    for c in value_columns:
        inner_columns.append(_fixed_point_sql(table.c[c], fixed[c]).label(value_label[c]))
    needs_units = any(p.kind == "distinct" for p in primitives)
    if needs_units:
        inner_columns.append(table.c[dataset.privacy_unit].label("u"))
    if not inner_columns:
        inner_columns.append(sa.literal(1, sa.Integer).label("one"))
    bounded = sa.select(*inner_columns).where(sa.and_(*conditions)).subquery("bounded")

    # ---- outer: per-cell integer aggregates
    labels: dict[str, str] = {}
    outer: list[ColumnElement[Any]] = [bounded.c[f"k{i}"] for i in range(len(keys))]

    def add(ident: str, label: str, expr: ColumnElement[Any]) -> None:
        if ident not in labels:
            labels[ident] = label
            outer.append(expr.label(label))

    for prim in primitives:
        v = bounded.c[value_label[prim.column]] if prim.column in value_label else None
        if prim.kind == "rows":
            add(prim.id, "n_rows", sa.func.count())
        elif prim.kind == "distinct":
            add(prim.id, "n_units", sa.func.count(sa.distinct(bounded.c.u)))
        elif prim.kind in ("sum", "csum", "nonnull"):
            assert v is not None and prim.column is not None
            j = value_columns.index(prim.column)
            add(f"sum:{prim.column}", f"s{j}", sa.func.sum(v))
            add(f"nonnull:{prim.column}", f"n{j}", sa.func.count(v))
        elif prim.kind == "quantile":
            assert v is not None and prim.column is not None
            j = value_columns.index(prim.column)
            for m, cand in enumerate(candidates[prim.column]):
                edge = sa.literal(cand, sa.BigInteger)
                add(f"lt:{prim.column}:{m}", f"q{j}_lt{m}", sa.func.count(sa.case((v < edge, 1))))
                add(f"gt:{prim.column}:{m}", f"q{j}_gt{m}", sa.func.count(sa.case((v > edge, 1))))
    statement = sa.select(*outer).select_from(bounded)
    if keys:
        statement = statement.group_by(*[bounded.c[f"k{i}"] for i in range(len(keys))])
    cells = tuple(itertools.product(*[k.values for k in keys])) if keys else ((),)
    return Plan(
        spec=spec,
        dataset=dataset,
        max_rows_per_unit=k,
        keys=keys,
        cells=cells,
        primitives=primitives,
        fixed=fixed,
        candidates=candidates,
        statement=statement,
        labels=labels,
    )


def _fixed_point_sql(column: sa.ColumnElement[Any], fp: FixedPoint) -> ColumnElement[Any]:
    """Clamp to the (fixed-point) bounds, then convert to an integer at the column's precision."""
    if fp.integer:
        lower, upper = (
            sa.literal(fp.lower // fp.scale, sa.BigInteger),
            sa.literal(fp.upper // fp.scale, sa.BigInteger),
        )
        clamped = sa.case((column < lower, lower), (column > upper, upper), else_=column)
        return clamped * sa.literal(fp.scale, sa.BigInteger) if fp.scale != 1 else clamped
    lower_f = sa.literal(fp.lower / fp.scale, sa.Double)
    upper_f = sa.literal(fp.upper / fp.scale, sa.Double)
    clamped_f = sa.case((column < lower_f, lower_f), (column > upper_f, upper_f), else_=column)
    scaled = clamped_f * sa.literal(float(fp.scale), sa.Double) if fp.scale != 1 else clamped_f
    return sa.cast(_RoundHalfAway(scaled), sa.BigInteger)


def _bin_index(
    column: sa.ColumnElement[Any], edges: tuple[Decimal, ...], policy: Column
) -> ColumnElement[Any]:
    """0-based bin of ``[e0, e1), …, [e(m-1), em]``; values outside the edges go to the end bins."""
    whens = [
        (column < _edge_literal(edge, policy), sa.literal(i, sa.Integer))
        for i, edge in enumerate(edges[1:-1])
    ]
    last = sa.literal(len(edges) - 2, sa.Integer)
    return sa.case(*whens, else_=last) if whens else last


def _edge_literal(edge: Decimal, policy: Column) -> ColumnElement[Any]:
    if policy.type is ColumnType.INTEGER and edge == edge.to_integral_value():
        return sa.literal(int(edge), sa.BigInteger)
    return sa.literal(float(edge), sa.Double)


def _bind_value(value: LiteralValue, policy: Column) -> Any:
    """Literal in the Python type the column's SQL type binds (numbers: int, else float)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and policy.type is ColumnType.FLOAT:
        return float(value)
    return value


def _where_sql(pred: Predicate, table: sa.Table, dataset: Dataset) -> ColumnElement[bool]:
    if isinstance(pred, And):
        return sa.and_(*[_where_sql(p, table, dataset) for p in pred.items])
    if isinstance(pred, Or):
        return sa.or_(*[_where_sql(p, table, dataset) for p in pred.items])
    if isinstance(pred, Not):
        return sa.not_(_where_sql(pred.item, table, dataset))
    column = table.c[pred.column]
    policy = dataset.column(pred.column)
    if isinstance(pred, IsNull):
        return column.is_not(None) if pred.negated else column.is_(None)
    if isinstance(pred, InList):
        values = [_bind_value(v, policy) for v in pred.values]
        return column.not_in(values) if pred.negated else column.in_(values)
    if isinstance(pred, Between):
        expr = column.between(_bind_value(pred.low, policy), _bind_value(pred.high, policy))
        return sa.not_(expr) if pred.negated else expr
    assert isinstance(pred, Compare)
    value = _bind_value(pred.value, policy)
    ops = {
        CompareOp.EQ: column.__eq__,
        CompareOp.NE: column.__ne__,
        CompareOp.LT: column.__lt__,
        CompareOp.LE: column.__le__,
        CompareOp.GT: column.__gt__,
        CompareOp.GE: column.__ge__,
    }
    result: ColumnElement[bool] = ops[pred.op](value)
    return result
