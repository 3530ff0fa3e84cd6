"""Accuracy: per-cell 95% half-widths from OpenDP's helpers, the mean interval, preview, epsilon_for."""

from __future__ import annotations

import dataclasses
import json
import math
from decimal import Decimal
from pathlib import Path

import opendp.prelude as dp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.dp import ExactCells, compile_query, epsilon_for, parse_sql, preview
from sandbox.dp.accuracy import mean_estimate
from sandbox.dp.schema import FixedPoint
from sandbox.errors import InvalidQuery
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import Mechanism

ROOT = Path(__file__).resolve().parents[2]
JANUARY = "WHERE txn_time >= '2018-01-01' AND txn_time < '2018-02-01'"  # transit_trips: a 31-day window


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_policies(ROOT / "policies")


def test_count_and_sum_half_widths_come_from_opendp(catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT credit_grade, COUNT(*), SUM(vat_paid_wan) FROM enterprise_tax GROUP BY 1", catalog
    )
    cq = compile_query(spec, catalog, Decimal("0.4"))
    scales = {s.primitive.id: s.scale for s in cq.statistics}
    ci = cq.preview().ci95
    assert ci["count"] == math.floor(dp.discrete_laplacian_scale_to_accuracy(scales["rows"], 0.05))
    fixed = math.floor(dp.discrete_laplacian_scale_to_accuracy(scales["sum:vat_paid_wan"], 0.05))
    assert ci["sum_vat_paid_wan"] == fixed / 100  # precision 2


def test_gaussian_half_widths_use_the_discrete_gaussian_helper(catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT card_type, COUNT(*) FROM transit_trips " + JANUARY + " GROUP BY card_type", catalog
    )
    cq = compile_query(spec, catalog, Decimal("0.05"))
    (stat,) = cq.statistics
    assert cq.preview().ci95["count"] == math.floor(dp.discrete_gaussian_scale_to_accuracy(stat.scale, 0.05))
    assert cq.preview().budget_unit == "rho"


def test_release_carries_the_same_half_widths(catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT credit_grade, COUNT(*), MEDIAN(vat_paid_wan) FROM enterprise_tax GROUP BY 1", catalog
    )
    cq = compile_query(spec, catalog, Decimal("1"))
    m = len(cq.plan.candidates["vat_paid_wan"])
    cells = ExactCells(
        n_cells=5,
        vectors={"rows": (100, 0, 5, 7, 9)},
        below={"vat_paid_wan": ((0,) * m,) * 5},
        above={"vat_paid_wan": ((0,) * m,) * 5},
    )
    release = cq.release_cells(cells)
    expected = cq.preview().ci95["count"]
    assert [c["count"] for c in release.ci95] == [expected] * 5
    assert [c["median_vat_paid_wan"] for c in release.ci95] == [None] * 5
    body = json.loads(release.to_json())
    assert body["ci95"] == release.ci95 and body["epsilon"] == str(cq.charge)
    assert body["sql"] == spec.to_sql() and body["fingerprint"] == spec.fingerprint()


# ---------------------------------------------------------------------------- means

FP = FixedPoint(column="x", integer=False, precision=1, lower=-500, upper=1500)  # [-50.0, 150.0]


def test_mean_without_noise_is_exact() -> None:
    # true values (fixed point, centred on 500): 10 rows summing to 10 * (700 - 500)
    value, half = mean_estimate(2000, 10, 0, 0, FP)
    assert value == pytest.approx(70.0) and half == pytest.approx(0.0)


