"""Statistical tests of the released noise (slow): variance and 95% coverage over many releases.

We never assert noise values; we assert their distribution with tolerances from the sample size:

* variance: the sample variance s^2 of n draws has standard error sqrt((mu4 - sigma^4 (n-3)/(n-1)) / n);
  the discrete Laplace is heavy-tailed, so the plain chi-square interval (normal data) would be
  too narrow and we use its kurtosis-corrected form with the exact mu4; |z| < 3.29 (p > 0.001);
* coverage: the count of draws inside ``ci95`` is Binomial(n, p0) with p0 = P(|noise| <= h)
  computed exactly from the mechanism (p0 >= 0.95 because h is floored from OpenDP's accuracy);
  exact two-sided binomial test, p > 0.001. Mean intervals are conservative (Bonferroni and
  interval arithmetic), so for them we test only that coverage is not below 95%.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from support.toy import TOY_HEADER

from sandbox.dp import ExactCells, compile_query, parse_sql
from sandbox.dp.accuracy import half_width
from sandbox.dp.compiler import CompiledQuery
from sandbox.policy.loader import Catalog, load_policies
from sandbox.policy.models import Dataset, Mechanism

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RELEASES = 1000
Z = 3.29  # two-sided p = 0.001
P_MIN = 0.001

TOY: dict[str, Any] = {
    **TOY_HEADER,
    "columns": [
        {"name": "pid", "type": "string", "role": "identifier"},
        {"name": "region", "type": "category", "role": "plain", "domain": ["n", "s", "e", "w"]},
        {"name": "amount", "type": "float", "role": "sensitive", "bounds": {"lower": "-50", "upper": "150"},
         "precision": 1, "bins": ["-50", "0", "50", "100", "150"]},
        {"name": "visits", "type": "integer", "role": "sensitive", "bounds": {"lower": 0, "upper": 20},
         "precision": 0},
    ],
}  # fmt: skip

COUNTS = (50, 120, 0, 700)
MEANS_FP = (700, -500, 500, 1234)  # 70.0, -50.0, 50.0 (no rows), 123.4
SUMS = (400, 1000, 0, 9000)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    real = load_policies(ROOT / "policies")
    toy = Dataset.model_validate(TOY)
    gauss = toy.model_copy(update={"id": "toy_gauss", "mechanism": Mechanism.GAUSSIAN})
    return dataclasses.replace(real, datasets={**real.datasets, "toy": toy, "toy_gauss": gauss})


def compiled(catalog: Catalog, dataset: str, budget: str) -> CompiledQuery:
    sql = f"SELECT region, COUNT(*), SUM(visits), AVG(amount) FROM {dataset} GROUP BY region"
    return compile_query(parse_sql(sql, catalog), catalog, Decimal(budget))


def exact_cells(cq: CompiledQuery) -> ExactCells:
    centre = cq.plan.fixed["amount"].centre
    return ExactCells(
        n_cells=4,
        vectors={
            "rows": COUNTS,
            "sum:visits": SUMS,
            "csum:amount": tuple(n * (m - centre) for n, m in zip(COUNTS, MEANS_FP, strict=True)),
        },
    )


def noise_samples(cq: CompiledQuery, cells: ExactCells) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {s.primitive.id: [] for s in cq.statistics}
    for _ in range(RELEASES):
        released = cq.measurement(cells)
        for stat, vector in zip(cq.statistics, released, strict=True):
            exact = cells.vectors[stat.primitive.id]
            out[stat.primitive.id].extend(int(v) - e for v, e in zip(vector, exact, strict=True))
    return out


# ---------------------------------------------------------------------------- distributions


def laplace_moments(scale: float) -> tuple[float, float]:
    """(variance, fourth moment) of the discrete Laplace, pmf proportional to t^|x|, t = exp(-1/scale)."""
    t = math.exp(-1 / scale)
    one_minus_t = -math.expm1(-1 / scale)
    var = 2 * t / one_minus_t**2
    mu4 = 2 * t * (1 + 11 * t + 11 * t**2 + t**3) / ((1 + t) * one_minus_t**4)
    return var, mu4


def laplace_coverage(scale: float, h: int) -> float:
    t = math.exp(-1 / scale)
    return 1 - 2 * t ** (h + 1) / (1 + t)


def gaussian_pmf(sigma: float) -> dict[int, float]:
    span = int(12 * sigma) + 1
    weights = {k: math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(-span, span + 1)}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def variance_z(samples: list[int], var: float, mu4: float) -> float:
    n = len(samples)
    mean = sum(samples) / n
    s2 = sum((x - mean) ** 2 for x in samples) / (n - 1)
    se = math.sqrt((mu4 - var**2 * (n - 3) / (n - 1)) / n)
    return (s2 - var) / se


def binomial_two_sided(k: int, n: int, p: float) -> float:
    def log_pmf(i: int) -> float:
        return (
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * math.log(p)
            + (n - i) * math.log1p(-p)
        )

    observed = log_pmf(k)
    return min(1.0, sum(math.exp(log_pmf(i)) for i in range(n + 1) if log_pmf(i) <= observed + 1e-9))


def binomial_lower_tail(k: int, n: int, p: float) -> float:
    total = 0.0
    for i in range(k + 1):
        total += math.exp(
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            + i * math.log(p)
            + (n - i) * math.log1p(-p)
        )
    return total


# ---------------------------------------------------------------------------- Laplace


@pytest.fixture(scope="module")
def laplace_run(catalog: Catalog) -> tuple[CompiledQuery, dict[str, list[int]]]:
    cq = compiled(catalog, "toy", "1.2")
    return cq, noise_samples(cq, exact_cells(cq))


@pytest.mark.parametrize("ident", ["rows", "sum:visits"])
def test_laplace_noise_has_the_mechanism_variance(
    ident: str, laplace_run: tuple[CompiledQuery, dict[str, list[int]]]
) -> None:
    cq, samples = laplace_run
    (stat,) = [s for s in cq.statistics if s.primitive.id == ident]
    var, mu4 = laplace_moments(stat.scale)
    data = samples[ident]
    assert len(data) == 4 * RELEASES >= 500
    assert abs(sum(data) / len(data)) <= Z * math.sqrt(var / len(data))
    assert abs(variance_z(data, var, mu4)) < Z


@pytest.mark.parametrize("ident", ["rows", "sum:visits", "csum:amount"])
def test_laplace_intervals_cover_at_the_mechanisms_rate(
    ident: str, laplace_run: tuple[CompiledQuery, dict[str, list[int]]]
) -> None:
    cq, samples = laplace_run
    (stat,) = [s for s in cq.statistics if s.primitive.id == ident]
    h = half_width(stat)
    p0 = laplace_coverage(stat.scale, h)
    assert p0 >= 0.95
    data = samples[ident]
    inside = sum(abs(x) <= h for x in data)
    assert binomial_two_sided(inside, len(data), p0) > P_MIN, (inside, len(data), p0)


def test_released_cells_cover_the_true_values(catalog: Catalog) -> None:
    cq = compiled(catalog, "toy", "1.2")
    cells = exact_cells(cq)
    counts_in = sums_in = means_in = means_total = 0
    for _ in range(RELEASES // 2):
        release = cq.release_cells(cells)
        for c, (row, ci) in enumerate(zip(release.rows, release.ci95, strict=True)):
            counts_in += abs(row["count"] - COUNTS[c]) <= ci["count"]  # type: ignore[operator]
            sums_in += abs(row["sum_visits"] - SUMS[c]) <= ci["sum_visits"]  # type: ignore[operator]
            if COUNTS[c]:
                means_total += 1
                truth = MEANS_FP[c] / 10
                means_in += abs(row["avg_amount"] - truth) <= ci["avg_amount"] + 1e-9  # type: ignore[operator]
    n = 4 * (RELEASES // 2)
    rows_stat = next(s for s in cq.statistics if s.primitive.id == "rows")
    assert binomial_two_sided(counts_in, n, laplace_coverage(rows_stat.scale, half_width(rows_stat))) > P_MIN
    sum_stat = next(s for s in cq.statistics if s.primitive.id == "sum:visits")
    assert binomial_two_sided(sums_in, n, laplace_coverage(sum_stat.scale, half_width(sum_stat))) > P_MIN
    assert binomial_lower_tail(means_in, means_total, 0.95) > P_MIN, (means_in, means_total)


# ---------------------------------------------------------------------------- Gaussian


def test_gaussian_noise_has_the_mechanism_variance_and_coverage(catalog: Catalog) -> None:
    cq = compiled(catalog, "toy_gauss", "0.3")
    assert cq.budget_unit == "rho"
    samples = noise_samples(cq, exact_cells(cq))
    stat = next(s for s in cq.statistics if s.primitive.id == "rows")
    pmf = gaussian_pmf(stat.scale)
    var = sum(k * k * p for k, p in pmf.items())
    mu4 = sum(k**4 * p for k, p in pmf.items())
    data = samples["rows"]
    assert abs(variance_z(data, var, mu4)) < Z
    h = half_width(stat)
    p0 = sum(p for k, p in pmf.items() if abs(k) <= h)
    assert p0 >= 0.95
    assert binomial_two_sided(sum(abs(x) <= h for x in data), len(data), p0) > P_MIN


# ---------------------------------------------------------------------------- quantiles


def test_quantile_picks_the_best_candidate_when_the_gap_dwarfs_the_noise(catalog: Catalog) -> None:
    cq = compile_query(parse_sql("SELECT MEDIAN(amount) FROM toy", catalog), catalog, Decimal("1"))
    candidates = cq.plan.candidates["amount"]
    value = candidates[len(candidates) // 3]
    # 1000 clamped values, all equal to one candidate: its score is 0, every other one 1000
    below = tuple(0 if c <= value else 1000 for c in candidates)
    above = tuple(1000 if c < value else 0 for c in candidates)
    cells = ExactCells(n_cells=1, vectors={}, below={"amount": (below,)}, above={"amount": (above,)})
    (stat,) = cq.statistics
    assert stat.scale == pytest.approx(2 * 4 * 1 / 1.0, rel=1e-9)  # 2 * k * max(a, b - a) / epsilon
    best = cq.plan.fixed["amount"].value(value)
    hits = sum(cq.release_cells(cells).rows[0]["median_amount"] == best for _ in range(300))
    assert hits >= 297


# A grouped median's four cells are one parallel composition: a unit whose k = 4 rows fall one in
# each cell costs the whole vector of selections one cell's worst case, 2 k / scale (not 4 times it).
LOSS_DRAWS = 12000  # about 45 s: 1.8 ms per draw of the four-cell measurement
LOSS_Z = 4.5  # per compared outcome; about 40 outcomes are compared


def _median_cells(cq: CompiledQuery, per_cell: list[list[int]]) -> ExactCells:
    cands = cq.plan.candidates["visits"]
    below = tuple(tuple(sum(v < c for v in vals) for c in cands) for vals in per_cell)
    above = tuple(tuple(sum(v > c for v in vals) for c in cands) for vals in per_cell)
    return ExactCells(
        n_cells=len(per_cell),
        vectors={"rows": tuple(len(v) for v in per_cell)},
        below={"visits": below},
        above={"visits": above},
    )


def _selection_counts(cq: CompiledQuery, cells: ExactCells) -> list[dict[int, int]]:
    counts: list[dict[int, int]] = [{} for _ in range(cells.n_cells)]
    for _ in range(LOSS_DRAWS):
        (selections,) = cq.measurement(cells)
        for cell, index in enumerate(selections):
            counts[cell][int(index)] = counts[cell].get(int(index), 0) + 1
    return counts


def test_grouped_quantile_privacy_loss_is_within_the_parallel_charge(catalog: Catalog) -> None:
    sql = "SELECT region, MEDIAN(visits) FROM toy GROUP BY region"
    cq = compile_query(parse_sql(sql, catalog), catalog, Decimal("4"))
    (stat,) = cq.statistics
    assert stat.components == 4 and cq.charge == Decimal("4")
    assert stat.scale == pytest.approx(2 * 4 * 1 / 4, rel=1e-9)  # each cell gets the whole share
    # neighbours: the second warehouse adds one unit with a 0 in each of the four cells
    base = [[5, 5, 5, 10, 10, 10]] * 4
    near = [[*cell, 0] for cell in base]
    p, q = _selection_counts(cq, _median_cells(cq, base)), _selection_counts(cq, _median_cells(cq, near))
    total, slack = 0.0, 0.0
    for cell_p, cell_q in zip(p, q, strict=True):
        shared = [o for o in cell_p if cell_p[o] >= 100 and cell_q.get(o, 0) >= 100]
        # log(p/q) of each selection, and its standard error by the delta method
        losses = {
            o: (
                abs(math.log(cell_p[o] / cell_q[o])),
                math.sqrt(1 / cell_p[o] + 1 / cell_q[o] - 2 / LOSS_DRAWS),
            )
            for o in shared
        }
        worst = max(losses, key=lambda o: losses[o][0])
        total += losses[worst][0]
        slack += LOSS_Z * losses[worst][1]
    # independent cells: the worst joint outcome's loss is the sum of the cells' worst losses
    assert total <= float(cq.charge) + slack
    # and the test has power: the loss comes close to the charge (about 3.6 of 4), so a map that
    # under-reported 2.5 times (e.g. charging one cell's share for four cells) would fail
    assert total - slack > 0.4 * float(cq.charge)
