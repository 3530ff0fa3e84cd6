"""Privacy maps: the charge is OpenDP's map at d_in; sensitivities come from max_rows_per_unit and bounds."""

from __future__ import annotations

import dataclasses
import math
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import opendp.prelude as dp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.toy import TOY_HEADER

from sandbox.dp import ExactCells, compile_query, parse_sql
from sandbox.dp.compiler import CompiledQuery
from sandbox.dp.mechanisms import Statistic
from sandbox.errors import InvalidQuery
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import Dataset

ROOT = Path(__file__).resolve().parents[2]


def toy_dataset(**overrides: Any) -> Dataset:
    body: dict[str, Any] = {
        **TOY_HEADER,
        "columns": [
            {"name": "pid", "type": "string", "role": "identifier"},
            {"name": "region", "type": "category", "role": "plain", "domain": ["n", "s", "e", "w"]},
            {"name": "flag", "type": "boolean", "role": "plain"},
            {
                "name": "amount",
                "type": "float",
                "role": "sensitive",
                "bounds": {"lower": "-50", "upper": "150"},
                "precision": 1,
                "nullable": True,
                "bins": ["-50", "0", "50", "100", "150"],
            },
            {
                "name": "visits",
                "type": "integer",
                "role": "sensitive",
                "bounds": {"lower": 0, "upper": 20},
                "precision": 0,
            },
        ],
    }
    body.update(overrides)
    return Dataset.model_validate(body)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    real = load_policies(ROOT / "policies")
    gaussian = toy_dataset(
        id="toy_gauss",
        mechanism="gaussian",
        budgets={"per_query_max": "0.5", "per_user": 1, "per_project": 1, "global": 10, "delta": "1e-6"},
    )
    return dataclasses.replace(real, datasets={**real.datasets, "toy": toy_dataset(), "toy_gauss": gaussian})


def compiled(sql: str, catalog: Catalog, epsilon: str = "0.1") -> CompiledQuery:
    return compile_query(parse_sql(sql, catalog), catalog, Decimal(epsilon))


def ceil12(value: float) -> Decimal:
    return Decimal(value).quantize(Decimal("1e-12"), rounding=ROUND_CEILING)


def stat(cq: CompiledQuery, ident: str) -> Statistic:
    (found,) = [s for s in cq.statistics if s.primitive.id == ident]
    return found


def assert_charge_is_the_map(cq: CompiledQuery, requested: Decimal) -> None:
    reported = cq.measurement.map(cq.d_in)
    assert cq.charge == ceil12(reported)
    assert Decimal(reported) <= cq.charge <= requested
    # epsilon grows linearly with the number of privacy units, rho quadratically
    factor = 4 if cq.budget_unit == "rho" else 2
    assert cq.measurement.map(2 * cq.d_in) == pytest.approx(factor * reported, rel=1e-12)


# ------------------------------------------------------------------------------- per aggregate kind


def test_count_sensitivity_is_max_rows_per_unit(catalog: Catalog) -> None:
    cq = compiled("SELECT credit_grade, COUNT(*) FROM enterprise_tax GROUP BY credit_grade", catalog)
    assert_charge_is_the_map(cq, Decimal("0.1"))
    assert cq.charge == Decimal("0.1")
    s = stat(cq, "rows")
    assert (s.noise, s.metric, s.sensitivity) == ("discrete_laplace", "l1", 3.0)  # k = 3
    assert s.scale == pytest.approx(3 / 0.1, rel=1e-9)
    assert cq.budget_unit == "epsilon" and cq.approx_dp() is None


def test_sum_sensitivity_is_contributions_times_bound_in_fixed_point(catalog: Catalog) -> None:
    cq = compiled("SELECT SUM(cit_paid_wan) FROM enterprise_tax", catalog, "0.5")
    assert_charge_is_the_map(cq, Decimal("0.5"))
    s = stat(cq, "sum:cit_paid_wan")
    assert s.sensitivity == 3 * 20000 * 100  # k * max(|L|, |U|) * 10^p
    assert s.precision == 2
    assert s.scale == pytest.approx(s.sensitivity / 0.5, rel=1e-9)


def test_negative_bounds_use_the_larger_magnitude(catalog: Catalog) -> None:
    cq = compiled("SELECT SUM(amount) FROM toy", catalog)
    assert stat(cq, "sum:amount").sensitivity == 4 * 150 * 10


def test_mean_uses_a_centred_sum_and_a_count(catalog: Catalog) -> None:
    cq = compiled("SELECT AVG(vat_paid_wan) FROM enterprise_tax", catalog, "0.2")
    assert_charge_is_the_map(cq, Decimal("0.2"))
    centred = stat(cq, "csum:vat_paid_wan")
    assert centred.sensitivity == 3 * (5_000_000 - 0) / 2  # k * (U - L) / 2 * 10^p
    rows = stat(cq, "rows")
    assert rows.sensitivity == 3
    # equal split: each statistic is calibrated to half the budget
    assert centred.sensitivity / centred.scale == pytest.approx(0.1, rel=1e-9)
    assert rows.sensitivity / rows.scale == pytest.approx(0.1, rel=1e-9)