def test_mean_with_no_reliable_count_spans_the_bounds() -> None:
    value, half = mean_estimate(-40, -5, 100, 3, FP)
    assert -50 <= value <= 150
    assert value - half <= -50 and value + half >= 150


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=500),
    mean_fp=st.integers(min_value=-500, max_value=1500),
    a_s=st.integers(min_value=0, max_value=50_000),
    a_n=st.integers(min_value=0, max_value=200),
    u_s=st.floats(min_value=-1, max_value=1),
    u_n=st.floats(min_value=-1, max_value=1),
)
def test_mean_interval_covers_whenever_both_component_intervals_do(
    n: int, mean_fp: int, a_s: int, a_n: int, u_s: float, u_n: float
) -> None:
    true_sum = n * (mean_fp - FP.centre)  # centred sum of n identical values
    noisy_sum = true_sum + round(u_s * a_s)
    noisy_count = n + round(u_n * a_n)
    value, half = mean_estimate(noisy_sum, noisy_count, a_s, a_n, FP)
    truth = mean_fp / 10
    assert -50 <= value <= 150
    assert value - half - 1e-9 <= truth <= value + half + 1e-9


# ---------------------------------------------------------------------------- preview, epsilon_for


def test_preview_reports_cost_and_notes_without_a_connection(catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT credit_grade, COUNT(*), AVG(vat_paid_wan), MEDIAN(vat_paid_wan) "
        "FROM enterprise_tax GROUP BY 1",
        catalog,
    )
    result = preview(spec, catalog, Decimal("0.3"))
    assert result.cost == Decimal("0.3") and result.budget_unit == "epsilon" and result.cells == 5
    assert result.ci95["count"] and result.ci95["avg_vat_paid_wan"] is None
    assert result.ci95["median_vat_paid_wan"] is None
    assert len(result.notes) == 2
    body = result.to_dict()
    assert body["cost"] == "0.300000000000" and len(body["statistics"]) == 3


@pytest.mark.parametrize("target", [1.0, 25.0, 400.0])
def test_epsilon_for_reaches_the_target_and_no_less_budget_does(target: float, catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT credit_grade, COUNT(*), COUNT(DISTINCT uscc) FROM enterprise_tax GROUP BY 1", catalog
    )
    epsilon = epsilon_for(spec, catalog, ci95=target)
    assert all(v <= target for v in preview(spec, catalog, epsilon).ci95.values() if v is not None)
    smaller = (epsilon * Decimal("0.99")).quantize(Decimal("1e-12"))
    assert any(v > target for v in preview(spec, catalog, smaller).ci95.values() if v is not None)


def test_epsilon_for_sums_targets_the_column_unit(catalog: Catalog) -> None:
    spec = parse_sql("SELECT SUM(cit_paid_wan) FROM enterprise_tax", catalog)
    epsilon = epsilon_for(spec, catalog, ci95=1_000_000)
    assert preview(spec, catalog, epsilon).ci95["sum_cit_paid_wan"] <= 1_000_000  # type: ignore[operator]


def test_epsilon_for_gaussian_is_in_rho(catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT card_type, COUNT(*) FROM transit_trips " + JANUARY + " GROUP BY card_type", catalog
    )
    rho = epsilon_for(spec, catalog, ci95=2000)
    assert catalog.dataset("transit_trips").mechanism is Mechanism.GAUSSIAN
    assert preview(spec, catalog, rho).ci95["count"] <= 2000  # type: ignore[operator]


@pytest.mark.parametrize(
    ("sql", "target"),
    [
        ("SELECT AVG(vat_paid_wan) FROM enterprise_tax", 10.0),
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", 10.0),
        ("SELECT COUNT(*) FROM enterprise_tax", 0.0),
        ("SELECT COUNT(*) FROM enterprise_tax", float("nan")),
    ],
)
def test_epsilon_for_refuses_targets_it_cannot_meet(sql: str, target: float, catalog: Catalog) -> None:
    with pytest.raises(InvalidQuery) as info:
        epsilon_for(parse_sql(sql, catalog), catalog, ci95=target)
    assert info.value.code == "query_accuracy_target"


MARCH = "WHERE txn_time >= '2018-03-01' AND txn_time < '2018-04-01'"


