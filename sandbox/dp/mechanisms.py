"""OpenDP measurements for a planned query: sensitivity, calibration, composition, charge.

Privacy unit and ``d_in``
    Neighbouring warehouses differ by one privacy unit (all rows of one person or enterprise).
    The input of the composed measurement is the exact per-cell aggregate of the bounded table
    (:class:`~sandbox.dp.planner.ExactCells`); its metric is a user distance counting privacy
    units added or removed, and ``d_in = 1``. Each statistic is an OpenDP chain::

        make_user_transformation(stability: units -> l1/l2/linf of the statistic)
          >> make_laplace / make_gaussian / make_noisy_max

    The stability maps are the sensitivity analysis of the push-down SQL (docs/dp.md): with at
    most ``k = max_rows_per_unit`` rows per unit, spread over any groups, one unit moves

    ===========================  ===================  ==========================
    statistic (vector over G)    L1                   L2 (gaussian datasets)
    ===========================  ===================  ==========================
    COUNT(*) per cell            k                    k
    SUM, fixed-point             k * max(|L|, |U|)    k * max(|L|, |U|)
    centred SUM (for AVG)        k * (U - L) / 2      k * (U - L) / 2
    COUNT(DISTINCT unit)         min(k, G)            sqrt(min(k, G))
    quantile scores (per cell)   L-inf: k * max(a, b - a) for q = a/b (non-monotonic)
    ===========================  ===================  ==========================

    (bounds in fixed-point integers, centred on the integer midpoint). The user transformation
    needs OpenDP's ``honest-but-curious`` feature: OpenDP cannot see inside the warehouse, so
    this module asserts the SQL's stability; the noise, the composition and the privacy map are
    OpenDP's own.

Budget
    Laplace datasets: pure DP, the measure is ``max_divergence`` and the budget is epsilon.
    Gaussian datasets: zCDP, ``zero_concentrated_divergence``, and the budget is **rho** (the
    policy's budgets are in rho); ``approx_dp()`` reports the equivalent (epsilon, delta) at the
    policy's delta through ``make_zCDP_to_approxDP`` + ``make_fix_delta`` for information.
    The request is split equally over the statistics; a grouped quantile's per-cell selections
    are one component, composed in parallel over the disjoint cells (:func:`_partition`); all
    components are composed with ``make_composition``. The charge is the composed
    map at ``d_in = 1``, converted exactly to ``Decimal`` and rounded **up** to 12 decimal
    places; scales are widened until that charge is at most the request.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from typing import Any

import opendp.prelude as dp

from sandbox.errors import InternalError, QueryEpsilon
from sandbox.policy.models import Mechanism

from .planner import ExactCells, Plan, Primitive

__all__ = [
    "CHARGE_QUANTUM",
    "D_IN",
    "Calibrated",
    "Statistic",
    "calibrate",
    "check_budget_value",
    "exact_decimal",
]

dp.enable_features("contrib", "honest-but-curious")

#: Budgets and charges live on this grid (12 decimal places).
CHARGE_QUANTUM = Decimal("1e-12")
#: Distance between neighbouring inputs: one privacy unit.
D_IN = 1
_INPUT_DOMAIN_ID = "sandbox.dp.ExactCells (per-cell integer aggregates of the bounded table)"
_INPUT_METRIC_ID = "sandbox.dp privacy units added or removed (each <= max_rows_per_unit rows)"
_MAX_WIDENINGS = 60


def exact_decimal(value: float) -> Decimal:
    """The exact decimal value of a binary float (``Decimal(float)`` is exact)."""
    return Decimal(value)


def ceil_to_quantum(value: Decimal) -> Decimal:
    return value.quantize(CHARGE_QUANTUM, rounding=ROUND_CEILING)


def check_budget_value(budget: Decimal, what: str = "epsilon") -> Decimal:
    """A requested budget must be a positive, finite decimal on the 1e-12 grid."""
    if not isinstance(budget, Decimal):
        try:
            budget = Decimal(str(budget))
        except Exception:
            raise QueryEpsilon(f"{what} must be a decimal number.") from None
    if not budget.is_finite() or budget <= 0:
        raise QueryEpsilon(f"{what} must be a positive number, got {budget}.")
    if budget != budget.quantize(CHARGE_QUANTUM) or budget > Decimal(10**6):
        raise QueryEpsilon(f"{what}={budget} has more than 12 decimal places or is absurdly large.")
    return budget


def _up(value: Fraction) -> float:
    """The smallest float >= ``value`` (stability maps must never under-report)."""
    out = float(value)
    while Fraction(out) < value:
        out = math.nextafter(out, math.inf)
    return out


def _sqrt_up(n: int) -> float:
    out = math.sqrt(n)
    while Fraction(out) ** 2 < n:
        out = math.nextafter(out, math.inf)
    return out


@dataclass(frozen=True)
class Statistic:
    """One noise draw family: a noisy vector over the cells, or one noisy selection per cell."""

    primitive: Primitive
    noise: str  # "discrete_laplace" | "discrete_gaussian" | "noisy_max"
    metric: str  # "l1" | "l2" | "linf"
    sensitivity: float  # at d_in = 1 unit, in fixed-point units
    scale: float
    target: Decimal  # budget share aimed at (all components of the statistic together)
    components: int  # outputs: 1 noisy vector, or one selection per cell (quantiles)
    precision: int  # decimal digits of the fixed-point values (0 for counts)
    alpha: tuple[int, int] | None = None  # quantile q = a/b

    def describe(self) -> dict[str, Any]:
        return {
            "statistic": self.primitive.id,
            "noise": self.noise,
            "metric": self.metric,
            "sensitivity": self.sensitivity,
            "scale": self.scale,
            "precision": self.precision,
            "components": self.components,
        }


@dataclass(frozen=True)
class Calibrated:
    measurement: dp.Measurement
    statistics: tuple[Statistic, ...]
    charge: Decimal
    measure: str  # "epsilon" | "rho"
    reported: float  # the composed map at d_in, as OpenDP returned it


def _sensitivity(plan: Plan, prim: Primitive, gaussian: bool) -> tuple[str, float, int]:
    """(metric, sensitivity at one unit, precision) of a primitive."""
    k = plan.max_rows_per_unit
    if prim.kind in ("rows", "nonnull"):
        return ("l2" if gaussian else "l1"), float(k), 0
    if prim.kind in ("sum", "csum"):
        assert prim.column is not None
        fp = plan.fixed[prim.column]
        per_row = fp.max_abs if prim.kind == "sum" else fp.half_range
        return ("l2" if gaussian else "l1"), float(k * per_row), fp.precision
    if prim.kind == "distinct":
        groups = min(k, plan.n_cells)
        return ("l2", _sqrt_up(groups), 0) if gaussian else ("l1", float(groups), 0)
    if prim.kind == "quantile":
        a, b = _alpha(prim)
        assert prim.column is not None
        return "linf", float(k * max(a, b - a)), plan.fixed[prim.column].precision
    raise InternalError(f"Unknown statistic kind {prim.kind!r}.")


def _alpha(prim: Primitive) -> tuple[int, int]:
    assert prim.q is not None
    frac = Fraction(prim.q)
    return frac.numerator, frac.denominator


def _stability(plan: Plan, prim: Primitive, metric: str) -> Callable[[Any], Any]:
    k = plan.max_rows_per_unit
    if metric == "l1" or metric == "linf":
        if prim.kind in ("rows", "nonnull"):
            per_unit = k
        elif prim.kind == "distinct":
            per_unit = min(k, plan.n_cells)
        elif prim.kind == "quantile":
            a, b = _alpha(prim)
            per_unit = k * max(a, b - a)
        else:
            assert prim.column is not None
            fp = plan.fixed[prim.column]
            per_unit = k * (fp.max_abs if prim.kind == "sum" else fp.half_range)
        return lambda d_in: int(d_in) * per_unit
    if prim.kind == "distinct":
        root = Fraction(_sqrt_up(min(k, plan.n_cells)))
        return lambda d_in: _up(int(d_in) * root)
    _, sens, _ = _sensitivity(plan, prim, gaussian=True)
    exact = Fraction(sens)
    return lambda d_in: _up(int(d_in) * exact)


def quantile_scores(below: tuple[int, ...], above: tuple[int, ...], a: int, b: int) -> list[int]:
    """Score of each candidate for the a/b quantile: |(b - a) * #below - a * #above| (0 is best)."""
    return [abs((b - a) * lt - a * gt) for lt, gt in zip(below, above, strict=True)]


