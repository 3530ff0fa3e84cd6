"""Accuracy: 95% confidence half-widths from OpenDP's accuracy helpers, previews, target epsilon.

* Counts, sums, COUNT(DISTINCT): ``floor(discrete_laplacian_scale_to_accuracy(scale, 0.05))``
  (or ``discrete_gaussian_scale_to_accuracy``) in fixed-point units, divided back by ``10**p``.
  The noise is integer, so the closed interval ``[released - h, released + h]`` covers the
  exact (bounded, clamped) value with probability at least 95%.
* Means (noisy centred sum / noisy count + centre, clipped into the bounds): the sum and the
  count intervals are each taken at 97.5% (Bonferroni, so both hold with probability >= 95%);
  the interval of the true mean is the range of ``S / N`` over the box ``S in [S^ - a_S, S^ + a_S]``,
  ``N in [max(N^ - a_N, 1), N^ + a_N]`` (extremes at the corners), intersected with the
  bounds; the half-width is the larger distance from the released mean to its ends. It is
  post-processing of released values, so it spends nothing and depends on no private data.
* Quantiles: report-noisy-max releases a public candidate; no value interval is reported
  (``None``): how far apart two candidates are in value depends on the data. The noise alone
  gives a bound in *rank* (:func:`rank_half_width`, ``rank_error95``): with probability at
  least 95% the selected candidate's score exceeds the best candidate's by at most
  ``T = ceil(scale * ln((m - 1) / 0.05)) - 1`` (:func:`score_gap_bound`), i.e. its rank among
  the cell's clamped values is at most ``T / b`` values further from the target rank than the
  best candidate's (docs/dp.md, "Accuracy").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

import opendp.prelude as dp

from sandbox.errors import QueryAccuracyTarget

from .mechanisms import Statistic, check_budget_value, plan_statistics
from .planner import Plan
from .schema import FixedPoint

__all__ = [
    "ALPHA",
    "Preview",
    "describe_statistic",
    "epsilon_for_plan",
    "half_width",
    "mean_estimate",
    "preview_plan",
    "quantile_rank_errors",
    "rank_half_width",
    "score_gap_bound",
]

ALPHA = 0.05


def half_width(stat: Statistic, alpha: float = ALPHA) -> int:
    """Closed half-width (fixed-point units) of the noise at confidence 1 - alpha."""
    if stat.sensitivity == 0:
        return 0
    if stat.noise == "discrete_laplace":
        accuracy = float(dp.discrete_laplacian_scale_to_accuracy(stat.scale, alpha))
        if not math.isfinite(accuracy):  # enormous scales: the exact tail, P(|X| > h) = 2 t^(h+1) / (1 + t)
            t = math.exp(-1 / stat.scale)
            accuracy = math.ceil(stat.scale * math.log(2 / (alpha * (1 + t))))
        return math.floor(accuracy)
    if stat.noise == "discrete_gaussian":
        if stat.scale > GAUSSIAN_HELPER_MAX_SCALE:
            return _gaussian_tail_half_width(stat.scale, alpha)
        return math.floor(float(dp.discrete_gaussian_scale_to_accuracy(stat.scale, alpha)))
    raise ValueError(f"no closed-form accuracy for {stat.noise}")


#: OpenDP's discrete Gaussian accuracy helper sums the distribution: its time grows with the
#: scale (0.03 s at 1e4, minutes at 1e6). Above this scale an analytic bound is used instead.
GAUSSIAN_HELPER_MAX_SCALE = 1e4


def _gaussian_tail_half_width(sigma: float, alpha: float) -> int:
    """Smallest h with P(|X| > h) <= alpha for X ~ discrete Gaussian(sigma), by a rigorous bound.

    The pmf is exp(-k^2 / 2 sigma^2) / Z. Upper tail: sum over k >= h + 1 is at most the integral
    from h, sigma * sqrt(pi/2) * erfc(h / (sigma sqrt 2)); and Z >= sigma sqrt(2 pi) - 1 (a sum of
    a unimodal function is at least its integral minus its maximum). Two tails, bisection on h.
    """
    norm = sigma * math.sqrt(2 * math.pi) - 1

    def tail(h: int) -> float:
        return 2 * sigma * math.sqrt(math.pi / 2) * math.erfc(h / (sigma * math.sqrt(2))) / norm

    lo, hi = 0, math.ceil(10 * sigma)
    while lo < hi:
        mid = (lo + hi) // 2
        if tail(mid) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


def cell_ci95(stat: Statistic) -> float:
    return float(half_width(stat) / 10**stat.precision)


# ---------------------------------------------------------------------------- quantiles (rank)


def score_gap_bound(scale: float, candidates: int, alpha: float = ALPHA) -> int:
    """Smallest integer ``T`` with ``P(score(selected) - min score > T) <= alpha`` for OpenDP's
    ``make_noisy_max(negate=True)`` over ``candidates`` integer scores, whatever the scores.

    OpenDP 0.16 draws, for ``max_divergence``, from permute-and-flip (candidates in random
    order, each accepted with probability ``exp(-g / scale)``, ``g`` its gap to the minimum
    score; equivalently report-noisy-max with exponential noise) and, for
    ``zero_concentrated_divergence``, from the exponential mechanism (accept-reject with
    replacement: ``P(i) = exp(-g_i / scale) / sum_j exp(-g_j / scale)``; equivalently Gumbel
    noise). Under both, ``P(i) <= exp(-g_i / scale)``: permute-and-flip returns ``i`` only if it
    examines ``i`` and accepts it; the exponential mechanism's normaliser is at least 1 (the
    best candidate's term). At most ``m - 1`` candidates have a positive gap and gaps are
    integers, so the union bound gives ``P(gap > T) <= (m - 1) exp(-(T + 1) / scale)``; ``T`` is
    the smallest integer making that ``<= alpha``, i.e. ``ceil(scale * ln((m - 1) / alpha)) - 1``.

    The bound is nearly attained when all other candidates share one gap just above ``T``
    (all of the cell's values equal one candidate): the exponential mechanism then exceeds
    it with probability ``(m - 1) p / (1 + (m - 1) p)``, ``p = exp(-(T + 1) / scale)``, about
    4.6% for ``alpha = 0.05``.
    """
    if candidates <= 1:
        return 0
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    others = candidates - 1
    bound = max(math.ceil(scale * math.log(others / alpha)) - 1, 0)
    while others * math.exp(-(bound + 1) / scale) > alpha:  # float rounding of the closed form
        bound += 1
    return bound


def rank_half_width(stat: Statistic, candidates: int, alpha: float = ALPHA) -> float:
    """95% rank half-width (number of the cell's clamped values) of a quantile statistic.

    The score of a candidate for ``q = a/b`` is ``|(b - a) * #below - a * #above|``, i.e. ``b``
    times its rank imbalance ``d = |(1 - q) * #below - q * #above|`` (with no value equal to
    the candidate, ``d = |#below - q * n|``: how many values lie between it and rank ``q * n``).
    With probability at least ``1 - alpha`` the released candidate's ``d`` exceeds the best
    candidate's by at most ``score_gap_bound / b``. Depends only on the noise scale, the
    number of candidates and ``q``: never on the data.
    """
    if stat.noise != "noisy_max" or stat.alpha is None:
        raise ValueError(f"{stat.primitive.id} is not a quantile statistic")
    _, b = stat.alpha
    return score_gap_bound(stat.scale, candidates, alpha) / b


def _quantile_candidates(plan: Plan, stat: Statistic) -> int:
    assert stat.primitive.column is not None
    return len(plan.candidates[stat.primitive.column])


def describe_statistic(plan: Plan, stat: Statistic) -> dict[str, Any]:
    """``stat.describe()``; quantiles add ``candidates`` (``m``), ``score_gap95`` (``T``) and
    ``rank_error95`` (``T / b``, in number of values)."""
    row = stat.describe()
    if stat.noise == "noisy_max":
        m = _quantile_candidates(plan, stat)
        row["candidates"] = m
        row["score_gap95"] = score_gap_bound(stat.scale, m)
        row["rank_error95"] = rank_half_width(stat, m)
    return row


def quantile_rank_errors(plan: Plan, statistics: tuple[Statistic, ...]) -> dict[str, float]:
    """``rank_error95`` per quantile output column (the same for every cell of the column)."""
    stats = {s.primitive.id: s for s in statistics}
    out: dict[str, float] = {}
    for agg in plan.spec.aggregates:
        if agg.kind.value == "quantile":
            stat = stats[f"quantile:{agg.column}:{format(agg.q, 'f')}"]
            out[agg.name] = rank_half_width(stat, _quantile_candidates(plan, stat))
    return out


def mean_estimate(
    noisy_sum: int, noisy_count: int, sum_half: int, count_half: int, fp: FixedPoint
) -> tuple[float, float]:
    """Released mean and its 95% half-width, both in the column's unit (see module docstring)."""
    lo_c, hi_c = fp.lower - fp.centre, fp.upper - fp.centre
    estimate = min(max(noisy_sum / max(noisy_count, 1), lo_c), hi_c)
    n_lo, n_hi = max(noisy_count - count_half, 1), noisy_count + count_half
    if n_hi < 1:
        lo, hi = float(lo_c), float(hi_c)
    else:
        s_lo, s_hi = noisy_sum - sum_half, noisy_sum + sum_half
        corners = (s_lo / n_lo, s_lo / n_hi, s_hi / n_lo, s_hi / n_hi)
        lo, hi = max(min(corners), lo_c), min(max(corners), hi_c)
        if lo > hi:
            lo, hi = float(lo_c), float(hi_c)
    half = max(estimate - lo, hi - estimate)
    return fp.value(estimate + fp.centre), half / fp.scale


@dataclass(frozen=True)
class Preview:
    """Expected accuracy and cost of a query, computed without touching the warehouse.

    ``ci95``: 95% half-width per output (``None`` for means and quantiles); ``rank_error95``:
    for quantile outputs, the 95% rank half-width in number of values (:func:`rank_half_width`);
    ``aggregates``: one ``{"column", "aggregate", "ci95", "rank_error95"}`` per output, the shape
    the query service passes on.
    """

    dataset: str
    cost: Decimal
    budget_unit: str
    cells: int
    ci95: dict[str, float | None]
    statistics: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = field(default=())
    rank_error95: dict[str, float] = field(default_factory=dict)
    aggregates: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "cost": str(self.cost),
            "budget_unit": self.budget_unit,
            "cells": self.cells,
            "ci95": dict(self.ci95),
            "rank_error95": dict(self.rank_error95),
            "aggregates": [dict(a) for a in self.aggregates],
            "statistics": [dict(s) for s in self.statistics],
            "notes": list(self.notes),
        }


def _output_ci(plan: Plan, stats: dict[str, Statistic]) -> tuple[dict[str, float | None], list[str]]:
    from .planner import mean_count_id

    out: dict[str, float | None] = {}
    notes: list[str] = []
    ranks = quantile_rank_errors(plan, tuple(stats.values()))
    for agg in plan.spec.aggregates:
        kind = agg.kind.value
        if kind == "count":
            out[agg.name] = cell_ci95(stats["rows"])
        elif kind == "count_distinct":
            out[agg.name] = cell_ci95(stats["distinct"])
        elif kind == "sum":
            out[agg.name] = cell_ci95(stats[f"sum:{agg.column}"])
        elif kind == "mean":
            out[agg.name] = None
            s = stats[f"csum:{agg.column}"]
            n = stats[mean_count_id(plan.dataset, agg.column)]
            notes.append(
                f"{agg.name}: the interval depends on the released count; about "
                f"({half_width(s, ALPHA / 2) / 10**s.precision:g} + |mean - centre| * "
                f"{half_width(n, ALPHA / 2)}) / count."
            )
        else:
            out[agg.name] = None
            notes.append(
                f"{agg.name}: released as one of the public candidates; no value interval. With "
                f"probability >= 95% its rank among the cell's values is at most "
                f"{ranks[agg.name]:g} values further from rank q * n than the best candidate's "
                "(rank_error95; the candidate grid adds at most half the values between the two "
                "candidates around the exact quantile)."
            )
    return out, notes


def preview_plan(plan: Plan, statistics: tuple[Statistic, ...], cost: Decimal, unit: str) -> Preview:
    stats = {s.primitive.id: s for s in statistics}
    ci, notes = _output_ci(plan, stats)
    ranks = quantile_rank_errors(plan, statistics)
    described = []
    for s in statistics:
        row = describe_statistic(plan, s)
        row["ci95"] = cell_ci95(s) if s.noise != "noisy_max" else None
        described.append(row)
    aggregates = tuple(
        {
            "column": agg.name,
            "aggregate": agg.kind.value,
            "ci95": ci[agg.name],
            "rank_error95": ranks.get(agg.name),
        }
        for agg in plan.spec.aggregates
    )
    return Preview(
        dataset=plan.dataset.id,
        cost=cost,
        budget_unit=unit,
        cells=plan.n_cells,
        ci95=ci,
        statistics=tuple(described),
        notes=tuple(notes),
        rank_error95=ranks,
        aggregates=aggregates,
    )


def _worst_ratio(
    plan: Plan, budget: Decimal, gaussian: bool, ci95: float | None, rank_error95: float | None = None
) -> float:
    """max over the targeted statistics of (their measure) / (its target): ``ci95`` for the
    closed-form COUNT/SUM/COUNT(DISTINCT) statistics, ``rank_error95`` for quantiles (each only
    when given; <= 1 means every target is met)."""
    worst = 0.0
    for stat in plan_statistics(plan, budget, gaussian):
        if stat.noise == "noisy_max":
            if rank_error95 is not None:
                worst = max(worst, rank_half_width(stat, _quantile_candidates(plan, stat)) / rank_error95)
            continue
        if ci95 is None or stat.primitive.kind in ("csum", "nonnull"):
            continue
        if stat.primitive.kind == "rows" and not _counts_released(plan):
            continue
        worst = max(worst, cell_ci95(stat) / ci95)
    return worst


def _counts_released(plan: Plan) -> bool:
    return any(a.kind.value == "count" for a in plan.spec.aggregates)


def _check_target(name: str, value: object, unit: str) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise QueryAccuracyTarget(
            f"{name} must be a positive, finite number ({unit}), got {value!r}.",
        )


CLOSED_FORM_KINDS = frozenset({"count", "count_distinct", "sum"})


def epsilon_for_plan(
    plan: Plan, gaussian: bool, ci95: float | None = None, rank_error95: float | None = None
) -> Decimal:
    """Smallest budget (4 significant digits, rounded up) whose COUNT/SUM/COUNT(DISTINCT) cells
    all have a 95% half-width of at most ``ci95`` (each in its own unit) and whose quantile
    statistics all have a ``rank_error95`` of at most ``rank_error95`` (number of values).

    Give either target or both; a target that applies to no statistic of the query is refused.
    """
    _check_target("ci95", ci95, "a 95% half-width in each statistic's unit")
    _check_target("rank_error95", rank_error95, "a 95% rank half-width in number of values")
    if ci95 is None and rank_error95 is None:
        raise QueryAccuracyTarget("Give an accuracy target: ci95, rank_error95 or both.")
    kinds = {a.kind.value for a in plan.spec.aggregates}
    if ci95 is not None and not kinds & CLOSED_FORM_KINDS:
        hint = (
            "Quantiles (MEDIAN, QUANTILE, PERCENTILE_CONT) have no value interval: target their "
            "rank instead with rank_error95=<number of values>."
            if "quantile" in kinds
            else None
        )
        raise QueryAccuracyTarget(
            "The query has no COUNT, SUM or COUNT(DISTINCT) statistic with a data-independent accuracy.",
            hint=hint,
        )
    if rank_error95 is not None and "quantile" not in kinds:
        raise QueryAccuracyTarget(
            "rank_error95 targets quantile statistics (MEDIAN, QUANTILE, PERCENTILE_CONT) and the "
            "query has none.",
            hint="Drop rank_error95, or use ci95 for COUNT, SUM or COUNT(DISTINCT) statistics.",
        )

    def meets(budget: Decimal) -> bool:
        return _worst_ratio(plan, budget, gaussian, ci95, rank_error95) <= 1

    lo, hi = Decimal("1e-9"), Decimal(10**6)
    if not meets(hi):
        targets = " and ".join(
            f"{n} of {v}"
            for n, v in (("a 95% half-width", ci95), ("a rank_error95", rank_error95))
            if v is not None
        )
        raise QueryAccuracyTarget(f"No budget up to {hi} reaches {targets}.")
    if meets(lo):
        return _round_up(lo)
    for _ in range(80):
        mid = (lo * hi).sqrt()
        if meets(mid):
            hi = mid
        else:
            lo = mid
        if hi / lo < Decimal("1.00001"):
            break
    result = _round_up(hi)
    while not meets(result):
        result = _round_up(result * Decimal("1.0001"))
    return check_budget_value(result)


def _round_up(value: Decimal) -> Decimal:
    """Round up to 4 significant digits, on the 1e-12 grid."""
    exponent = value.adjusted() - 3
    quantum = Decimal(1).scaleb(max(exponent, -12))
    return value.quantize(quantum, rounding=ROUND_CEILING).normalize()