@pytest.mark.parametrize(
    ("sql", "target"),
    [
        ("SELECT credit_grade, MEDIAN(vat_paid_wan) FROM enterprise_tax GROUP BY 1", 20.0),
        ("SELECT QUANTILE(vat_paid_wan, 0.9), MEDIAN(cit_paid_wan) FROM enterprise_tax", 50.0),
        ("SELECT MEDIAN(fare_yuan) FROM transit_trips " + MARCH, 200.0),  # rho
    ],
)
def test_epsilon_for_rank_error95_reaches_the_target_and_no_less_budget_does(
    sql: str, target: float, catalog: Catalog
) -> None:
    spec = parse_sql(sql, catalog)
    budget = epsilon_for(spec, catalog, rank_error95=target)
    assert budget == Decimal(format(budget, ".4g"))  # 4 significant digits
    assert all(v <= target for v in preview(spec, catalog, budget).rank_error95.values())
    smaller = (budget * Decimal("0.99")).quantize(Decimal("1e-12"))
    assert any(v > target for v in preview(spec, catalog, smaller).rank_error95.values())


def test_epsilon_for_both_targets_meets_each(catalog: Catalog) -> None:
    spec = parse_sql(
        "SELECT credit_grade, COUNT(*), MEDIAN(vat_paid_wan) FROM enterprise_tax GROUP BY 1", catalog
    )
    for ci95, rank in ((5.0, 200.0), (400.0, 10.0)):  # the count's target binds, then the median's
        both = epsilon_for(spec, catalog, ci95=ci95, rank_error95=rank)
        assert both == max(
            epsilon_for(spec, catalog, ci95=ci95), epsilon_for(spec, catalog, rank_error95=rank)
        )
        at = preview(spec, catalog, both)
        assert at.ci95["count"] <= ci95 and at.rank_error95["median_vat_paid_wan"] <= rank  # type: ignore[operator]
        below = preview(spec, catalog, (both * Decimal("0.99")).quantize(Decimal("1e-12")))
        assert below.ci95["count"] > ci95 or below.rank_error95["median_vat_paid_wan"] > rank  # type: ignore[operator]


def test_epsilon_for_ci95_on_quantiles_only_points_to_rank_error95(catalog: Catalog) -> None:
    spec = parse_sql("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", catalog)
    with pytest.raises(InvalidQuery) as info:
        epsilon_for(spec, catalog, ci95=10.0)
    assert info.value.code == "query_accuracy_target" and "rank_error95" in info.value.hint


@pytest.mark.parametrize(
    ("sql", "kwargs"),
    [
        ("SELECT COUNT(*) FROM enterprise_tax", {"rank_error95": 10.0}),  # no quantile
        ("SELECT AVG(vat_paid_wan) FROM enterprise_tax", {"rank_error95": 10.0}),
        ("SELECT COUNT(*) FROM enterprise_tax", {"ci95": 10.0, "rank_error95": 10.0}),
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", {"ci95": 10.0, "rank_error95": 10.0}),
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", {}),  # no target
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", {"rank_error95": 0}),
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", {"rank_error95": -3.0}),
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", {"rank_error95": float("nan")}),
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", {"rank_error95": float("inf")}),
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", {"rank_error95": "20"}),
        ("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", {"rank_error95": True}),
    ],
)
def test_epsilon_for_refuses_bad_rank_error95_requests(
    sql: str, kwargs: dict[str, object], catalog: Catalog
) -> None:
    with pytest.raises(InvalidQuery) as info:
        epsilon_for(parse_sql(sql, catalog), catalog, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == "query_accuracy_target"


def test_epsilon_for_rank_error95_without_quantiles_says_so(catalog: Catalog) -> None:
    with pytest.raises(InvalidQuery) as info:
        epsilon_for(parse_sql("SELECT COUNT(*) FROM enterprise_tax", catalog), catalog, rank_error95=5.0)
    assert "rank_error95" in info.value.message and "no" in info.value.message


def test_preview_of_a_policy_without_delta_has_no_approx_dp(catalog: Catalog) -> None:
    with_delta = dataclasses.replace(catalog)
    spec = parse_sql("SELECT COUNT(*) FROM transit_trips " + JANUARY, with_delta)
    assert compile_query(spec, with_delta, Decimal("0.1")).approx_dp() is None