def _vector_function(prim: Primitive) -> Callable[[Any], Any]:
    ident = prim.id
    return lambda cells: list(cells.vectors[ident])


def _score_function(prim: Primitive, cell: int) -> Callable[[Any], Any]:
    assert prim.column is not None
    column = prim.column
    a, b = _alpha(prim)
    return lambda cells: quantile_scores(cells.below[column][cell], cells.above[column][cell], a, b)


def _spaces() -> tuple[Any, Any]:
    domain = dp.user_domain(_INPUT_DOMAIN_ID, lambda x: isinstance(x, ExactCells))
    metric = dp.user_distance(_INPUT_METRIC_ID)
    return domain, metric


def _build(plan: Plan, stats: list[Statistic], gaussian: bool) -> dp.Measurement:
    domain, metric = _spaces()
    measure = dp.zero_concentrated_divergence() if gaussian else dp.max_divergence()
    components: list[dp.Measurement] = []
    for stat in stats:
        prim = stat.primitive
        stability = _stability(plan, prim, stat.metric)
        if stat.noise == "noisy_max":
            out_domain = dp.vector_domain(dp.atom_domain(T=dp.u64))
            out_metric = dp.linf_distance(T=dp.u64, monotonic=False)
            cells = [
                dp.t.make_user_transformation(
                    domain, metric, out_domain, out_metric, _score_function(prim, cell), stability
                )
                >> dp.m.then_noisy_max(measure, scale=stat.scale, negate=True)
                for cell in range(plan.n_cells)
            ]
            components.append(_partition(domain, metric, measure, cells))
            continue
        out_domain = dp.vector_domain(dp.atom_domain(T=dp.i64))
        if gaussian:
            t = dp.t.make_user_transformation(
                domain, metric, out_domain, dp.l2_distance(T=dp.f64), _vector_function(prim), stability
            )
            components.append(t >> dp.m.then_gaussian(scale=stat.scale))
        else:
            t = dp.t.make_user_transformation(
                domain, metric, out_domain, dp.l1_distance(T=dp.i64), _vector_function(prim), stability
            )
            components.append(t >> dp.m.then_laplace(scale=stat.scale))
    return dp.c.make_composition(components)


