"""Quantile accuracy in rank units (``rank_error95``): the bound, where it is reported, and OpenDP's noise.

The bound (``sandbox.dp.accuracy.score_gap_bound``): with ``m`` candidates and noise scale ``s``,
the selected candidate's score exceeds the best one's by more than
``T = ceil(s * ln((m - 1) / 0.05)) - 1`` with probability at most 5%, for both of OpenDP 0.16's
``make_noisy_max`` samplers (permute-and-flip under ``max_divergence``, the exponential
mechanism under ``zero_concentrated_divergence``); ``rank_error95 = T / b`` for ``q = a/b``.

Exact output distributions (gaps ``g_i`` to the best score, ``p_i = exp(-g_i / s)``):

* exponential mechanism: ``P(i) = p_i / sum_j p_j``;
* permute-and-flip (= report-noisy-max with exponential noise): the winner is the largest
  ``-g_i + E_i``, ``E_i ~ Exp(s)``; substituting ``w = exp(-z / s)`` in
  ``P(i) = int f_i(z) prod_{j != i} F_j(z) dz`` gives ``P(i) = p_i * int_0^1 prod_{j != i} (1 - p_j w) dw``,
  a polynomial integral computed exactly below.

The fast tests check the bound against these exact distributions for arbitrary scores; the
slow ones draw from OpenDP itself (>= 1000 releases per case) and check (1) the fraction of
releases past the bound is consistent with <= 5% (exact one-sided binomial test, p > 0.001),
(2) it matches the exact distribution of the sampler OpenDP is documented to use (two-sided
binomial test), which pins down what OpenDP does under each measure, and (3) the bound is not
absurdly loose.

Tolerance for (3): when the scores grow slowly compared with the noise, both samplers give
``P(gap >= x) ~ exp(-x / s)``, so the 95th percentile of the gap is about ``s * ln(1 / 0.05)``
while ``T ~ s * ln((m - 1) / 0.05)``: their ratio ``ln 20 / ln(20 (m - 1))`` is 0.46 for the 33
candidates used here. That factor is the price of not knowing the data (a data-independent
bound must cover ``m - 1`` competitors). We require the observed 95th percentile to be at least
``T / 4``, about half of that ratio; the test asserts from the exact distribution that the
chance of a sample falling short of it is below 1e-6, so it is not flaky.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.toy import TOY_HEADER

from sandbox.dp import ExactCells, compile_query, parse_sql, preview
from sandbox.dp.accuracy import rank_half_width, score_gap_bound
from sandbox.dp.compiler import CompiledQuery
from sandbox.dp.mechanisms import quantile_scores
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import Dataset, Mechanism

ROOT = Path(__file__).resolve().parents[2]
BETA = 0.05
RELEASES = 2000
P_MIN = 0.001
JANUARY = "WHERE txn_time >= '2018-01-01' AND txn_time < '2018-02-01'"  # transit_trips: a 31-day window

TOY: dict[str, Any] = {
    **TOY_HEADER,
    "columns": [
        {"name": "pid", "type": "string", "role": "identifier"},
        {"name": "region", "type": "category", "role": "plain", "domain": ["n", "s", "e", "w"]},
        {"name": "amount", "type": "float", "role": "sensitive", "bounds": {"lower": "-50", "upper": "150"},
         "precision": 1, "bins": ["-50", "0", "50", "100", "150"]},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    real = load_policies(ROOT / "policies")
    toy = Dataset.model_validate(TOY)
    gauss = toy.model_copy(update={"id": "toy_gauss", "mechanism": Mechanism.GAUSSIAN})
    return dataclasses.replace(real, datasets={**real.datasets, "toy": toy, "toy_gauss": gauss})


# ---------------------------------------------------------------------------- exact distributions


def exponential_mechanism(gaps: Sequence[int], scale: float) -> list[float]:
    weights = [math.exp(-g / scale) for g in gaps]
    total = sum(weights)
    return [w / total for w in weights]


def permute_and_flip(gaps: Sequence[int], scale: float) -> list[float]:
    p = [math.exp(-g / scale) for g in gaps]
    out = []
    for i in range(len(gaps)):
        poly = [1.0]  # coefficients of prod_{j != i} (1 - p_j w), lowest degree first
        for j, pj in enumerate(p):
            if j != i:
                poly = [*poly, 0.0]
                for d in range(len(poly) - 1, 0, -1):
                    poly[d] -= pj * poly[d - 1]
        out.append(p[i] * sum(c / (d + 1) for d, c in enumerate(poly)))
    return out


SAMPLERS = {"epsilon": permute_and_flip, "rho": exponential_mechanism}


def tail(probs: Sequence[float], gaps: Sequence[int], above: float) -> float:
    """P(gap > above)."""
    return sum(p for p, g in zip(probs, gaps, strict=True) if g > above)


def quantile_95(probs: Sequence[float], gaps: Sequence[int]) -> int:
    total = 0.0
    for g in sorted(set(gaps)):
        total += sum(p for p, x in zip(probs, gaps, strict=True) if x == g)
        if total >= 0.95 - 1e-12:
            return g
    return max(gaps)


def test_exact_distributions_are_distributions_and_agree_on_a_tie() -> None:
    gaps = [0, 3, 3, 10, 0, 25]
    for sampler in SAMPLERS.values():
        probs = sampler(gaps, 4.0)
        assert sum(probs) == pytest.approx(1.0, abs=1e-12)
        assert probs[0] == pytest.approx(probs[4]) and probs[1] == pytest.approx(probs[2])
    # all other candidates at gap g: closed forms
    m, scale, g = 10, 10.0, 12
    p = math.exp(-g / scale)
    others = [0] + [g] * (m - 1)
    assert permute_and_flip(others, scale)[0] == pytest.approx((1 - (1 - p) ** m) / (m * p))
    assert exponential_mechanism(others, scale)[0] == pytest.approx(1 / (1 + (m - 1) * p))


# ---------------------------------------------------------------------------- the bound


@pytest.mark.parametrize("m", [2, 3, 33, 49, 65, 1000])
@pytest.mark.parametrize("scale", [0.3, 1.0, 8.0, 90.0, 980.306, 1e7])
def test_score_gap_bound_is_the_smallest_integer_meeting_the_union_bound(m: int, scale: float) -> None:
    t = score_gap_bound(scale, m)
    assert t >= 0
    assert (m - 1) * math.exp(-(t + 1) / scale) <= BETA
    assert t == 0 or (m - 1) * math.exp(-t / scale) > BETA
    assert t == max(math.ceil(scale * math.log((m - 1) / BETA)) - 1, 0)


def test_score_gap_bound_edge_cases() -> None:
    assert score_gap_bound(5.0, 1) == 0  # one candidate: it is the best
    assert score_gap_bound(5.0, 2, alpha=0.5) == 3  # ceil(5 ln 2) - 1
    assert score_gap_bound(5.0, 33, alpha=0.01) > score_gap_bound(5.0, 33)
    with pytest.raises(ValueError):
        score_gap_bound(0.0, 5)


@settings(max_examples=120, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=40),
    scale=st.floats(min_value=0.5, max_value=60.0),
)
def test_bound_holds_for_any_scores_under_both_samplers(gaps: list[int], scale: float) -> None:
    gaps = [0, *gaps]  # the best candidate has gap 0
    t = score_gap_bound(scale, len(gaps))
    for sampler in SAMPLERS.values():
        assert tail(sampler(gaps, scale), gaps, t) <= BETA + 1e-12


def test_bound_is_nearly_attained_when_every_other_candidate_is_just_past_it() -> None:
    m, scale = 33, 8.0
    t = score_gap_bound(scale, m)
    gaps = [0] + [t + 1] * (m - 1)
    assert tail(exponential_mechanism(gaps, scale), gaps, t) > 0.045
    assert tail(permute_and_flip(gaps, scale), gaps, t) > 0.02


# ---------------------------------------------------------------------------- where it is reported


def quantile_stat(cq: CompiledQuery, ident: str) -> Any:
    (stat,) = [s for s in cq.statistics if s.primitive.id == ident]
    return stat


def test_laplace_quantiles_report_rank_error95(catalog: Catalog) -> None:
    sql = (
        "SELECT credit_grade, COUNT(*), MEDIAN(vat_paid_wan), QUANTILE(vat_paid_wan, 0.9) "
        "FROM enterprise_tax GROUP BY 1"
    )
    spec = parse_sql(sql, catalog)
    cq = compile_query(spec, catalog, Decimal("1"))
    m = len(cq.plan.candidates["vat_paid_wan"])
    k = cq.plan.max_rows_per_unit
    expected = {}
    for name, q in (("median_vat_paid_wan", "0.5"), ("p90_vat_paid_wan", "0.9")):
        stat = quantile_stat(cq, f"quantile:vat_paid_wan:{q}")
        a, b = Fraction(q).numerator, Fraction(q).denominator
        # pure DP: epsilon = 2 * k * max(a, b - a) / scale (non-monotonic scores); the cells are
        # disjoint and compose in parallel, so each one is calibrated to the statistic's whole share
        per_cell = Fraction(1, 3)
        assert stat.scale == pytest.approx(float(2 * k * max(a, b - a) / per_cell), rel=1e-9)
        t = math.ceil(stat.scale * math.log((m - 1) / BETA)) - 1
        expected[name] = t / b
        assert rank_half_width(stat, m) == t / b
    assert expected["p90_vat_paid_wan"] > expected["median_vat_paid_wan"]

    pv = cq.preview()
    assert pv.rank_error95 == expected
    assert pv.ci95["median_vat_paid_wan"] is None and pv.ci95["p90_vat_paid_wan"] is None
    body = pv.to_dict()
    assert body["aggregates"] == [
        {"column": "count", "aggregate": "count", "ci95": pv.ci95["count"], "rank_error95": None},
        {
            "column": "median_vat_paid_wan",
            "aggregate": "quantile",
            "ci95": None,
            "rank_error95": expected["median_vat_paid_wan"],
        },
        {
            "column": "p90_vat_paid_wan",
            "aggregate": "quantile",
            "ci95": None,
            "rank_error95": expected["p90_vat_paid_wan"],
        },
    ]
    described = {s["statistic"]: s for s in body["statistics"]}
    assert described["quantile:vat_paid_wan:0.5"]["candidates"] == m
    assert described["quantile:vat_paid_wan:0.5"]["rank_error95"] == expected["median_vat_paid_wan"]
    assert "rank_error95" not in described["rows"]
    assert any(f"{expected['median_vat_paid_wan']:g} values" in n for n in pv.notes)
    assert preview(spec, catalog, Decimal("1")).rank_error95 == expected

    cells = ExactCells(
        n_cells=5,
        vectors={"rows": (10, 0, 5, 7, 9)},
        below={"vat_paid_wan": ((0,) * m,) * 5},
        above={"vat_paid_wan": ((0,) * m,) * 5},
    )
    release = cq.release_cells(cells)
    assert release.rank_error95 == expected
    assert all(c["median_vat_paid_wan"] is None and c["p90_vat_paid_wan"] is None for c in release.ci95)
    stats = {s["statistic"]: s for s in release.statistics}
    assert stats["quantile:vat_paid_wan:0.9"]["rank_error95"] == expected["p90_vat_paid_wan"]
    assert stats["quantile:vat_paid_wan:0.9"]["score_gap95"] == expected["p90_vat_paid_wan"] * 10
    assert json.loads(release.to_json())["rank_error95"] == expected


def test_gaussian_quantiles_report_rank_error95_from_the_zcdp_scale(catalog: Catalog) -> None:
    spec = parse_sql("SELECT MEDIAN(fare_yuan) FROM transit_trips " + JANUARY, catalog)
    cq = compile_query(spec, catalog, Decimal("0.05"))
    assert cq.budget_unit == "rho"
    (stat,) = cq.statistics
    m = len(cq.plan.candidates["fare_yuan"])
    # zCDP: rho = (2 * sensitivity / scale)^2 / 8 with sensitivity = k * max(a, b - a) (= k for the median)
    assert stat.scale == pytest.approx(stat.sensitivity / math.sqrt(2 * 0.05), rel=1e-9)
    t = math.ceil(stat.scale * math.log((m - 1) / BETA)) - 1
    pv = cq.preview()
    assert pv.rank_error95 == {"median_fare_yuan": t / 2}
    assert pv.ci95 == {"median_fare_yuan": None}
    assert pv.aggregates[0]["rank_error95"] == t / 2


def test_grouping_a_quantile_costs_no_rank_error(catalog: Catalog) -> None:
    # the cells are disjoint (parallel composition): four groups get the same accuracy as one
    one = preview(parse_sql("SELECT MEDIAN(amount) FROM toy", catalog), catalog, Decimal("1"))
    four = preview(
        parse_sql("SELECT region, MEDIAN(amount) FROM toy GROUP BY region", catalog), catalog, Decimal("1")
    )
    assert four.rank_error95["median_amount"] == one.rank_error95["median_amount"]
    assert four.cost == one.cost == Decimal("1")


def test_queries_without_quantiles_have_no_rank_error(catalog: Catalog) -> None:
    cq = compile_query(parse_sql("SELECT COUNT(*) FROM toy", catalog), catalog, Decimal("1"))
    release = cq.release_cells(ExactCells(n_cells=1, vectors={"rows": (3,)}))
    assert release.rank_error95 == {} and release.to_dict()["rank_error95"] == {}
    assert cq.preview().rank_error95 == {}
    with pytest.raises(ValueError):
        rank_half_width(cq.statistics[0], 10)


# ---------------------------------------------------------------------------- OpenDP's noise (slow)


def cell_counts(values: Sequence[int], candidates: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """#values strictly below / above each candidate, as the warehouse statement counts them."""
    below = tuple(sum(v < c for v in values) for c in candidates)
    above = tuple(sum(v > c for v in values) for c in candidates)
    return below, above


