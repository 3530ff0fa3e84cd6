"""Planner: one push-down SQL statement per query (SQLAlchemy Core), and its exact integer cells.

The statement, with only bound parameters (no user text in SQL)::

    SELECT k0, …, COUNT(*) AS n_rows, SUM(v0) AS s0, COUNT(x0) AS n0, COUNT(DISTINCT u) AS n_units,
           COUNT(CASE WHEN v0 < :c THEN 1 END) AS q0_lt0, COUNT(CASE WHEN v0 > :c THEN 1 END) AS q0_gt0, …
    FROM (SELECT <key>, <bin index>, <fixed-point clamped value> AS v0, <raw value> AS x0, <unit>
          FROM <dataset>
          WHERE (<user filter>) AND _rank <= :max_rows_per_unit [AND <boolean key> IN (<domain>)]) AS bounded
    GROUP BY k0, …

* contribution bounding: ``_rank <= max_rows_per_unit`` (rank assigned per unit at ingest);
* clamping and fixed point in one ``CASE`` that evaluates the value once:
  ``CASE WHEN x < :lower THEN <lower integer> WHEN x > :upper THEN <upper integer>
  ELSE <round(x * 10**p)> END``. Integers stay integers (times ``10**p``); floats are rounded
  half away from zero, ``ROUND(y)`` on SQLite and ``FLOOR(y + 0.5)`` / ``-FLOOR(0.5 - y)`` on
  DuckDB and PostgreSQL (PostgreSQL's ``round(double)`` would break ties to even), so all
  three engines give identical integers. Only in-bounds values are rounded, so the sign branch
  is dropped when the bounds do not straddle 0, and the bound constants are the integers the
  former "clamp, then round" form gave (checked in Python when planning);
* the non-NULL count of a value is ``COUNT`` of the raw column (the clamped value is NULL
  exactly when the raw one is), so the value expression appears once in the statement;
* string and integer keys are not filtered on their domain in SQL: the groups outside the
  public domain (and ``NULL``) are dropped when the rows are read (:meth:`Plan.exact_cells`).
  The in-domain cells are the same integers as with an ``IN (<domain>)`` filter, because
  ``_rank`` bounds a unit's rows over all of its rows and every cell is aggregated on its own;
* every key of each public domain is released: missing cells are filled with 0 afterwards.

That is the statement on the raw table (:attr:`Plan.statement`). :meth:`Plan.statement_on` gives
the same cells from the derived tables built at ingest (:mod:`sandbox.dp.layout`): the bounded
table (no rank filter, ``_fx_`` integers instead of the ``CASE``) or the count/sum cube (per-cell
sums of per-group integers), whichever applies.

Only per-cell integer aggregates leave the database.
"""

from __future__ import annotations

import functools
import itertools
import math
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

from .layout import CUBE_ROWS, DerivedInfo, bounded_table, cube_count, cube_sum, cube_table, fx_column
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

__all__ = ["ExactCells", "KeyPlan", "Plan", "Primitive", "cube_eligible", "plan_query"]


class _RoundHalfAway(FunctionElement[float]):
    """Round a DOUBLE that is never below 0 to the nearest integer, ties away from zero,
    identically on every engine (``_RoundHalfAwayNonPos``: one never above 0)."""

    type = sa.Double()
    name = "round_half_away"
    inherit_cache = True
    sign = "nonneg"


class _RoundHalfAwayNonPos(_RoundHalfAway):
    inherit_cache = True
    sign = "nonpos"


def _round_default(element: _RoundHalfAway, compiler: SQLCompiler, **kw: Any) -> str:
    # FLOOR(y + 0.5) and its mirror, in IEEE doubles on DuckDB and PostgreSQL alike
    (arg,) = list(element.clauses)
    text = compiler.process(arg, **kw)
    return f"FLOOR(({text}) + 0.5)" if element.sign == "nonneg" else f"(-FLOOR(0.5 - ({text})))"


