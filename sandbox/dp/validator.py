"""Validation of a sqlglot tree against the DP subset and the dataset's policy -> QuerySpec.

A whitelist: every node must be one this module knows in the place it appears, so anything
else is rejected (``InvalidQuery`` subclasses with stable codes). Common mistakes are
recognised first, so their error names the construct (a join gets ``query_join``, not a
generic message). A dataset whose policy sets a ``query_window`` also needs a WHERE that keeps
within it (:mod:`sandbox.dp.window`, checked on the finished spec). Messages quote only the
query and public metadata. Used by the parser (``parse_sql``) and the builder (``Query.spec``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlglot.expressions as exp

from sandbox.errors import (
    InternalError,
    InvalidQuery,
    QueryBareColumn,
    QueryCountDistinct,
    QueryDistinct,
    QueryDuplicateName,
    QueryExpression,
    QueryGroupBy,
    QueryHaving,
    QueryIdentifierColumn,
    QueryJoin,
    QueryLimit,
    QueryMinMax,
    QueryNoAggregate,
    QueryNoPrivacyUnit,
    QueryNotSelect,
    QueryOrderBy,
    QueryQuantile,
    QuerySelectStar,
    QuerySubquery,
    QuerySyntax,
    QueryTooManyCells,
    QueryUnion,
    QueryUnknownColumn,
    QueryUnknownDataset,
    QueryUnknownFunction,
    QueryUnsupportedClause,
    QueryWindow,
    SandboxError,
    UnknownDataset,
)
from sandbox.policy.models import Column, Dataset

from ._ast import _ident, _name, _set_args, _snippet, _unparen
from .schema import MAX_CELLS, CatalogLike, fixed_point, is_identifier, key_values
from .spec import (
    AggKind,
    Aggregate,
    Key,
    OrderItem,
    QuerySpec,
)
from .where import WhereMixin
from .window import check_query_window

__all__ = ["validate_ast"]

MAX_LIMIT = 1_000_000_000

_ALLOWED_CLAUSES = frozenset({"expressions", "from_", "where", "group", "order", "limit"})
_CLAUSE_ERRORS: dict[str, tuple[type[InvalidQuery], str]] = {
    "with_": (QuerySubquery, "WITH"),
    "joins": (QueryJoin, "JOIN"),
    "laterals": (QueryJoin, "LATERAL"),
    "having": (QueryHaving, "HAVING"),
    "distinct": (QueryDistinct, "SELECT DISTINCT"),
    "offset": (QueryLimit, "OFFSET"),
    "qualify": (QueryWindow, "QUALIFY"),
    "windows": (QueryWindow, "WINDOW"),
    "into": (QueryNotSelect, "SELECT INTO"),
}


def validate_ast(tree: exp.Expr, catalog: CatalogLike) -> QuerySpec:
    """Validate a sqlglot tree (from the parser or the builder) into a :class:`QuerySpec`."""
    try:
        return _Validator(tree, catalog).run()
    except SandboxError:
        raise
    except RecursionError:
        raise QuerySyntax("The query is nested too deeply.") from None
    except Exception as err:
        raise InternalError("The query validator failed unexpectedly.") from err


@dataclass
class _Item:
    position: int
    expr: exp.Expr
    alias: str | None
    key: tuple[str, bool] | None = None  # (column, binned)
    agg: Aggregate | None = None
    name: str = ""


class _Validator(WhereMixin):
    def __init__(self, tree: exp.Expr, catalog: CatalogLike) -> None:
        self.tree = tree
        self.catalog = catalog
        self.dataset: Dataset
        self.table_names: set[str] = set()

    # ---------------------------------------------------------------- driver

    def run(self) -> QuerySpec:
        select = self._structure(self.tree)
        self.dataset = self._from(select)
        items = self._select_items(select)
        keys = self._group_by(select, items)
        aggregates = tuple(i.agg for i in items if i.agg is not None)
        if not aggregates:
            raise QueryNoAggregate("SELECT has no aggregate; a DP query releases statistics per group.")
        names = [i.name for i in items]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise QueryDuplicateName(f"SELECT: the output name {name!r} is used twice.")
            seen.add(name)
        self._check_cells(keys)
        where = self._where(select)
        order = self._order(select, items)
        limit = self._limit(select)
        spec = QuerySpec(
            dataset=self.dataset.id,
            keys=keys,
            aggregates=aggregates,
            outputs=tuple(names),
            where=where,
            order_by=order,
            limit=limit,
        )
        check_query_window(spec, self.dataset)  # on the spec: same rule for SQL and the builder
        return spec

    # ---------------------------------------------------------------- structure

    def _structure(self, tree: exp.Expr) -> exp.Select:
        if isinstance(tree, exp.SetOperation):
            raise QueryUnion(f"{tree.key.upper()} combines several queries; send one SELECT.")
        if isinstance(tree, exp.Subquery):
            raise QuerySubquery("The query is a parenthesised subquery; send a plain SELECT.")
        if not isinstance(tree, exp.Select):
            raise QueryNotSelect(f"Only SELECT is allowed; this statement is {tree.key.upper()}.")
        nodes = list(tree.walk())
        if tree.args.get("with_"):
            raise QuerySubquery("WITH (common table expressions) is not supported.")
        for node in nodes:
            if isinstance(node, exp.SetOperation):
                raise QueryUnion(f"{node.key.upper()} is not supported.")
        for node in nodes:
            if node is not tree and isinstance(node, exp.Query | exp.Subquery | exp.Exists):
                raise QuerySubquery(f"Subqueries are not supported: {_snippet(node)!r}.")
        for node in nodes:
            if isinstance(node, exp.Join | exp.Lateral):
                raise QueryJoin(f"JOIN is not supported: {_snippet(node)!r}.")
        for node in nodes:
            if isinstance(node, exp.Window | exp.WindowSpec):
                raise QueryWindow(f"Window functions are not supported: {_snippet(node)!r}.")
        for node in nodes:
            if isinstance(node, exp.Min | exp.Max):
                raise QueryMinMax(
                    f"{node.key.upper()} is not supported: {_snippet(node)!r} would reveal one record."
                )
        for arg in sorted(_set_args(tree) - _ALLOWED_CLAUSES):
            cls, clause = _CLAUSE_ERRORS.get(arg, (QueryUnsupportedClause, arg.rstrip("_").upper()))
            raise cls(f"{clause} is not supported.")
        return tree

    # ---------------------------------------------------------------- FROM

    def _from(self, select: exp.Select) -> Dataset:
        from_ = select.args.get("from_")
        if not isinstance(from_, exp.From):
            raise QuerySyntax("The query has no FROM <dataset> clause.")
        table = from_.this
        if isinstance(table, exp.Subquery | exp.Query):
            raise QuerySubquery("FROM takes a dataset id, not a subquery.")
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise QueryUnknownDataset(f"FROM takes one dataset id, got {_snippet(table)!r}.")
        extra = _set_args(table) - {"this", "alias"}
        if "joins" in extra or "laterals" in extra:
            raise QueryJoin("JOIN is not supported.")
        if "db" in extra or "catalog" in extra:
            raise QueryUnknownDataset(f"FROM {_snippet(table)}: use the bare dataset id, without a schema.")
        if extra:
            raise QueryUnsupportedClause(f"FROM {_snippet(table)}: table modifiers are not supported.")
        name = _ident(table.this, "FROM")
        try:
            dataset = self.catalog.dataset(name)
        except UnknownDataset:
            raise QueryUnknownDataset(f"FROM: unknown dataset {_name(name)!r}.") from None
        alias = table.args.get("alias")
        self.table_names = {dataset.id}
        if alias is not None:
            if not isinstance(alias, exp.TableAlias) or _set_args(alias) != {"this"}:
                raise QueryUnsupportedClause(f"FROM: the alias {_snippet(alias)!r} is not supported.")
            self.table_names.add(_ident(alias.this, "FROM alias"))
        if not dataset.privacy_unit or not dataset.max_rows_per_unit:
            raise QueryNoPrivacyUnit(
                f"FROM: dataset {dataset.id!r} has no privacy unit (open data); DP queries do not apply."
            )
        return dataset

    def _column(self, node: Any, use: str) -> Column:
        node = _unparen(node)
        if not isinstance(node, exp.Column):
            raise QueryExpression(f"{use}: expected a column, got {_snippet(node)!r}.")
        if isinstance(node.this, exp.Star):
            raise QuerySelectStar(
                f"{use}: {_snippet(node)} is not supported; name public keys and aggregates."
            )
        extra = _set_args(node) - {"this", "table"}
        if extra:
            raise QueryUnknownColumn(f"{use}: {_snippet(node)!r} is not a column of the dataset.")
        table = node.args.get("table")
        if table is not None and _ident(table, use) not in self.table_names:
            raise QueryUnknownColumn(f"{use}: {_snippet(node)!r} refers to another table.")
        name = _ident(node.this, use)
        try:
            return self.dataset.column(name)
        except KeyError:
            raise QueryUnknownColumn(
                f"{use}: unknown column {_name(name)!r} in dataset {self.dataset.id!r}."
            ) from None

    def _not_identifier(self, column: Column, use: str) -> None:
        if is_identifier(self.dataset, column):
            raise QueryIdentifierColumn(
                f"{use}: {column.name!r} is an identifier column of {self.dataset.id!r} "
                "and cannot be used here."
            )

    # ---------------------------------------------------------------- SELECT

    def _select_items(self, select: exp.Select) -> list[_Item]:
        items: list[_Item] = []
        expressions = select.args.get("expressions") or []
        if not expressions:
            raise QuerySyntax("SELECT lists nothing.")
        for position, raw in enumerate(expressions, start=1):
            alias: str | None = None
            expr = raw
            if isinstance(raw, exp.Alias):
                if _set_args(raw) != {"this", "alias"}:
                    raise QueryExpression(f"SELECT item {position}: unsupported alias {_snippet(raw)!r}.")
                alias = _ident(raw.args["alias"], f"SELECT item {position}")
                expr = raw.this
            expr = _unparen(expr)
            item = _Item(position=position, expr=expr, alias=alias)
            self._classify(item)
            items.append(item)
        return items

    def _classify(self, item: _Item) -> None:
        expr, use = item.expr, f"SELECT {_snippet(item.expr)}"
        if isinstance(expr, exp.Star) or (isinstance(expr, exp.Column) and isinstance(expr.this, exp.Star)):
            raise QuerySelectStar("SELECT * is not supported; name public keys and aggregates.")
        if isinstance(expr, exp.Column):
            column = self._column(expr, use)
            self._not_identifier(column, use)
            item.key = (column.name, False)
            item.name = item.alias or column.name
            return
        if self._is_bin(expr):
            column = self._bin_column(expr, use)
            item.key = (column.name, True)
            item.name = item.alias or f"bin_{column.name}"
            return
        agg = self._aggregate(expr, use)
        item.agg = Aggregate(kind=agg.kind, name=item.alias or agg.name, column=agg.column, q=agg.q)
        item.name = item.agg.name

    @staticmethod
    def _is_bin(expr: exp.Expr) -> bool:
        return isinstance(expr, exp.Anonymous) and isinstance(expr.this, str) and expr.this.upper() == "BIN"

    def _bin_column(self, expr: exp.Expr, use: str) -> Column:
        args = expr.args.get("expressions") or []
        if _set_args(expr) - {"this", "expressions"} or len(args) != 1:
            raise QueryExpression(f"{use}: BIN takes exactly one column.")
        column = self._column(args[0], use)
        self._not_identifier(column, use)
        key_values(self.dataset, column, True, use)  # validates the bins
        return column

    def _aggregate(self, expr: exp.Expr, use: str) -> Aggregate:
        if isinstance(expr, exp.Count):
            return self._count(expr, use)
        if isinstance(expr, exp.Sum | exp.Avg):
            kind = AggKind.SUM if isinstance(expr, exp.Sum) else AggKind.MEAN
            column = self._numeric_argument(expr, use)
            prefix = "sum" if kind is AggKind.SUM else "avg"
            return Aggregate(kind=kind, name=f"{prefix}_{column.name}", column=column.name)
        if isinstance(expr, exp.Median):
            column = self._numeric_argument(expr, use)
            return self._quantile(column, Decimal("0.5"))
        if isinstance(expr, exp.Quantile):
            if _set_args(expr) != {"this", "quantile"}:
                raise QueryQuantile(f"{use}: write QUANTILE(col, q).")
            column = self._numeric_argument(expr, use)
            return self._quantile(column, self._q(expr.args["quantile"], use))
        if isinstance(expr, exp.Anonymous) and str(expr.this).upper() in ("QUANTILE_CONT", "PERCENTILE"):
            raise QueryQuantile(
                f"{use}: write QUANTILE(col, q) or PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col)."
            )
        if isinstance(expr, exp.WithinGroup):
            return self._within_group(expr, use)
        if isinstance(expr, exp.PercentileCont | exp.PercentileDisc):
            raise QueryQuantile(f"{use}: write PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY col).")
        if isinstance(expr, exp.Filter):
            raise QueryUnsupportedClause(f"{use}: FILTER (WHERE …) is not supported; use the query's WHERE.")
        if isinstance(expr, exp.Anonymous):
            raise QueryUnknownFunction(f"{use}: unknown function {_name(str(expr.this))!r}.")
        if isinstance(expr, exp.Cast | exp.TryCast):
            raise QueryExpression(f"{use}: casts are not supported in SELECT.")
        if isinstance(expr, exp.Func):
            raise QueryUnknownFunction(f"{use}: the function {expr.key.upper()} is not supported.")
        raise QueryExpression(f"{use}: only public keys and aggregates of plain columns can be selected.")

    def _count(self, expr: exp.Count, use: str) -> Aggregate:
        if _set_args(expr) - {"this", "big_int"}:
            raise QueryCountDistinct(f"{use}: COUNT takes * or DISTINCT <privacy unit>.")
        arg = expr.args.get("this")
        if isinstance(arg, exp.Star):
            return Aggregate(kind=AggKind.COUNT, name="count")
        if isinstance(arg, exp.Distinct):
            targets = arg.args.get("expressions") or []
            if _set_args(arg) != {"expressions"} or len(targets) != 1:
                raise QueryCountDistinct(f"{use}: COUNT(DISTINCT …) takes exactly the privacy unit.")
            column = self._column(targets[0], use)
            if column.name != self.dataset.privacy_unit:
                raise QueryCountDistinct(
                    f"{use}: COUNT(DISTINCT {column.name}) is not supported; only the privacy unit "
                    f"{self.dataset.privacy_unit!r} can be counted distinctly."
                )
            return Aggregate(
                kind=AggKind.COUNT_DISTINCT, name=f"count_distinct_{column.name}", column=column.name
            )
        if isinstance(_unparen(arg), exp.Column):
            column = self._column(arg, use)
            self._not_identifier(column, use)
            raise QueryCountDistinct(
                f"{use}: COUNT(column) is not supported; use COUNT(*) with WHERE {column.name} IS NOT NULL."
            )
        raise QueryCountDistinct(f"{use}: COUNT takes * or DISTINCT <privacy unit>.")

    def _numeric_argument(self, expr: exp.Expr, use: str) -> Column:
        if _set_args(expr) - {"this", "quantile"}:
            raise QueryExpression(f"{use}: the aggregate takes one column.")
        arg = expr.args.get("this")
        if isinstance(arg, exp.Distinct):
            raise QueryDistinct(f"{use}: DISTINCT inside {expr.key.upper()} is not supported.")
        if not isinstance(_unparen(arg), exp.Column):
            raise QueryExpression(f"{use}: the aggregate takes a plain column, not an expression.")
        column = self._column(arg, use)
        self._not_identifier(column, use)
        fixed_point(self.dataset, column, use)  # numeric with bounds
        return column

    def _q(self, node: Any, use: str) -> Decimal:
        node = _unparen(node)
        if not isinstance(node, exp.Literal) or node.is_string:
            raise QueryQuantile(f"{use}: the quantile must be a number literal.")
        try:
            q = Decimal(str(node.this))
        except InvalidOperation:
            raise QueryQuantile(f"{use}: the quantile must be a number literal.") from None
        if not q.is_finite() or not (0 < q < 1) or q.as_tuple().exponent < -4:  # type: ignore[operator]
            raise QueryQuantile(
                f"{use}: the quantile must lie strictly between 0 and 1, with at most 4 decimals."
            )
        return q.normalize()

    def _quantile(self, column: Column, q: Decimal) -> Aggregate:
        if q == Decimal("0.5"):
            name = f"median_{column.name}"
        else:
            percent = format((q * 100).normalize(), "f").replace(".", "_")
            name = f"p{percent}_{column.name}"
        return Aggregate(kind=AggKind.QUANTILE, name=name, column=column.name, q=q)

    def _within_group(self, expr: exp.WithinGroup, use: str) -> Aggregate:
        func, order = expr.this, expr.args.get("expression")
        if isinstance(func, exp.PercentileDisc):
            raise QueryQuantile(f"{use}: PERCENTILE_DISC is not supported; use PERCENTILE_CONT.")
        if not isinstance(func, exp.PercentileCont) or _set_args(func) != {"this"}:
            raise QueryQuantile(f"{use}: WITHIN GROUP is supported only with PERCENTILE_CONT(q).")
        q = self._q(func.this, use)
        if not isinstance(order, exp.Order) or _set_args(order) != {"expressions"}:
            raise QueryQuantile(f"{use}: write WITHIN GROUP (ORDER BY col).")
        ordered = order.args["expressions"]
        if len(ordered) != 1 or not isinstance(ordered[0], exp.Ordered):
            raise QueryQuantile(f"{use}: WITHIN GROUP orders by exactly one column.")
        if _set_args(ordered[0]) - {"this", "desc", "nulls_first"}:
            raise QueryQuantile(f"{use}: WITHIN GROUP (ORDER BY col [ASC|DESC]) only.")
        target = ordered[0].this
        if not isinstance(_unparen(target), exp.Column):
            raise QueryExpression(f"{use}: the aggregate takes a plain column, not an expression.")
        column = self._column(target, use)
        self._not_identifier(column, use)
        fixed_point(self.dataset, column, use)
        if ordered[0].args.get("desc"):
            q = (Decimal(1) - q).normalize()
        return self._quantile(column, q)

    # ---------------------------------------------------------------- GROUP BY

    def _group_by(self, select: exp.Select, items: list[_Item]) -> tuple[Key, ...]:
        grouped: list[tuple[str, bool]] = []
        group = select.args.get("group")
        if group is not None:
            if _set_args(group) != {"expressions"}:
                raise QueryGroupBy("GROUP BY ROLLUP/CUBE/GROUPING SETS/ALL is not supported.")
            if group.args.get("all") is not None:  # sqlglot: True = GROUP BY ALL, False = GROUP BY DISTINCT
                raise QueryGroupBy("GROUP BY ALL/DISTINCT is not supported.")
            for node in group.args["expressions"]:
                key = self._group_item(node, items)
                if key not in grouped:
                    grouped.append(key)
        selected: list[_Item] = [i for i in items if i.key is not None]
        seen: set[tuple[str, bool]] = set()
        for item in selected:
            assert item.key is not None
            if item.key not in grouped:
                raise QueryBareColumn(
                    f"SELECT {_snippet(item.expr)}: the column is neither aggregated nor listed in GROUP BY."
                )
            if item.key in seen:
                raise QueryGroupBy(f"SELECT {_snippet(item.expr)}: the grouping key is selected twice.")
            seen.add(item.key)
        for key in grouped:
            if key not in seen:
                label = f"BIN({key[0]})" if key[1] else key[0]
                raise QueryGroupBy(f"GROUP BY {label}: every grouping key must also be selected.")
        keys: list[Key] = []
        for item in selected:
            assert item.key is not None
            column = self.dataset.column(item.key[0])
            key_values(self.dataset, column, item.key[1], f"GROUP BY {_snippet(item.expr)}")
            keys.append(Key(column=item.key[0], name=item.name, binned=item.key[1]))
        return tuple(keys)

    def _group_item(self, node: exp.Expr, items: list[_Item]) -> tuple[str, bool]:
        node = _unparen(node)
        use = f"GROUP BY {_snippet(node)}"
        if isinstance(node, exp.Literal) and not node.is_string:
            position = self._position(node, len(items), use, QueryGroupBy)
            item = items[position - 1]
            if item.key is None:
                raise QueryGroupBy(f"{use}: position {position} is an aggregate, not a key.")
            return item.key
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            name = _ident(node.this, use) if isinstance(node.this, exp.Identifier) else ""
            if node.args.get("table") is None and name and name not in self.dataset.column_names:
                for item in items:
                    if item.alias == name:
                        if item.key is None:
                            raise QueryGroupBy(f"{use}: {name!r} is an aggregate, not a key.")
                        return item.key
            column = self._column(node, use)
            self._not_identifier(column, use)
            return (column.name, False)
        if self._is_bin(node):
            return (self._bin_column(node, use).name, True)
        raise QueryGroupBy(f"{use}: only public key columns or BIN(col) can be grouped by.")

    @staticmethod
    def _position(node: exp.Literal, count: int, use: str, error: type[InvalidQuery]) -> int:
        text = str(node.this)
        if not text.isdigit() or not 1 <= int(text) <= count:
            raise error(f"{use}: a position must be an integer between 1 and {count}.")
        return int(text)

    def _check_cells(self, keys: tuple[Key, ...]) -> None:
        cells = 1
        for key in keys:
            cells *= len(key_values(self.dataset, self.dataset.column(key.column), key.binned, "GROUP BY"))
        if cells > MAX_CELLS:
            raise QueryTooManyCells(
                f"GROUP BY asks for {cells} cells (the product of the key domains); at most {MAX_CELLS}."
            )

    # ---------------------------------------------------------------- ORDER BY, LIMIT

    def _order(self, select: exp.Select, items: list[_Item]) -> tuple[OrderItem, ...]:
        order = select.args.get("order")
        if order is None:
            return ()
        if not isinstance(order, exp.Order) or _set_args(order) != {"expressions"}:
            raise QueryOrderBy("ORDER BY: unsupported form.")
        out: list[OrderItem] = []
        for ordered in order.args["expressions"]:
            use = f"ORDER BY {_snippet(ordered)}"
            if not isinstance(ordered, exp.Ordered) or _set_args(ordered) - {"this", "desc", "nulls_first"}:
                raise QueryOrderBy(f"{use}: write ORDER BY <output> [ASC|DESC].")
            name = self._order_target(_unparen(ordered.this), items, use)
            if all(o.name != name for o in out):
                out.append(OrderItem(name=name, descending=bool(ordered.args.get("desc"))))
        return tuple(out)

    def _order_target(self, node: exp.Expr, items: list[_Item], use: str) -> str:
        if isinstance(node, exp.Literal) and not node.is_string:
            return items[self._position(node, len(items), use, QueryOrderBy) - 1].name
        if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
            name = _ident(node.this, use)
            table = node.args.get("table")
            if table is None or _ident(table, use) in self.table_names:
                for item in items:
                    if item.name == name:
                        return item.name
                for item in items:
                    if item.key == (name, False):
                        return item.name
        for item in items:
            if item.expr == node:
                return item.name
        raise QueryOrderBy(f"{use}: ORDER BY must name a selected output.")

    def _limit(self, select: exp.Select) -> int | None:
        limit = select.args.get("limit")
        if limit is None:
            return None
        if not isinstance(limit, exp.Limit) or _set_args(limit) != {"expression"}:
            raise QueryLimit("LIMIT: write LIMIT n (no OFFSET, FETCH or percentages).")
        node = _unparen(limit.expression)
        text = str(node.this) if isinstance(node, exp.Literal) and not node.is_string else ""
        if not text.isdigit() or int(text) > MAX_LIMIT:
            raise QueryLimit(f"LIMIT {_snippet(node)}: LIMIT takes a non-negative integer literal.")
        return int(text)
