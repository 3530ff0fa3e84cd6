"""Per-dataset query windows (policy ``query_window``; transit_trips: txn_time, 31 days).

The rule is checked on the QuerySpec, so SQL and the Python builder are refused alike, with the
same code and words. See sandbox/dp/window.py and docs/dp.md "Query windows".
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from sandbox.dp import Query, col, compile_query, count, parse_sql, sum_, table
from sandbox.dp.spec import And, Between, Compare, CompareOp, InList, Not, Or, Predicate
from sandbox.dp.window import window_bounds
from sandbox.errors import InvalidQuery, QueryTimeWindowRequired, QueryTimeWindowTooLong, error_classes
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import ColumnType, QueryWindowRule

ROOT = Path(__file__).resolve().parents[2]
TRIPS = "SELECT card_type, COUNT(*) FROM transit_trips {} GROUP BY card_type"
REQUIRED, TOO_LONG = "query_time_window_required", "query_time_window_too_long"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_policies(ROOT / "policies")


@pytest.fixture(scope="module")
def dated(catalog: Catalog) -> Catalog:
    """The catalogue with a 31-day window on the DATE column ``penalties.event_date``."""
    penalties = catalog.dataset("penalties").model_copy(
        update={"query_window": QueryWindowRule(column="event_date", max_days=31)}
    )
    return dataclasses.replace(catalog, datasets={**catalog.datasets, "penalties": penalties})


def refusal(sql: str, catalog: Catalog) -> InvalidQuery:
    with pytest.raises(InvalidQuery) as info:
        parse_sql(sql, catalog)
    return info.value


def built_refusal(query: Query, catalog: Catalog) -> InvalidQuery:
    with pytest.raises(InvalidQuery) as info:
        query.spec(catalog)
    return info.value


# ------------------------------------------------------------------------------------- policy


def test_only_transit_trips_has_a_window(catalog: Catalog) -> None:
    windows = {ds_id: ds.query_window for ds_id, ds in catalog.datasets.items() if ds.query_window}
    assert windows == {"transit_trips": QueryWindowRule(column="txn_time", max_days=31)}
    trips = catalog.dataset("transit_trips")
    assert trips.column("txn_time").type is ColumnType.TIMESTAMP
    assert trips.max_rows_per_unit == 10 * 31  # 10 trips per card per day x the 31-day window


def test_codes_are_stable_classes() -> None:
    assert error_classes()[REQUIRED] is QueryTimeWindowRequired
    assert error_classes()[TOO_LONG] is QueryTimeWindowTooLong
    assert QueryTimeWindowRequired.status == QueryTimeWindowTooLong.status == 400


# ------------------------------------------------------------------------------------- accepted

ACCEPTED = [
    # exactly 31 days: [Jan 1, Feb 1) with plain strings, DATE and TIMESTAMP literals
    "WHERE txn_time >= '2018-01-01' AND txn_time < '2018-02-01'",
    "WHERE txn_time >= DATE '2018-01-01' AND txn_time < DATE '2018-02-01'",
    "WHERE txn_time >= TIMESTAMP '2018-01-01 00:00:00' AND txn_time < TIMESTAMP '2018-02-01 00:00:00'",
    "WHERE txn_time BETWEEN '2018-01-01 00:00:00' AND '2018-01-31 23:59:59'",
    "WHERE txn_time BETWEEN '2018-01-01' AND '2018-01-31 23:59:59.999999'",
    "WHERE txn_time > '2018-01-01 06:30' AND txn_time <= '2018-01-31 22:00'",
    # reversed operands, other conditions, nesting of ANDs, a redundant looser bound
    "WHERE '2018-02-01' > txn_time AND mode = '地铁' AND ('2018-01-01' <= txn_time AND transfer_flag)",
    "WHERE txn_time >= '2017-01-01' AND txn_time >= '2018-06-01' AND txn_time < '2018-07-01' "
    "AND txn_time < '2019-01-01'",
    # a single instant or day, a short IN list, an OR elsewhere
    "WHERE txn_time = '2018-05-01 08:00:00'",
    "WHERE txn_time IN ('2018-05-01 08:00', '2018-05-31 18:00')",
    "WHERE txn_time >= '2018-01-01' AND txn_time < '2018-01-15' AND (mode = '地铁' OR mode = '公交')",
    # an empty window reads no rows; it is not refused
    "WHERE txn_time >= '2018-02-01' AND txn_time < '2018-01-01'",
]


@pytest.mark.parametrize("where", ACCEPTED)
def test_windows_of_at_most_31_days_are_accepted(where: str, catalog: Catalog) -> None:
    spec = parse_sql(TRIPS.format(where), catalog)
    assert parse_sql(spec.to_sql(), catalog) == spec  # the canonical SQL keeps its window
    compile_query(spec, catalog, Decimal("0.1"))


@pytest.mark.parametrize(
    "where",
    [
        "WHERE event_date >= '2018-01-01' AND event_date <= '2018-01-31'",
        "WHERE event_date > '2017-12-31' AND event_date < '2018-02-01'",  # > on a date: next day
        "WHERE event_date BETWEEN DATE '2018-01-01' AND DATE '2018-01-31'",
        "WHERE event_date = '2018-01-01'",
    ],
)
def test_date_column_windows_are_accepted(where: str, dated: Catalog) -> None:
    parse_sql(f"SELECT COUNT(*) FROM penalties {where}", dated)


# ------------------------------------------------------------------------------------- refused

REFUSED = [
    ("", REQUIRED, "WHERE is missing"),
    ("WHERE mode = '地铁'", REQUIRED, "no lower and no upper bound"),
    ("WHERE txn_time >= '2018-01-01'", REQUIRED, "no upper bound"),
    ("WHERE txn_time < '2018-02-01'", REQUIRED, "no lower bound"),
    ("WHERE txn_time <> '2018-01-01 08:00'", REQUIRED, "no lower and no upper bound"),
    ("WHERE txn_time IS NOT NULL", REQUIRED, "no lower and no upper bound"),
    # 32 days: the closing midnight is included, or one day too many
    ("WHERE txn_time >= '2018-01-01' AND txn_time <= '2018-02-01'", TOO_LONG, "32 calendar days"),
    ("WHERE txn_time >= '2018-01-01' AND txn_time < '2018-02-02'", TOO_LONG, "32 calendar days"),
    ("WHERE txn_time BETWEEN '2018-01-01' AND '2018-02-01 00:00:00'", TOO_LONG, "32 calendar days"),
    # 31 x 24 hours from noon touch 32 calendar days
    ("WHERE txn_time >= '2018-01-01 12:00' AND txn_time < '2018-02-01 12:00'", TOO_LONG, "32 calendar days"),
    # > on a timestamp keeps its own day (conservative)
    ("WHERE txn_time > '2017-12-31 23:59:59' AND txn_time < '2018-02-01'", TOO_LONG, "32 calendar days"),
    ("WHERE txn_time >= '2018-01-01' AND txn_time < '2019-01-01'", TOO_LONG, "365 calendar days"),
    ("WHERE txn_time IN ('2018-01-01 08:00', '2018-03-01 09:00')", TOO_LONG, "60 calendar days"),
    # bounds inside OR or under NOT do not count
    (
        "WHERE (txn_time >= '2018-01-01' AND txn_time < '2018-02-01') OR mode = '地铁'",
        REQUIRED,
        "inside OR or NOT do not count",
    ),
    (
        "WHERE (txn_time >= '2018-01-01' AND txn_time < '2018-01-10') "
        "OR (txn_time >= '2018-03-01' AND txn_time < '2018-03-10')",
        REQUIRED,
        "inside OR or NOT do not count",
    ),
    (
        "WHERE txn_time >= '2018-01-01' AND NOT (txn_time >= '2018-02-01')",
        REQUIRED,
        "no upper bound on 'txn_time' (conditions on it inside OR or NOT do not count)",
    ),
    ("WHERE NOT (txn_time < '2018-01-01' OR txn_time >= '2018-02-01')", REQUIRED, "inside OR or NOT"),
    ("WHERE txn_time NOT BETWEEN '2018-01-01' AND '2018-01-31'", REQUIRED, "inside OR or NOT"),
]


@pytest.mark.parametrize(
    ("where", "code", "fragment"), REFUSED, ids=[r[0][:60] or "no WHERE" for r in REFUSED]
)
def test_windows_missing_or_too_long_are_refused(
    where: str, code: str, fragment: str, catalog: Catalog
) -> None:
    err = refusal(TRIPS.format(where), catalog)
    assert err.code == code, err.message
    assert type(err) is error_classes()[code]
    assert err.message.startswith("WHERE"), err.message  # names the clause
    assert fragment in err.message, err.message
    assert "'transit_trips'" in err.message and "31 days" in err.message
    assert "WHERE txn_time >= '" in err.hint and "AND txn_time < '" in err.hint  # a valid example
    assert err.to_dict()["error"]["code"] == code


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("WHERE event_date >= '2018-01-01' AND event_date <= '2018-02-01'", TOO_LONG),
        ("WHERE event_date BETWEEN '2018-01-01' AND '2018-02-01'", TOO_LONG),
        ("WHERE event_date > '2017-12-31' AND event_date < '2018-02-02'", TOO_LONG),
        ("WHERE event_date >= '2018-01-01' OR event_date < '2018-02-01'", REQUIRED),
        ("WHERE event_date > '2017-12-31'", REQUIRED),
    ],
)
def test_date_column_windows_are_refused(where: str, code: str, dated: Catalog) -> None:
    err = refusal(f"SELECT COUNT(*) FROM penalties {where}", dated)
    assert err.code == code and "'event_date'" in err.message


def test_exact_texts_depend_only_on_the_query_and_the_policy(catalog: Catalog) -> None:
    err = refusal(
        TRIPS.format("WHERE txn_time >= '2018-03-05' AND txn_time <= '2018-04-05 00:00:00'"), catalog
    )
    assert err.message == (
        "WHERE txn_time >= '2018-03-05 00:00:00' AND txn_time <= '2018-04-05 00:00:00': the query covers "
        "32 calendar days of 'txn_time' (2018-03-05 to 2018-04-05, both included); 'transit_trips' allows "
        "at most 31 days per query."
    )
    assert err.hint == (
        "Ask for at most 31 days per query, e.g. WHERE txn_time >= '2018-03-05' AND txn_time < "
        "'2018-04-05'; for a longer period send one query per window (each is charged)."
    )
    err = refusal(TRIPS.format("WHERE txn_time < '2018-02-01'"), catalog)
    assert err.message == (
        "WHERE has an upper bound (txn_time < '2018-02-01 00:00:00') but no lower bound on 'txn_time': "
        "a query on 'transit_trips' must restrict 'txn_time' to at most 31 days."
    )
    assert err.hint.startswith(
        "Bound txn_time from below and above with top-level AND conditions covering at most 31 days, "
        "e.g. WHERE txn_time >= '2018-01-01' AND txn_time < '2018-02-01' (31 days); "
    )
    assert "inside OR or NOT do not count" in err.hint


# ------------------------------------------------------------------------------------- builder

JAN = (col("txn_time") >= "2018-01-01") & (col("txn_time") < "2018-02-01")


@pytest.mark.parametrize(
    ("query", "sql_where"),
    [
        (
            table("transit_trips")
            .where(col("txn_time") >= "2018-01-01")
            .where(col("txn_time") < "2018-02-01"),
            "WHERE txn_time >= '2018-01-01' AND txn_time < '2018-02-01'",
        ),
        (
            table("transit_trips").where(
                col("txn_time").between(datetime(2018, 1, 1), datetime(2018, 1, 31, 23, 59))
            ),
            "WHERE txn_time BETWEEN TIMESTAMP '2018-01-01 00:00:00' AND TIMESTAMP '2018-01-31 23:59:00'",
        ),
        (
            table("transit_trips").where(
                (col("txn_time") >= date(2018, 1, 1)) & (col("txn_time") < date(2018, 2, 1))
            ),
            "WHERE txn_time >= DATE '2018-01-01' AND txn_time < DATE '2018-02-01'",
        ),
    ],
)
def test_builder_accepts_the_same_windows(query: Query, sql_where: str, catalog: Catalog) -> None:
    built = query.group_by("card_type").agg(count()).spec(catalog)
    assert built == parse_sql(TRIPS.format(sql_where), catalog)


@pytest.mark.parametrize(
    ("query", "sql_where", "code"),
    [
        (table("transit_trips"), "", REQUIRED),
        (
            table("transit_trips").where(col("txn_time") >= "2018-01-01"),
            "WHERE txn_time >= '2018-01-01'",
            REQUIRED,
        ),
        (
            table("transit_trips").where(
                (col("txn_time") >= "2018-01-01") & (col("txn_time") <= "2018-02-01")
            ),
            "WHERE txn_time >= '2018-01-01' AND txn_time <= '2018-02-01'",
            TOO_LONG,
        ),
        (
            table("transit_trips").where(JAN | (col("mode") == "地铁")),
            "WHERE (txn_time >= '2018-01-01' AND txn_time < '2018-02-01') OR mode = '地铁'",
            REQUIRED,
        ),
        (
            table("transit_trips").where(
                (col("txn_time") >= "2018-01-01") & ~(col("txn_time") >= "2018-02-01")
            ),
            "WHERE txn_time >= '2018-01-01' AND NOT txn_time >= '2018-02-01'",
            REQUIRED,
        ),
    ],
)
def test_builder_is_refused_like_the_sql(query: Query, sql_where: str, code: str, catalog: Catalog) -> None:
    built = built_refusal(query.group_by("card_type").agg(count()), catalog)
    parsed = refusal(TRIPS.format(sql_where), catalog)
    assert built.code == parsed.code == code
    assert (built.message, built.hint) == (parsed.message, parsed.hint)


# ------------------------------------------------------------------------------------- other datasets


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM enterprise_tax",
        "SELECT COUNT(*) FROM taxi_trips WHERE pickup_time >= '2018-01-01'",  # a timestamp, no window
        "SELECT COUNT(*) FROM penalties WHERE event_date >= '2017-01-01' AND event_date < '2019-01-01'",
        "SELECT COUNT(*) FROM hotel_stays WHERE checkin_date > '2018-01-01' OR hotel_class = '五星级'",
    ],
)
def test_datasets_without_a_window_are_unaffected(sql: str, catalog: Catalog) -> None:
    parse_sql(sql, catalog)


def test_builder_without_a_window_dataset_is_unaffected(catalog: Catalog) -> None:
    table("enterprise_tax").agg(sum_("vat_paid_wan")).spec(catalog)


# ------------------------------------------------------------------------------------- the day rule


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("where", "column_type", "days"),
    [
        # timestamps: >= / > keep the day; <= keeps the day; < midnight drops it, < later keeps it
        (
            And((Compare("c", CompareOp.GE, ts("2018-01-01")), Compare("c", CompareOp.LT, ts("2018-02-01")))),
            ColumnType.TIMESTAMP,
            31,
        ),
        (
            And((Compare("c", CompareOp.GE, ts("2018-01-01")), Compare("c", CompareOp.LE, ts("2018-02-01")))),
            ColumnType.TIMESTAMP,
            32,
        ),
        (
            And(
                (
                    Compare("c", CompareOp.GT, ts("2018-01-01")),
                    Compare("c", CompareOp.LT, ts("2018-01-31 00:00:01")),
                )
            ),
            ColumnType.TIMESTAMP,
            31,
        ),
        (
            And(
                (
                    Compare("c", CompareOp.GT, ts("2017-12-31 23:59:59.999999")),
                    Compare("c", CompareOp.LT, ts("2018-01-31")),
                )
            ),
            ColumnType.TIMESTAMP,
            31,
        ),
        (Compare("c", CompareOp.EQ, ts("2018-01-01 08:00")), ColumnType.TIMESTAMP, 1),
        (Between("c", ts("2018-01-01 23:00"), ts("2018-01-02 01:00")), ColumnType.TIMESTAMP, 2),
        # dates: > adds a day, < removes one
        (
            And((Compare("c", CompareOp.GT, date(2018, 1, 1)), Compare("c", CompareOp.LT, date(2018, 1, 3)))),
            ColumnType.DATE,
            1,
        ),
        (
            And((Compare("c", CompareOp.GE, date(2018, 1, 1)), Compare("c", CompareOp.LE, date(2018, 1, 3)))),
            ColumnType.DATE,
            3,
        ),
        (InList("c", (date(2018, 1, 5), date(2018, 1, 1))), ColumnType.DATE, 5),
        (
            And((Compare("c", CompareOp.GE, date(2018, 1, 3)), Compare("c", CompareOp.LT, date(2018, 1, 3)))),
            ColumnType.DATE,
            0,
        ),
        # the tightest bound on each side counts
        (
            And(
                (
                    Between("c", date(2017, 1, 1), date(2018, 1, 10)),
                    Compare("c", CompareOp.GE, date(2018, 1, 1)),
                )
            ),
            ColumnType.DATE,
            10,
        ),
    ],
)
def test_days_counted_per_rule(where: Predicate, column_type: ColumnType, days: int) -> None:
    assert window_bounds(where, "c", column_type).days == days


@pytest.mark.parametrize(
    "where",
    [
        None,
        Compare("c", CompareOp.GE, date(2018, 1, 1)),
        Or((Compare("c", CompareOp.GE, date(2018, 1, 1)), Compare("c", CompareOp.LT, date(2018, 2, 1)))),
        And(
            (Compare("c", CompareOp.GE, date(2018, 1, 1)), Not(Compare("c", CompareOp.GE, date(2018, 2, 1))))
        ),
        And(
            (
                Compare("c", CompareOp.GE, date(2018, 1, 1)),
                Between("c", date(2018, 1, 1), date(2018, 2, 1), negated=True),
            )
        ),
        And((Compare("c", CompareOp.GE, date(2018, 1, 1)), Compare("other", CompareOp.LT, date(2018, 2, 1)))),
        And(
            (Compare("c", CompareOp.GE, date(2018, 1, 1)), Compare("c", CompareOp.LT, "2018-02-01"))
        ),  # not a date
    ],
)
def test_unbounded_sides_give_no_span(where: Predicate | None) -> None:
    assert window_bounds(where, "c", ColumnType.DATE).days is None