def test_mean_of_a_nullable_column_counts_non_null_values(catalog: Catalog) -> None:
    cq = compiled("SELECT region, AVG(amount), COUNT(*) FROM toy GROUP BY region", catalog)
    assert {s.primitive.id for s in cq.statistics} == {"csum:amount", "nonnull:amount", "rows"}
    assert stat(cq, "csum:amount").sensitivity == 4 * 1000  # centre 500 (=50.0), half range 1000


def test_count_and_mean_share_one_noisy_count(catalog: Catalog) -> None:
    cq = compiled("SELECT COUNT(*), AVG(vat_paid_wan), SUM(vat_paid_wan) FROM enterprise_tax", catalog)
    assert [s.primitive.id for s in cq.statistics] == ["rows", "csum:vat_paid_wan", "sum:vat_paid_wan"]
    assert_charge_is_the_map(cq, Decimal("0.1"))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT COUNT(DISTINCT uscc) FROM enterprise_tax", 1),  # one cell
        ("SELECT credit_grade, COUNT(DISTINCT uscc) FROM enterprise_tax GROUP BY 1", 3),  # min(k=3, 5)
        (
            "SELECT hotel_district, COUNT(DISTINCT guest_pseudo) FROM hotel_stays GROUP BY 1",
            16,
        ),  # min(30, 16)
    ],
)
def test_count_distinct_sensitivity_is_min_of_rows_and_groups(
    sql: str, expected: int, catalog: Catalog
) -> None:
    cq = compiled(sql, catalog)
    assert_charge_is_the_map(cq, Decimal("0.1"))
    assert stat(cq, "distinct").sensitivity == expected


def test_grouped_quantile_cells_compose_in_parallel(catalog: Catalog) -> None:
    cq = compiled("SELECT credit_grade, MEDIAN(vat_paid_wan) FROM enterprise_tax GROUP BY 1", catalog)
    assert_charge_is_the_map(cq, Decimal("0.1"))
    s = stat(cq, "quantile:vat_paid_wan:0.5")
    assert s.noise == "noisy_max" and s.metric == "linf" and s.components == 5
    assert s.alpha == (1, 2) and s.sensitivity == 3  # k * max(a, b - a) for q = 1/2
    # non-monotonic scores: epsilon = 2 * sensitivity / scale; the five disjoint cells cost one
    assert 2 * s.sensitivity / s.scale == pytest.approx(0.1, rel=1e-9)
    one = compiled("SELECT MEDIAN(vat_paid_wan) FROM enterprise_tax", catalog)
    assert stat(one, "quantile:vat_paid_wan:0.5").scale == pytest.approx(s.scale, rel=1e-12)


@pytest.mark.parametrize(
    ("sql", "budget"),
    [
        ("SELECT region, MEDIAN(visits), QUANTILE(amount, 0.9) FROM toy GROUP BY region", "0.3"),
        ("SELECT region, MEDIAN(visits) FROM toy_gauss GROUP BY region", "0.2"),  # zCDP: convex map
    ],
)
def test_parallel_quantile_charge_is_one_cells_map(sql: str, budget: str, catalog: Catalog) -> None:
    cq = compiled(sql, catalog, budget)
    assert_charge_is_the_map(cq, Decimal(budget))
    measure = dp.zero_concentrated_divergence() if cq.budget_unit == "rho" else dp.max_divergence()
    total = 0.0
    for s in cq.statistics:
        # one cell's chain, built by hand from OpenDP's noisy max at the statistic's scale
        cell = dp.m.make_noisy_max(
            dp.vector_domain(dp.atom_domain(T=dp.u64)),
            dp.linf_distance(T=dp.u64, monotonic=False),
            measure,
            scale=s.scale,
            negate=True,
        )
        total += cell.map(int(s.sensitivity))
    assert cq.measurement.map(cq.d_in) == pytest.approx(total, rel=1e-12)
    assert all(s.components == 4 for s in cq.statistics)


def test_quantile_weight_grows_with_the_fraction(catalog: Catalog) -> None:
    cq = compiled("SELECT QUANTILE(vat_paid_wan, 0.95) FROM enterprise_tax", catalog)
    s = stat(cq, "quantile:vat_paid_wan:0.95")
    assert s.alpha == (19, 20) and s.sensitivity == 3 * 19


def test_several_statistics_compose_to_the_request(catalog: Catalog) -> None:
    cq = compiled(
        "SELECT credit_grade, COUNT(*), SUM(cit_paid_wan), AVG(vat_paid_wan), COUNT(DISTINCT uscc), "
        "MEDIAN(taxable_revenue_wan) FROM enterprise_tax GROUP BY credit_grade",
        catalog,
        "0.7",
    )
    assert_charge_is_the_map(cq, Decimal("0.7"))
    assert cq.charge == Decimal("0.7")
    assert len(cq.statistics) == 5