def _partition(domain: Any, metric: Any, measure: Any, cells: list[dp.Measurement]) -> dp.Measurement:
    """The per-cell selections of one quantile as one measurement: parallel composition.

    The cells partition the bounded rows (each row has one grouping key), and a unit's ``k`` rows
    are spread over them: ``j_g`` rows in cell ``g``, ``sum(j_g) <= k * d_in``. Each cell's chain
    asserts the worst case, all ``k * d_in`` rows in that cell; its real loss is its map at ``j_g``
    rows instead. OpenDP's noisy-max maps are ``2 j c / scale`` (pure DP, linear in the score
    distance) and ``(2 j c / scale)^2 / 8`` (zCDP, convex), both superadditive with ``f(0) = 0``,
    so ``sum_g f(j_g) <= f(sum_g j_g) <= f(k * d_in)``: the whole vector of selections costs
    the largest single cell's map, not their sum. (Basic composition of the cells, which
    OpenDP's ``make_composition`` would apply, over-charges ``G`` times.)
    """
    if len(cells) == 1:
        return cells[0]

    def privacy_map(d_in: Any) -> Any:
        return max(cell.map(d_in) for cell in cells)  # type: ignore[no-untyped-call]

    return dp.m.make_user_measurement(
        domain,
        metric,
        measure,
        function=lambda arg: [int(cell(arg)) for cell in cells],
        privacy_map=privacy_map,
    )


