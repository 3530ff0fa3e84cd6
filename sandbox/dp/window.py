"""Per-dataset query windows (policy ``query_window``), checked on the validated QuerySpec.

A dataset whose policy sets ``query_window: {column: c, max_days: n}`` answers only queries
whose WHERE restricts ``c`` to at most ``n`` calendar days (``transit_trips``: ``txn_time``,
31 days; its ``max_rows_per_unit`` 310 is 10 trips per card per day x 31 days). The rule,
also in docs/dp.md ("Query windows"):

* Only **top-level AND conjuncts** of WHERE count (the whole WHERE if it is a single
  condition): ``c >= v``, ``c > v``, ``c < v``, ``c <= v``, ``c = v``, ``c BETWEEN a AND b``
  and ``c IN (...)`` (its smallest and largest value). A condition inside ``OR`` or under
  ``NOT`` (also ``NOT BETWEEN``, ``NOT IN``, ``<>``) bounds nothing: some rows it lets through
  may lie anywhere in time. Several bounds on one side: the tightest one counts.
* The window is counted in **calendar days of the column's own values** (no time zones),
  from the first day an admitted value can fall on to the last, both included:

  ==================  ==========================  ========================================
  condition           date column                 timestamp column
  ==================  ==========================  ========================================
  ``>= v``            first day ``v``             first day ``date(v)``
  ``> v``             first day ``v + 1``         first day ``date(v)`` (conservative: the
                                                  instant after ``v`` is on that day unless
                                                  ``v`` ends the day, and no precision is
                                                  assumed)
  ``<= v``, ``= v``   last day ``v``              last day ``date(v)`` (so ``<= '2018-02-01'``
                                                  includes the instant 2018-02-01 00:00:00
                                                  and with it the day 2018-02-01)
  ``< v``             last day ``v - 1``          last day ``date(v) - 1`` if ``v`` is at
                                                  midnight, else ``date(v)``
  ==================  ==========================  ========================================

  ``days = last - first + 1`` must be at most ``max_days``: ``>= '2018-01-01' AND <
  '2018-02-01'`` covers 31 days (allowed for 31), ``>= '2018-01-01' AND <= '2018-02-01'``
  covers 32. A 31-day span starting at noon touches 32 calendar days and is refused: the
  policy bounds trips per card per *calendar day*. An empty window (last before first) is
  allowed; it reads no rows.

Messages and hints quote only the query's own conditions and the policy; never data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from sandbox.errors import QueryTimeWindowRequired, QueryTimeWindowTooLong
from sandbox.policy.models import ColumnType, Dataset, QueryWindowRule

from .spec import (
    And,
    Between,
    Compare,
    CompareOp,
    InList,
    LiteralValue,
    Not,
    Or,
    Predicate,
    QuerySpec,
    predicate_columns,
)

__all__ = ["WindowBounds", "check_query_window", "window_bounds"]

#: First day of the example window when the query gives no bound to start from.
EXAMPLE_START = date(2018, 1, 1)


@dataclass(frozen=True)
class _Bound:
    day: int  # proleptic Gregorian ordinal of the first (lower) or last (upper) day admitted
    condition: Predicate  # the conjunct that gives it


@dataclass(frozen=True)
class WindowBounds:
    """The tightest top-level bounds of the window column, as calendar days (ordinals)."""

    lower: _Bound | None
    upper: _Bound | None
    ignored: bool  # the column also appears under OR or NOT, where bounds do not count

    @property
    def days(self) -> int | None:
        """Calendar days covered (0 for an empty window); None while a side is unbounded."""
        if self.lower is None or self.upper is None:
            return None
        return max(0, self.upper.day - self.lower.day + 1)


def _conjuncts(where: Predicate | None) -> tuple[Predicate, ...]:
    if where is None:
        return ()
    return where.items if isinstance(where, And) else (where,)


def _day(value: LiteralValue, *, timestamp: bool, lower: bool, inclusive: bool) -> int | None:
    """The first (``lower``) or last admitted calendar day of one bound, as an ordinal."""
    if isinstance(value, datetime):
        day, midnight = value.toordinal(), value.time() == time(0)
    elif isinstance(value, date):
        day, midnight = value.toordinal(), True
    else:
        return None  # not a date/time literal: it bounds nothing (the validator never makes one)
    if inclusive:
        return day
    if timestamp:
        # > v: the next instant may be on v's day; < v: the previous instant is on v's day
        # unless v is at midnight.
        return day if lower or not midnight else day - 1
    return day + 1 if lower else day - 1


def window_bounds(where: Predicate | None, column: str, column_type: ColumnType) -> WindowBounds:
    """Collect the top-level bounds on ``column`` (see the module docstring for the rule)."""
    timestamp = column_type is ColumnType.TIMESTAMP
    lowers: list[_Bound] = []
    uppers: list[_Bound] = []
    ignored = False

    def add(value: LiteralValue, *, lower: bool, inclusive: bool, source: Predicate) -> None:
        day = _day(value, timestamp=timestamp, lower=lower, inclusive=inclusive)
        if day is not None:
            (lowers if lower else uppers).append(_Bound(day, source))

    for part in _conjuncts(where):
        counted = True
        if isinstance(part, Compare) and part.column == column:
            op = part.op
            if op in (CompareOp.GE, CompareOp.GT, CompareOp.EQ):
                add(part.value, lower=True, inclusive=op is not CompareOp.GT, source=part)
            if op in (CompareOp.LE, CompareOp.LT, CompareOp.EQ):
                add(part.value, lower=False, inclusive=op is not CompareOp.LT, source=part)
        elif isinstance(part, Between) and part.column == column and not part.negated:
            add(part.low, lower=True, inclusive=True, source=part)
            add(part.high, lower=False, inclusive=True, source=part)
        elif isinstance(part, InList) and part.column == column and not part.negated:
            days = [
                d
                for v in part.values
                if (d := _day(v, timestamp=timestamp, lower=True, inclusive=True)) is not None
            ]
            if days:
                lowers.append(_Bound(min(days), part))
                uppers.append(_Bound(max(days), part))
        elif isinstance(part, Or | Not | Between | InList):  # OR, NOT, NOT BETWEEN, NOT IN
            counted = column not in predicate_columns(part)
        ignored = ignored or not counted
    return WindowBounds(
        lower=max(lowers, key=lambda b: b.day, default=None),
        upper=min(uppers, key=lambda b: b.day, default=None),
        ignored=ignored,
    )


def check_query_window(spec: QuerySpec, dataset: Dataset) -> None:
    """Refuse a query on a dataset with a ``query_window`` unless WHERE keeps within it."""
    rule = dataset.query_window
    if rule is None or spec.dataset != dataset.id:
        return
    bounds = window_bounds(spec.where, rule.column, dataset.column(rule.column).type)
    days = bounds.days
    if days is None:
        raise QueryTimeWindowRequired(_missing_message(spec, dataset, rule, bounds), hint=_hint(rule, bounds))
    if days > rule.max_days:
        assert bounds.lower is not None and bounds.upper is not None
        raise QueryTimeWindowTooLong(
            f"WHERE {_conditions(bounds)}: the query covers {days} calendar days of {rule.column!r} "
            f"({_iso(bounds.lower.day)} to {_iso(bounds.upper.day)}, both included); "
            f"{dataset.id!r} allows at most {rule.max_days} days per query.",
            hint=_hint(rule, bounds, too_long=True),
        )


# ------------------------------------------------------------------------------- texts


def _missing_message(spec: QuerySpec, dataset: Dataset, rule: QueryWindowRule, bounds: WindowBounds) -> str:
    need = f"a query on {dataset.id!r} must restrict {rule.column!r} to at most {rule.max_days} days"
    if spec.where is None:
        return f"WHERE is missing: {need}."
    if bounds.upper is not None:
        side = f"an upper bound ({_text(bounds.upper)}) but no lower bound"
    elif bounds.lower is not None:
        side = f"a lower bound ({_text(bounds.lower)}) but no upper bound"
    else:
        side = "no lower and no upper bound"
    note = " (conditions on it inside OR or NOT do not count)" if bounds.ignored else ""
    return f"WHERE has {side} on {rule.column!r}{note}: {need}."


def _hint(rule: QueryWindowRule, bounds: WindowBounds, *, too_long: bool = False) -> str:
    start, end = _example(rule, bounds)
    c = rule.column
    example = f"WHERE {c} >= '{start}' AND {c} < '{end}'"
    if too_long:
        return (
            f"Ask for at most {rule.max_days} days per query, e.g. {example}; for a longer period send "
            "one query per window (each is charged)."
        )
    return (
        f"Bound {c} from below and above with top-level AND conditions covering at most "
        f"{rule.max_days} days, e.g. {example} ({rule.max_days} days); BETWEEN, = and IN count too. "
        f"Conditions on {c} inside OR or NOT do not count: they do not bound every row the query reads."
    )


def _example(rule: QueryWindowRule, bounds: WindowBounds) -> tuple[str, str]:
    """An allowed window near what the query asked for: ``start`` included, ``end`` excluded."""
    try:
        if bounds.lower is not None:
            first = bounds.lower.day
        elif bounds.upper is not None:
            first = bounds.upper.day + 1 - rule.max_days
        else:
            first = EXAMPLE_START.toordinal()
        return _iso(first), _iso(first + rule.max_days)
    except (ValueError, OverflowError):
        first = EXAMPLE_START.toordinal()
        return _iso(first), _iso(first + rule.max_days)


def _iso(day: int) -> str:
    return date.fromordinal(day).isoformat()


def _literal(value: LiteralValue) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    return repr(value)


def _text(bound: _Bound) -> str:
    """The condition that gives a bound, as the spec holds it (normalised SQL-like text)."""
    cond = bound.condition
    if isinstance(cond, Compare):
        return f"{cond.column} {cond.op.value} {_literal(cond.value)}"
    if isinstance(cond, Between):
        return f"{cond.column} BETWEEN {_literal(cond.low)} AND {_literal(cond.high)}"
    assert isinstance(cond, InList)
    values = [_literal(v) for v in cond.values]
    if len(values) > 4:
        values = [*values[:2], "…", values[-1]]
    return f"{cond.column} IN ({', '.join(values)})"


def _conditions(bounds: WindowBounds) -> str:
    assert bounds.lower is not None and bounds.upper is not None
    if bounds.lower.condition == bounds.upper.condition:
        return _text(bounds.lower)
    return f"{_text(bounds.lower)} AND {_text(bounds.upper)}"
