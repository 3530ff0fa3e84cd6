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
  (``None``). Its error is in rank, not in value units (docs/dp.md).
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

__all__ = ["ALPHA", "Preview", "epsilon_for_plan", "half_width", "mean_estimate", "preview_plan"]

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
    """Expected accuracy and cost of a query, computed without touching the warehouse."""

    dataset: str
    cost: Decimal
    budget_unit: str
    cells: int
    ci95: dict[str, float | None]
    statistics: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "cost": str(self.cost),
            "budget_unit": self.budget_unit,
            "cells": self.cells,
            "ci95": dict(self.ci95),
            "statistics": [dict(s) for s in self.statistics],
            "notes": list(self.notes),
        }


def _output_ci(plan: Plan, stats: dict[str, Statistic]) -> tuple[dict[str, float | None], list[str]]:
    from .planner import mean_count_id

    out: dict[str, float | None] = {}
    notes: list[str] = []
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
            notes.append(f"{agg.name}: released as one of the public candidates; no value interval.")
    return out, notes


def preview_plan(plan: Plan, statistics: tuple[Statistic, ...], cost: Decimal, unit: str) -> Preview:
    stats = {s.primitive.id: s for s in statistics}
    ci, notes = _output_ci(plan, stats)
    described = []
    for s in statistics:
        row = s.describe()
        row["ci95"] = cell_ci95(s) if s.noise != "noisy_max" else None
        described.append(row)
    return Preview(
        dataset=plan.dataset.id,
        cost=cost,
        budget_unit=unit,
        cells=plan.n_cells,
        ci95=ci,
        statistics=tuple(described),
        notes=tuple(notes),
    )


def _worst_ratio(plan: Plan, budget: Decimal, gaussian: bool, target: float) -> float:
    """max over closed-form statistics of ci95 / target (<= 1 means the target is met)."""
    worst = 0.0
    for stat in plan_statistics(plan, budget, gaussian):
        if stat.noise == "noisy_max" or stat.primitive.kind in ("csum", "nonnull"):
            continue
        if stat.primitive.kind == "rows" and not _counts_released(plan):
            continue
        worst = max(worst, cell_ci95(stat) / target)
    return worst


def _counts_released(plan: Plan) -> bool:
    return any(a.kind.value == "count" for a in plan.spec.aggregates)


def epsilon_for_plan(plan: Plan, gaussian: bool, ci95: float) -> Decimal:
    """Smallest budget (4 significant digits, rounded up) whose COUNT/SUM/COUNT(DISTINCT) cells
    all have a 95% half-width of at most ``ci95`` (each in its own unit)."""
    if not isinstance(ci95, int | float) or not math.isfinite(ci95) or ci95 <= 0:
        raise QueryAccuracyTarget(f"ci95 must be a positive number, got {ci95!r}.")
    kinds = {a.kind.value for a in plan.spec.aggregates}
    if not kinds & {"count", "count_distinct", "sum"}:
        raise QueryAccuracyTarget(
            "The query has no COUNT, SUM or COUNT(DISTINCT) statistic with a data-independent accuracy."
        )
    lo, hi = Decimal("1e-9"), Decimal(10**6)
    if _worst_ratio(plan, hi, gaussian, ci95) > 1:
        raise QueryAccuracyTarget(f"No budget up to {hi} reaches a 95% half-width of {ci95}.")
    if _worst_ratio(plan, lo, gaussian, ci95) <= 1:
        return _round_up(lo)
    for _ in range(80):
        mid = (lo * hi).sqrt()
        if _worst_ratio(plan, mid, gaussian, ci95) <= 1:
            hi = mid
        else:
            lo = mid
        if hi / lo < Decimal("1.00001"):
            break
    result = _round_up(hi)
    while _worst_ratio(plan, result, gaussian, ci95) > 1:
        result = _round_up(result * Decimal("1.0001"))
    return check_budget_value(result)


def _round_up(value: Decimal) -> Decimal:
    """Round up to 4 significant digits, on the 1e-12 grid."""
    exponent = value.adjusted() - 3
    quantum = Decimal(1).scaleb(max(exponent, -12))
    return value.quantize(quantum, rounding=ROUND_CEILING).normalize()