def _round_sqlite(element: _RoundHalfAway, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's round(x) is (double)(int64)(x + 0.5) for x >= 0 (mirrored for x < 0): the same rule.
    (arg,) = list(element.clauses)
    return f"ROUND({compiler.process(arg, **kw)})"


for _cls in (_RoundHalfAway, _RoundHalfAwayNonPos):
    compiles(_cls)(_round_default)
    compiles(_cls, "sqlite")(_round_sqlite)


def round_half_away(y: float) -> int:
    """The engines' rounding rule in Python (the same IEEE double arithmetic)."""
    return math.floor(y + 0.5) if y >= 0 else -math.floor(0.5 - y)


@dataclass(frozen=True)
class Primitive:
    """One exact per-cell integer vector the mechanisms add noise to.

    kinds: ``rows`` (COUNT(*)), ``nonnull`` (COUNT(x) of the raw column), ``sum`` (SUM of the
    clamped fixed-point values v), ``csum`` (the same sum centred on the bounds' integer midpoint:
    SUM(v) - centre * COUNT(x)), ``distinct`` (COUNT(DISTINCT unit)), ``quantile`` (per cell,
    scores of public candidates).
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


#: Key types matched to their public domain after the query (Python equality is SQL equality
#: for the strings and integers the warehouse returns); other keys keep ``IN (<domain>)`` in SQL.
_MATCHED_AFTER = frozenset({ColumnType.STRING, ColumnType.CATEGORY, ColumnType.INTEGER})


@dataclass(frozen=True)
class KeyPlan:
    name: str
    column: str
    binned: bool
    values: tuple[Any, ...]  # released key values (bins: labels)
    column_type: ColumnType

    @property
    def filtered_in_sql(self) -> bool:
        """Whether the statement keeps only this key's domain (``IN (<domain>)``, binned: ``NOT NULL``)."""
        return self.binned or self.column_type not in _MATCHED_AFTER

    def index_of(self) -> dict[Any, int]:
        return {self._norm(v): i for i, v in enumerate(self.values)} if not self.binned else {}

    def _norm(self, value: Any) -> Any:
        if self.column_type is ColumnType.BOOLEAN:
            return bool(value)
        if self.column_type is ColumnType.INTEGER:
            return int(value)
        return str(value)

    def lookup_key(self, value: Any) -> Any:
        """The :meth:`index_of` key a warehouse value can equal, or ``None`` when it equals none.

        Strict for keys matched after the query, so that a group lands in a cell exactly when
        ``<key> IN (<domain>)`` would have kept it (``NULL`` never does).
        """
        if value is None:
            return None
        if self.column_type is ColumnType.INTEGER:
            if isinstance(value, bool):
                return None
            if isinstance(value, int):
                return value
            if isinstance(value, float):
                return int(value) if value.is_integer() else None
            if isinstance(value, Decimal):
                return int(value) if value.is_finite() and value == value.to_integral_value() else None
            return None
        if self.column_type in (ColumnType.STRING, ColumnType.CATEGORY):
            return value if isinstance(value, str) else None
        return self._norm(value)


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
    labels: Mapping[str, str]  # primitive id or value column -> result label
    value_columns: tuple[str, ...] = ()

    @functools.cached_property
    def statement(self) -> sa.Select[Any]:
        """The statement on the raw table (rank filter, clamping ``CASE``): always correct."""
        return self._scan(None)

    def _scan(self, bounded: sa.Table | None) -> sa.Select[Any]:
        """The row-scanning statement on the raw table (None) or the bounded table."""
        statement, labels = _scan_statement(
            self.spec,
            self.dataset,
            self.keys,
            self.primitives,
            self.value_columns,
            self.fixed,
            self.candidates,
            bounded,
        )
        if labels != self.labels:
            raise InternalError("A scanning statement lays out its cells differently from the plan.")
        return statement

    def statement_on(
        self, derived: DerivedInfo | None, *, use_cube: bool = True
    ) -> tuple[str, sa.Select[Any]]:
        """The cheapest statement giving the same integers: ``("cube" | "bounded" | "raw", statement)``.

        ``derived`` is the dataset's entry of ``_dp_derived`` (:func:`sandbox.dp.derived.read_layout`);
        derived tables built for another policy version are ignored (raw table).
        """
        if derived is None or not derived.valid_for(self.dataset):
            return "raw", self.statement
        metadata = sa.MetaData()
        dims = derived.cube_dimensions
        if use_cube and dims is not None and cube_eligible(self, dims):
            return "cube", _cube_statement(self, cube_table(self.dataset, dims, metadata))
        return "bounded", self._scan(bounded_table(self.dataset, metadata))

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def execute_exact(self, conn: sa.Connection) -> ExactCells:
        """Run the statement on ``conn``; exact integer cells (tests and cross-engine checks only)."""
        return self.exact_cells(conn.execute(self.statement).all())

    def exact_cells(self, rows: Sequence[Any]) -> ExactCells:
        """Turn the statement's result rows into complete per-cell vectors (missing cells = 0).

        Groups whose key lies outside its public domain (or is ``NULL``) are dropped here: the
        statement does not filter string and integer keys on their domain (module docstring).
        """
        index = [k.index_of() for k in self.keys]
        sizes = [len(k.values) for k in self.keys]
        raw: dict[str, list[int]] = {label: [0] * self.n_cells for label in self.labels.values()}
        filled: set[int] = set()
        for row in rows:
            mapping = row._mapping if hasattr(row, "_mapping") else row
            cell: int | None = 0
            for i, key in enumerate(self.keys):
                value = mapping[f"k{i}"]
                try:
                    pos = int(value) if key.binned else index[i].get(key.lookup_key(value))
                except (KeyError, TypeError, ValueError) as err:
                    raise InternalError("The warehouse returned a key outside the public domain.") from err
                if pos is None:
                    if key.filtered_in_sql:
                        raise InternalError("The warehouse returned a key outside the public domain.")
                    cell = None  # outside the public domain: not a released cell
                    break
                if not 0 <= pos < sizes[i]:
                    raise InternalError("The warehouse returned a bin outside the declared bins.")
                assert cell is not None
                cell = cell * sizes[i] + pos
            if cell is None:
                continue
            if cell in filled:
                raise InternalError("The warehouse returned one cell twice.")
            filled.add(cell)
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

    labels = _result_labels(primitives, value_columns, candidates)
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
        labels=labels,
        value_columns=tuple(value_columns),
    )