def binomial_log_pmf(i: int, n: int, p: float) -> float:
    return (
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
    )


def binomial_upper(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p)."""
    return min(1.0, sum(math.exp(binomial_log_pmf(i, n, p)) for i in range(k, n + 1)))


def binomial_lower(k: int, n: int, p: float) -> float:
    """P(X <= k)."""
    return min(1.0, sum(math.exp(binomial_log_pmf(i, n, p)) for i in range(k + 1)))


def binomial_two_sided(k: int, n: int, p: float) -> float:
    return min(1.0, 2 * binomial_upper(k, n, p), 2 * binomial_lower(k, n, p))


def draw_gaps(cq: CompiledQuery, column: str, values: Sequence[int]) -> tuple[list[int], list[int]]:
    """(gap of each candidate, gaps of RELEASES selections drawn by the compiled OpenDP measurement)."""
    (stat,) = cq.statistics
    assert stat.alpha is not None
    a, b = stat.alpha
    below, above = cell_counts(values, cq.plan.candidates[column])
    scores = quantile_scores(below, above, a, b)
    best = min(scores)
    gaps = [s - best for s in scores]
    cells = ExactCells(n_cells=1, vectors={}, below={column: (below,)}, above={column: (above,)})
    drawn = []
    for _ in range(RELEASES):
        (index,) = cq.measurement(cells)
        drawn.append(gaps[int(index)])
    return gaps, drawn


CASES = [
    ("toy", "1", "MEDIAN(amount)"),
    ("toy_gauss", "0.125", "MEDIAN(amount)"),
    ("toy", "1", "QUANTILE(amount, 0.9)"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "budget", "aggregate"), CASES)
def test_opendp_selections_respect_the_bound_on_spread_data(
    dataset: str, budget: str, aggregate: str, catalog: Catalog
) -> None:
    cq = compile_query(parse_sql(f"SELECT {aggregate} FROM {dataset}", catalog), catalog, Decimal(budget))
    (stat,) = cq.statistics
    candidates = cq.plan.candidates["amount"]
    m = len(candidates)
    t = score_gap_bound(stat.scale, m)
    # two values strictly inside each gap of the candidate grid: scores change slowly (noise-dominated)
    values = [(lo + hi) // 2 for lo, hi in itertools.pairwise(candidates) for _ in range(2)]
    gaps, drawn = draw_gaps(cq, "amount", values)
    assert max(gaps) > t  # the bound can be crossed: the test is not vacuous

    exact = SAMPLERS[cq.budget_unit](gaps, stat.scale)
    exceed = sum(g > t for g in drawn)
    assert tail(exact, gaps, t) <= BETA
    assert binomial_upper(exceed, RELEASES, BETA) > P_MIN, (exceed, RELEASES)
    assert binomial_two_sided(exceed, RELEASES, tail(exact, gaps, t)) > P_MIN, (exceed, tail(exact, gaps, t))

    # not absurdly loose: the observed 95th percentile is at least T / 4 (see the module docstring)
    floor = t / 4
    p_reach = tail(exact, gaps, math.ceil(floor) - 1)  # P(gap >= floor)
    assert binomial_lower(int(BETA * RELEASES), RELEASES, p_reach) < 1e-6  # the check cannot flake
    observed_q95 = sorted(drawn)[math.ceil(0.95 * RELEASES) - 1]
    assert observed_q95 >= floor, (observed_q95, t, quantile_95(exact, gaps))
    assert quantile_95(exact, gaps) / t > 0.3


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "budget"), [("toy", "1"), ("toy_gauss", "0.125")])
def test_opendp_selections_on_the_worst_case_for_the_bound(
    dataset: str, budget: str, catalog: Catalog
) -> None:
    """All values equal one candidate, T + 1 of them: every other candidate's gap is T + 1.

    The union bound is then nearly attained, and permute-and-flip (epsilon) and the exponential
    mechanism (rho) differ clearly (about 2.4% against 4.6% past the bound): the two-sided test
    checks that OpenDP samples from the one its documentation names for each measure.
    """
    cq = compile_query(parse_sql(f"SELECT MEDIAN(amount) FROM {dataset}", catalog), catalog, Decimal(budget))
    (stat,) = cq.statistics
    assert stat.scale == pytest.approx(8.0, rel=1e-9)  # 2 * k * 1/2 / epsilon = 4 / sqrt(2 rho)
    candidates = cq.plan.candidates["amount"]
    t = score_gap_bound(stat.scale, len(candidates))
    gaps, drawn = draw_gaps(cq, "amount", [candidates[10]] * (t + 1))
    assert sorted(set(gaps)) == [0, t + 1]
    exceed = sum(g > t for g in drawn)
    p_exact = tail(SAMPLERS[cq.budget_unit](gaps, stat.scale), gaps, t)
    other = tail(SAMPLERS["rho" if cq.budget_unit == "epsilon" else "epsilon"](gaps, stat.scale), gaps, t)
    assert p_exact <= BETA and abs(p_exact - other) > 0.02
    assert binomial_upper(exceed, RELEASES, BETA) > P_MIN, (exceed, RELEASES)
    assert binomial_two_sided(exceed, RELEASES, p_exact) > P_MIN, (exceed, p_exact)
    assert binomial_two_sided(exceed, RELEASES, other) < P_MIN, (exceed, other)