# ------------------------------------------------------------------------------- gaussian / zCDP


def test_gaussian_dataset_charges_rho(catalog: Catalog) -> None:
    cq = compiled(
        "SELECT card_type, COUNT(*) FROM transit_trips "
        "WHERE txn_time >= '2018-01-01' AND txn_time < '2018-02-01' GROUP BY card_type",
        catalog,
        "0.05",
    )
    assert cq.budget_unit == "rho"
    assert_charge_is_the_map(cq, Decimal("0.05"))
    s = stat(cq, "rows")
    assert (s.noise, s.metric, s.sensitivity) == ("discrete_gaussian", "l2", 310.0)
    assert (s.sensitivity / s.scale) ** 2 / 2 == pytest.approx(0.05, rel=1e-9)  # rho = (Δ2/σ)^2 / 2
    assert cq.approx_dp() is None  # the policy's delta is 0


def test_gaussian_count_distinct_uses_the_l2_bound(catalog: Catalog) -> None:
    cq = compiled("SELECT region, COUNT(DISTINCT pid) FROM toy_gauss GROUP BY region", catalog)
    s = stat(cq, "distinct")
    assert s.sensitivity >= math.sqrt(4) and s.sensitivity == pytest.approx(2.0)
    assert_charge_is_the_map(cq, Decimal("0.1"))


def test_gaussian_quantile_and_sum_compose_under_zcdp(catalog: Catalog) -> None:
    cq = compiled("SELECT region, SUM(visits), MEDIAN(amount) FROM toy_gauss GROUP BY region", catalog, "0.3")
    assert_charge_is_the_map(cq, Decimal("0.3"))
    assert stat(cq, "sum:visits").sensitivity == 4 * 20


def test_gaussian_reports_approx_dp_at_the_policy_delta(catalog: Catalog) -> None:
    cq = compiled("SELECT region, COUNT(*) FROM toy_gauss GROUP BY region", catalog, "0.1")
    result = cq.approx_dp()
    assert result is not None
    epsilon, delta = result
    assert delta == Decimal("0.000001")
    fixed = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(cq.measurement), delta=1e-6)
    assert epsilon == ceil12(fixed.map(cq.d_in)[0])


# ------------------------------------------------------------------------------- budget values


@settings(max_examples=40, deadline=None)
@given(
    st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("20"), places=12, allow_nan=False),
)
def test_charge_never_exceeds_the_request(epsilon: Decimal) -> None:
    catalog = load_policies(ROOT / "policies")
    cq = compile_query(
        parse_sql("SELECT credit_grade, COUNT(*), AVG(vat_paid_wan) FROM enterprise_tax GROUP BY 1", catalog),
        catalog,
        epsilon,
    )
    reported = cq.measurement.map(cq.d_in)
    assert Decimal(reported) <= cq.charge <= epsilon
    assert cq.charge == ceil12(reported)
    assert epsilon - cq.charge <= epsilon * Decimal("1e-6")


@pytest.mark.parametrize("epsilon", ["0", "-1", "1e-13", "NaN", "Infinity", "1e9"])
def test_invalid_budgets_are_refused(epsilon: str, catalog: Catalog) -> None:
    spec = parse_sql("SELECT COUNT(*) FROM enterprise_tax", catalog)
    with pytest.raises(InvalidQuery) as info:
        compile_query(spec, catalog, Decimal(epsilon))
    assert info.value.code == "query_epsilon"


# ------------------------------------------------------------------------------- the measurement


def test_measurement_releases_one_output_per_component(catalog: Catalog) -> None:
    cq = compiled("SELECT region, COUNT(*), MEDIAN(amount) FROM toy GROUP BY region", catalog)
    m = len(cq.plan.candidates["amount"])
    zeros = tuple([0] * m)
    cells = ExactCells(
        n_cells=4,
        vectors={"rows": (10, 20, 30, 40)},
        below={"amount": (zeros,) * 4},
        above={"amount": (zeros,) * 4},
    )
    out = cq.measurement(cells)
    assert len(out) == 2  # the noisy count vector; the quantile's selections, one per cell
    assert len(out[0]) == 4 and all(isinstance(v, int) for v in out[0])
    assert len(out[1]) == 4 and all(0 <= i < m for i in out[1])
    release = cq.release_cells(cells)
    assert [r["region"] for r in release.rows] == ["n", "s", "e", "w"]
    assert release.columns == ("region", "count", "median_amount")
    assert all(r["median_amount"] is not None for r in release.rows)


def test_compiled_fingerprint_depends_on_budget(catalog: Catalog) -> None:
    a = compiled("SELECT COUNT(*) FROM enterprise_tax", catalog, "0.1")
    b = compiled("SELECT COUNT(*) FROM enterprise_tax", catalog, "0.1")
    c = compiled("SELECT COUNT(*) FROM enterprise_tax", catalog, "0.2")
    assert a.fingerprint == b.fingerprint != c.fingerprint