def _initial_scale(noise: str, sensitivity: float, target: Decimal, components: int, gaussian: bool) -> float:
    if sensitivity == 0:
        return 1.0
    per = Fraction(target) / components
    if noise == "discrete_laplace":
        return _up(Fraction(sensitivity) / per)
    if noise == "discrete_gaussian":  # rho = (s / scale)^2 / 2
        return _up(Fraction(sensitivity / math.sqrt(2 * float(per))))
    if gaussian:  # noisy max under zCDP: rho = (2 s / scale)^2 / 8
        return _up(Fraction(sensitivity / math.sqrt(2 * float(per))))
    return _up(2 * Fraction(sensitivity) / per)  # noisy max, pure DP: eps = 2 s / scale


def plan_statistics(plan: Plan, budget: Decimal, gaussian: bool) -> list[Statistic]:
    """Split ``budget`` equally over the primitives and size each one's noise (before widening)."""
    share = budget / len(plan.primitives)
    stats: list[Statistic] = []
    for prim in plan.primitives:
        metric, sensitivity, precision = _sensitivity(plan, prim, gaussian)
        if prim.kind == "quantile":  # one selection per cell, composed in parallel (_partition)
            noise, components = "noisy_max", plan.n_cells
        else:
            noise, components = ("discrete_gaussian" if gaussian else "discrete_laplace"), 1
        stats.append(
            Statistic(
                primitive=prim,
                noise=noise,
                metric=metric,
                sensitivity=sensitivity,
                scale=_initial_scale(noise, sensitivity, share, 1, gaussian),
                target=share,
                components=components,
                precision=precision,
                alpha=_alpha(prim) if prim.kind == "quantile" else None,
            )
        )
    return stats


def calibrate(plan: Plan, budget: Decimal) -> Calibrated:
    """Compose the query's measurements so that OpenDP's map at ``d_in`` is at most ``budget``."""
    gaussian = plan.dataset.mechanism is Mechanism.GAUSSIAN
    budget = check_budget_value(budget, "rho" if gaussian else "epsilon")
    stats = plan_statistics(plan, budget, gaussian)
    try:
        for attempt in range(_MAX_WIDENINGS):
            measurement = _build(plan, stats, gaussian)
            reported = float(measurement.map(D_IN))  # type: ignore[no-untyped-call]
            if exact_decimal(reported) <= budget:
                return Calibrated(
                    measurement=measurement,
                    statistics=tuple(stats),
                    charge=ceil_to_quantum(exact_decimal(reported)),
                    measure="rho" if gaussian else "epsilon",
                    reported=reported,
                )
            factor = 1 + 2.0 ** (-40 + attempt)
            stats = [replace(s, scale=s.scale * factor) for s in stats]
    except dp.OpenDPException as err:
        raise InternalError("OpenDP could not build the query's measurement.") from err
    raise InternalError("Could not calibrate the noise within the requested budget.")


def approx_dp(measurement: dp.Measurement, delta: Decimal) -> tuple[Decimal, Decimal] | None:
    """(epsilon, delta) of a zCDP measurement at the policy's delta, or None when delta is 0."""
    if delta <= 0:
        return None
    try:
        fixed = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(measurement), delta=float(delta))
        epsilon, used_delta = fixed.map(D_IN)  # type: ignore[no-untyped-call]
    except dp.OpenDPException as err:
        raise InternalError("OpenDP could not convert the zCDP guarantee to (epsilon, delta).") from err
    return ceil_to_quantum(exact_decimal(epsilon)), Decimal(str(used_delta))


def run(calibrated: Calibrated, cells: ExactCells) -> list[Any]:
    """Invoke the composed measurement: one output per component, in statistic order."""
    try:
        out: list[Any] = calibrated.measurement(cells)
    except dp.OpenDPException as err:
        raise InternalError("OpenDP failed while adding noise.") from err
    return out