def _result_labels(
    primitives: tuple[Primitive, ...], value_columns: Sequence[str], candidates: Mapping[str, tuple[int, ...]]
) -> dict[str, str]:
    """Result column label of each primitive part, in statement order (every statement form
    uses these labels, so :meth:`Plan.exact_cells` reads all of them alike)."""
    labels: dict[str, str] = {}
    for prim in primitives:
        j = value_columns.index(prim.column) if prim.column in value_columns else -1
        if prim.kind == "rows":
            labels.setdefault(prim.id, "n_rows")
        elif prim.kind == "distinct":
            labels.setdefault(prim.id, "n_units")
        elif prim.kind in ("sum", "csum", "nonnull"):
            if prim.kind != "nonnull":
                labels.setdefault(f"sum:{prim.column}", f"s{j}")
            if prim.kind != "sum":
                labels.setdefault(f"nonnull:{prim.column}", f"n{j}")
        elif prim.kind == "quantile":
            assert prim.column is not None
            for m in range(len(candidates[prim.column])):
                labels.setdefault(f"lt:{prim.column}:{m}", f"q{j}_lt{m}")
                labels.setdefault(f"gt:{prim.column}:{m}", f"q{j}_gt{m}")
    return labels


def _scan_statement(
    spec: QuerySpec,
    dataset: Dataset,
    keys: tuple[KeyPlan, ...],
    primitives: tuple[Primitive, ...],
    value_columns: Sequence[str],
    fixed: Mapping[str, FixedPoint],
    candidates: Mapping[str, tuple[int, ...]],
    bounded: sa.Table | None,
) -> tuple[sa.Select[Any], dict[str, str]]:
    """The row-scanning statement: on the raw table (``bounded`` is None: rank filter, clamping
    ``CASE``) or on the derived bounded table (rows already within the cap, ``_fx_`` integers)."""
    table = bounded if bounded is not None else dataset_table(dataset, sa.MetaData())

    # ---- inner: bounded, filtered, clamped rows
    conditions: list[ColumnElement[bool]] = []
    if bounded is None:
        conditions.append(
            table.c[RANK_COLUMN] <= sa.bindparam("max_rows_per_unit", dataset.max_rows_per_unit)
        )
    if spec.where is not None:
        conditions.insert(0, _where_sql(spec.where, table, dataset))
    inner_columns: list[ColumnElement[Any]] = []
    for i, key in enumerate(keys):
        column = table.c[key.column]
        policy = dataset.column(key.column)
        if key.binned:
            edges = bin_edges(dataset, policy, "GROUP BY")
            conditions.append(column.is_not(None))  # a NULL would fall into the last bin
            inner_columns.append(_bin_index(column, edges, policy).label(f"k{i}"))
        else:
            if key.filtered_in_sql:
                conditions.append(column.in_(list(key.values)))
            # else: groups outside the domain are dropped by Plan.exact_cells
            inner_columns.append(column.label(f"k{i}"))
    # v<j>: clamped fixed-point value (sums, quantiles); x<j>: a column that is NULL exactly when
    # the value is (non-NULL counts): the raw column, or on the bounded table the _fx_ integer
    summed = {p.column for p in primitives if p.kind in ("sum", "csum", "quantile")}
    counted = {p.column for p in primitives if p.kind in ("csum", "nonnull")}
    for j, c in enumerate(value_columns):
        if bounded is not None:
            value: ColumnElement[Any] = table.c[fx_column(c)]
            raw: ColumnElement[Any] = value
        else:
            value, raw = _fixed_point_sql(table.c[c], fixed[c]), table.c[c]
        if c in summed:
            inner_columns.append(value.label(f"v{j}"))
        if c in counted and not (bounded is not None and c in summed):
            inner_columns.append(raw.label(f"x{j}"))
    needs_units = any(p.kind == "distinct" for p in primitives)
    if needs_units:
        assert dataset.privacy_unit is not None
        inner_columns.append(table.c[dataset.privacy_unit].label("u"))
    if not inner_columns:
        inner_columns.append(sa.literal(1, sa.Integer).label("one"))
    inner = sa.select(*inner_columns).select_from(table)
    if conditions:
        inner = inner.where(sa.and_(*conditions))
    rows = inner.subquery("bounded")

    # ---- outer: per-cell integer aggregates
    labels: dict[str, str] = {}
    outer: list[ColumnElement[Any]] = [rows.c[f"k{i}"] for i in range(len(keys))]

    def add(ident: str, label: str, expr: ColumnElement[Any]) -> None:
        if ident not in labels:
            labels[ident] = label
            outer.append(expr.label(label))

    for prim in primitives:
        j = value_columns.index(prim.column) if prim.column in value_columns else -1
        if prim.kind == "rows":
            add(prim.id, "n_rows", sa.func.count())
        elif prim.kind == "distinct":
            add(prim.id, "n_units", sa.func.count(sa.distinct(rows.c.u)))
        elif prim.kind in ("sum", "csum", "nonnull"):
            assert prim.column is not None
            if prim.kind != "nonnull":
                add(f"sum:{prim.column}", f"s{j}", sa.func.sum(rows.c[f"v{j}"]))
            if prim.kind != "sum":
                # the clamped value is NULL exactly when the raw one is: count either
                counted_col = rows.c[f"x{j}"] if f"x{j}" in rows.c else rows.c[f"v{j}"]
                add(f"nonnull:{prim.column}", f"n{j}", sa.func.count(counted_col))
        elif prim.kind == "quantile":
            assert prim.column is not None
            v = rows.c[f"v{j}"]
            for m, cand in enumerate(candidates[prim.column]):
                edge = sa.literal(cand, sa.BigInteger)
                add(f"lt:{prim.column}:{m}", f"q{j}_lt{m}", sa.func.count(sa.case((v < edge, 1))))
                add(f"gt:{prim.column}:{m}", f"q{j}_gt{m}", sa.func.count(sa.case((v > edge, 1))))
    statement = sa.select(*outer).select_from(rows)
    if keys:
        statement = statement.group_by(*[rows.c[f"k{i}"] for i in range(len(keys))])
    return statement, labels


def cube_eligible(plan: Plan, dimensions: Sequence[str]) -> bool:
    """Whether the cube over ``dimensions`` answers ``plan``: every key is a plain (non-binned)
    dimension, every filtered column a dimension, every statistic a count, sum or mean."""
    dims = set(dimensions)
    if any(p.kind not in ("rows", "sum", "csum", "nonnull") for p in plan.primitives):
        return False
    if any(k.binned or k.column not in dims for k in plan.keys):
        return False
    return plan.spec.where is None or _where_columns(plan.spec.where) <= dims


def _where_columns(pred: Predicate) -> set[str]:
    if isinstance(pred, And | Or):
        return set().union(*[_where_columns(p) for p in pred.items])
    if isinstance(pred, Not):
        return _where_columns(pred.item)
    return {pred.column}


def _cube_statement(plan: Plan, cube: sa.Table) -> sa.Select[Any]:
    """Sum the cube's per-group integers: same labels and cells as the scanning statement.

    Each cube row is one combination of dimension values, so a filter on dimensions keeps a
    cube row exactly when it would keep each of the rows summed into it.
    """
    dataset = plan.dataset
    conditions: list[ColumnElement[bool]] = []
    if plan.spec.where is not None:
        conditions.append(_where_sql(plan.spec.where, cube, dataset))
    keys: list[ColumnElement[Any]] = []
    for i, key in enumerate(plan.keys):
        column = cube.c[key.column]
        if key.filtered_in_sql:
            conditions.append(column.in_(list(key.values)))
        keys.append(column.label(f"k{i}"))
    by_label: dict[str, ColumnElement[Any]] = {}
    for ident, label in plan.labels.items():
        kind, _, col = ident.partition(":")
        if kind == "rows":
            expr = sa.func.sum(cube.c[CUBE_ROWS])
        elif kind == "sum":
            expr = sa.func.sum(cube.c[cube_sum(col)])
        elif kind == "nonnull":
            expr = sa.func.sum(cube.c[cube_count(col)])
        else:
            raise InternalError(f"The cube cannot serve the statistic {ident!r}.")
        by_label[label] = expr.label(label)
    statement = sa.select(*keys, *by_label.values()).select_from(cube)
    if conditions:
        statement = statement.where(sa.and_(*conditions))
    if plan.keys:
        statement = statement.group_by(*[cube.c[k.column] for k in plan.keys])
    return statement


def _fixed_point_sql(column: sa.ColumnElement[Any], fp: FixedPoint) -> ColumnElement[Any]:
    """Clamp to the (fixed-point) bounds and convert to an integer at the column's precision.

    One ``CASE`` on the raw value: out-of-bounds values become the integer bounds, in-bounds
    values are scaled (and rounded), so the value is read once and rounding (and its sign
    branch) runs only on in-bounds values. Equal, value by value, to clamping first
    (``CASE WHEN x < L THEN L WHEN x > U THEN U ELSE x END``) and converting afterwards.
    """
    if fp.integer:
        lo, hi = fp.lower // fp.scale, fp.upper // fp.scale
        scaled = column * sa.literal(fp.scale, sa.BigInteger) if fp.scale != 1 else column
        return sa.case(
            (column < sa.literal(lo, sa.BigInteger), sa.literal(lo * fp.scale, sa.BigInteger)),
            (column > sa.literal(hi, sa.BigInteger), sa.literal(hi * fp.scale, sa.BigInteger)),
            else_=scaled,
        )
    lower_f, upper_f = fp.lower / fp.scale, fp.upper / fp.scale
    # What "clamp, then round" gives for a value clamped to a bound, in the engines' arithmetic:
    # the bounds themselves unless they are too large for doubles to hold them exactly.
    ends = [round_half_away(bound * float(fp.scale)) for bound in (lower_f, upper_f)]
    if ends != [fp.lower, fp.upper]:
        raise InternalError(f"Bounds of {fp.column!r} are too large for exact fixed-point arithmetic.")
    y = column * sa.literal(float(fp.scale), sa.Double) if fp.scale != 1 else column
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = [
        (column < sa.literal(lower_f, sa.Double), sa.literal(fp.lower, sa.BigInteger)),
        (column > sa.literal(upper_f, sa.Double), sa.literal(fp.upper, sa.BigInteger)),
    ]
    # Past those branches lower_f <= x <= upper_f: the sign of y = x * 10**p is that of x
    # (10**p >= 1, so no product underflows to 0) and is known when the bounds do not straddle 0.
    if fp.lower >= 0:
        return sa.case(*whens, else_=sa.cast(_RoundHalfAway(y), sa.BigInteger))
    if fp.upper <= 0:
        return sa.case(*whens, else_=sa.cast(_RoundHalfAwayNonPos(y), sa.BigInteger))
    whens.append((column < sa.literal(0.0, sa.Double), sa.cast(_RoundHalfAwayNonPos(y), sa.BigInteger)))
    return sa.case(*whens, else_=sa.cast(_RoundHalfAway(y), sa.BigInteger))


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
